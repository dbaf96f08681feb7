//! Hostile peers against a real `alknet serve --demo --http` process (docs/protocol.md,
//! "Bounds"): raw QUIC clients that never read (withholding flow-control credit), frames begun
//! and never finished, huge JSON, WebSocket floods, slow and idle HTTP sockets, thousands of
//! silent streams. Each test samples the node's resident memory from /proc while it runs,
//! asserts it stays under the 512 MiB the defaults promise, and that a well-behaved client is
//! served meanwhile. Peaks are printed (`--nocapture`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alknet::tls::{self, ALPN_CALL, Fingerprint, ServerVerification};
use alknet::wire::{Event, Message, encode_frame};
use alknet::{Client, ClientOptions, Connection};
use common::requested;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

mod common;

const ALKNET: &str = env!("CARGO_BIN_EXE_alknet");
/// What the defaults promise (docs/protocol.md, "Bounds").
const RSS_BOUND_MIB: u64 = 512;

/// One attack at a time: each measures a node while it runs, and the machine has two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A running `alknet serve --demo --http`, killed when dropped.
struct Node {
    _turn: std::sync::MutexGuard<'static, ()>,
    child: Child,
    quic: SocketAddr,
    http: SocketAddr,
    fingerprint: Fingerprint,
}

impl Node {
    fn start(extra: &[&str]) -> Node {
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut child = Command::new(ALKNET)
            .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("alknet serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in the ready line {line:?}"))
                .to_owned()
        };
        Node {
            _turn: turn,
            quic: field("quic=").parse().unwrap(),
            http: field("http=").parse().unwrap(),
            fingerprint: field("fingerprint=").parse().unwrap(),
            child,
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the node is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// A well-behaved alknet client.
    async fn client(&self) -> (Client, Connection) {
        let client = Client::new(ClientOptions::new(ServerVerification::pin(
            self.fingerprint,
        )))
        .unwrap();
        let conn = client.connect(self.quic, "localhost").await.unwrap();
        (client, conn)
    }

    /// A bare quinn connection with small receive windows that this side will not read.
    async fn raw(&self) -> quinn::Connection {
        let crypto =
            tls::client_config(&ServerVerification::pin(self.fingerprint), None, ALPN_CALL)
                .unwrap();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
        let mut transport = quinn::TransportConfig::default();
        transport
            .stream_receive_window(256_000u32.into())
            .receive_window(4_000_000u32.into())
            .keep_alive_interval(Some(Duration::from_secs(2)));
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        endpoint
            .connect(self.quic, "localhost")
            .unwrap()
            .await
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sequential `demo/add` calls on `conn` for `duration`: calls per second.
async fn call_rate(conn: &Connection, duration: Duration) -> f64 {
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < duration {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            conn.call_json("demo/add", json!({"a": 1, "b": 2})),
        )
        .await;
        match answer {
            Ok(Ok(sum)) => assert_eq!(sum, json!({"sum": 3})),
            other => panic!("the well-behaved client was not served: {other:?}"),
        }
        calls += 1;
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

/// Runs `attack` for `duration` while a well-behaved QUIC client calls `demo/add` back to back
/// and the node's RSS is sampled every 100 ms. Prints the peak and the client's call rate
/// before and during the attack; asserts the peak is under the bound and the client was
/// served throughout.
async fn under_attack(
    name: &str,
    node: &Node,
    duration: Duration,
    attack: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (_client, conn) = node.client().await;
    let alone = call_rate(&conn, Duration::from_secs(1)).await;
    let before = node.rss_kib();
    let attack = tokio::spawn(attack);
    let calls = tokio::spawn(async move { call_rate(&conn, duration).await });
    let started = Instant::now();
    let mut peak = before;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(node.rss_kib());
    }
    let during = calls.await.expect("the well-behaved client was served");
    attack.abort();
    let peak_mib = peak / 1024;
    println!(
        "{name}: RSS {} MiB before, peak {peak_mib} MiB; a well-behaved client's sequential calls: \
         {alone:.0}/s alone, {during:.0}/s during the attack",
        before / 1024
    );
    assert!(
        peak_mib < RSS_BOUND_MIB,
        "{name}: peak RSS {peak_mib} MiB over {RSS_BOUND_MIB} MiB"
    );
    assert!(
        during * duration.as_secs_f64() >= 10.0,
        "{name}: {during:.1} calls/s"
    );
}

/// Pipelines `request` on a stream and never reads what comes back.
async fn pipeline_unread(conn: quinn::Connection, request: bytes::Bytes) {
    let Ok((mut send, recv)) = conn.open_bi().await else {
        return;
    };
    let _unread = recv;
    while send.write_all(&request).await.is_ok() {}
    let _ = send.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_peers_that_pipeline_large_requests_and_never_read() {
    let node = Node::start(&[]);
    let echo = encode_frame(
        &requested("e", "/demo/echo", json!("q".repeat(1024 * 1024))),
        u32::MAX,
    )
    .unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(node.raw().await);
    }
    let attack = {
        let conns = conns.clone();
        async move {
            let mut tasks = Vec::new();
            for conn in &conns {
                for _ in 0..64 {
                    tasks.push(tokio::spawn(pipeline_unread(conn.clone(), echo.clone())));
                }
            }
            futures_util::future::join_all(tasks).await;
        }
    };
    under_attack(
        "pipelining 1 MiB echoes, never reading",
        &node,
        Duration::from_secs(10),
        attack,
    )
    .await;
    let ended = conns
        .iter()
        .filter(|conn| {
            matches!(conn.close_reason(), Some(quinn::ConnectionError::ApplicationClosed(c))
                if c.error_code.into_inner() == 3)
        })
        .count();
    println!("hostile connections ended over the memory budget: {ended} of 4");
    assert!(ended >= 1, "the connections holding the most are ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_announced_large_and_never_finished() {
    let node = Node::start(&[]);
    let mut conns = Vec::new();
    for _ in 0..20 {
        conns.push(node.raw().await);
    }
    let attack = async move {
        let mut tasks = Vec::new();
        for (i, conn) in conns.into_iter().enumerate() {
            // 16 connections × 4 frames, and 4 connections × 250 frames.
            let streams = if i < 16 { 4 } else { 250 };
            for _ in 0..streams {
                let conn = conn.clone();
                tasks.push(tokio::spawn(async move {
                    let Ok((mut send, _recv)) = conn.open_bi().await else {
                        return;
                    };
                    let _ = send.write_all(&(16u32 << 20).to_be_bytes()).await;
                    let chunk = vec![b' '; 64 * 1024];
                    for _ in 0..19 {
                        if send.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = send.stopped().await;
                }));
            }
        }
        futures_util::future::join_all(tasks).await;
    };
    under_attack(
        "unfinished 16 MiB frames",
        &node,
        Duration::from_secs(8),
        attack,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_millions_of_tiny_json_values() {
    let node = Node::start(&[]);
    // Just under the 16 MiB frame limit.
    let zeros = format!("[{}0]", "0,".repeat(8 * 1024 * 1024 - 1024));
    // Written by hand: as a `Value` the input alone would take 16 bytes per element here.
    let body = format!(
        r#"{{"type":"call.requested","id":"z","payload":{{"operationId":"/demo/echo","input":{zeros}}}}}"#
    );
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body.as_bytes());
    let frame = bytes::Bytes::from(frame);
    let conn = node.raw().await;
    let refused = Arc::new(AtomicUsize::new(0));
    let attack = {
        let refused = Arc::clone(&refused);
        async move {
            loop {
                let mut tasks = Vec::new();
                for _ in 0..4 {
                    let (conn, frame, refused) = (conn.clone(), frame.clone(), refused.clone());
                    tasks.push(tokio::spawn(async move {
                        let (mut send, recv) = conn.open_bi().await.unwrap();
                        send.write_all(&frame).await.unwrap();
                        let mut reader = alknet::wire::FrameReader::new(recv, u32::MAX);
                        let body = reader.next_frame().await.unwrap().unwrap();
                        let answer = Message::decode(&body).unwrap();
                        if let Event::Error(error) = answer.event {
                            assert_eq!(error.code, "INVALID_INPUT");
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                futures_util::future::join_all(tasks).await;
            }
        }
    };
    under_attack(
        "16 MiB of [0,0,…] four at a time",
        &node,
        Duration::from_secs(8),
        attack,
    )
    .await;
    assert!(
        refused.load(Ordering::Relaxed) >= 4,
        "refused as INVALID_INPUT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_peers_that_pipeline_large_requests_and_never_read() {
    let node = Node::start(&[]);
    let url = format!("ws://{}/alknet/call", node.http);
    // Just under the gateway's 1 MiB message limit.
    let message = requested("w", "/demo/echo", json!("w".repeat(1000 * 1024))).to_json_bytes();
    let attack = async move {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (url, message) = (url.clone(), message.clone());
            tasks.push(tokio::spawn(async move {
                let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await
                else {
                    return;
                };
                while socket
                    .send(WsMessage::Binary(message.clone().into()))
                    .await
                    .is_ok()
                {}
                // Never read: the answers stay in the node's queue and the socket buffers.
                let _ = socket.next().await;
            }));
        }
        futures_util::future::join_all(tasks).await;
    };
    under_attack(
        "WebSocket floods of 1 MB requests, never reading",
        &node,
        Duration::from_secs(8),
        attack,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_http_sockets_do_not_lock_clients_out() {
    let node = Node::start(&["--http-head-timeout-secs", "2"]);
    let http = node.http;
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(tokio::net::TcpStream::connect(http).await.unwrap());
    }
    let mut idle = Vec::new();
    for _ in 0..700 {
        idle.push(tokio::net::TcpStream::connect(http).await.unwrap());
    }
    let attack = async move {
        // Headers one byte at a time, a byte every 500 ms, on 200 sockets.
        let head = b"POST /call HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        for byte in head.iter().cycle() {
            for socket in &mut slow {
                let _ = socket.write_all(&[*byte]).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        drop(idle);
    };
    under_attack(
        "200 slow-header and 700 idle HTTP sockets",
        &node,
        Duration::from_secs(5),
        attack,
    )
    .await;
    // A new HTTP client is served (the idle sockets made room, the slow ones timed out).
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(http).await.unwrap();
    let body = r#"{"operation":"demo/add","input":{"a":1,"b":2}}"#;
    let head = format!(
        "POST /call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_streams_that_carry_nothing_are_ended() {
    let node = Node::start(&[]);
    let mut conns = Vec::new();
    for _ in 0..40 {
        conns.push(node.raw().await);
    }
    let ended = Arc::new(AtomicUsize::new(0));
    let attack = {
        let ended = Arc::clone(&ended);
        async move {
            let mut tasks = Vec::new();
            for conn in conns {
                for _ in 0..250 {
                    let (conn, ended) = (conn.clone(), ended.clone());
                    tasks.push(tokio::spawn(async move {
                        let Ok((mut send, _recv)) = conn.open_bi().await else {
                            return;
                        };
                        // One byte, so the node sees the stream; then nothing.
                        let _ = send.write_all(&[0]).await;
                        // Stopped by the node, or its connection ended over the memory budget.
                        if !matches!(send.stopped().await, Ok(None)) {
                            ended.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
            }
            futures_util::future::join_all(tasks).await;
        }
    };
    // The node's first-frame deadline is 10 s: sample past it.
    under_attack(
        "10,000 silent streams",
        &node,
        Duration::from_secs(13),
        attack,
    )
    .await;
    let ended = ended.load(Ordering::Relaxed);
    println!("silent streams ended by the node: {ended}");
    assert!(ended >= 9_000, "{ended} of 10,000 streams ended");
}
