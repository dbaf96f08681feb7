//! The call protocol against a floor, in one run on loopback: `cargo bench -p alknet --bench call`.
//!
//! alknet: its `Client` against its `Server` serving the demo service.
//! Floor: bare quinn with the same framing and envelopes (the `alknet::wire` codec), a server
//! that answers each frame inline on the stream it came on, and clients that pipeline on one
//! stream. The floor has no registry, validation, task per request, pending table or deadline,
//! so the ratio shows what those cost. For the subscription the floor writes each frame as it is
//! produced, as a straightforward implementation does; alknet coalesces them.
//!
//! Each measurement runs three times, alternating floor and alknet, and keeps the best, because
//! this machine is noisy. Environment: `BENCH_SCALE` (default 1.0) scales the iteration counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet::tls::{self, ALPN_CALL};
use alknet::wire::{CallRequested, Event, FrameReader, Message, encode_frame};
use alknet::{Client, ClientOptions, Server, ServerOptions, ServerVerification, TlsIdentity};
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const CALLERS: usize = 64;
const ROUNDS: usize = 3;

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(1)
}

fn echo_input() -> Value {
    json!({"msg": "hello", "n": 1})
}

fn request(id: u64, op: &str, input: Value) -> bytes::Bytes {
    let message = Message::new(
        id.to_string(),
        Event::Requested(CallRequested {
            operation_id: op.into(),
            input,
            auth_token: None,
            timeout_ms: None,
            stream: None,
        }),
    );
    encode_frame(&message, u32::MAX).unwrap()
}

/// How many items `bench/ticks` streams.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Count {
    count: u64,
}

/// Emits `count` small items `{n}` as fast as they can be sent (the demo's `demo/ticks` is
/// capped for interactive use; the benchmark needs 200,000).
#[alknet::operation(subscription, name = "bench/ticks")]
async fn bench_ticks(
    input: Count,
) -> impl futures_util::Stream<Item = Result<alknet::demo::Tick, alknet::CallError>> {
    futures_util::stream::iter((1..=input.count).map(|n| Ok(alknet::demo::Tick { n })))
}

fn bench_registry() -> alknet::Registry {
    let mut registry = alknet::demo::registry();
    registry
        .register::<BenchTicksOp>()
        .expect("a valid operation");
    registry
}

// ---------------------------------------------------------------- floor: bare quinn

async fn floor_server(identity: &TlsIdentity) -> quinn::Endpoint {
    let crypto = tls::server_config(identity, &[ALPN_CALL]).unwrap();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).unwrap();
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(1024u32.into());
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let accept = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(floor_stream(send, recv));
                }
            });
        }
    });
    endpoint
}

/// Answers each request inline: echo → one `responded`; ticks → `count` items + `completed`.
async fn floor_stream(mut send: quinn::SendStream, recv: quinn::RecvStream) {
    let mut reader = FrameReader::new(recv, u32::MAX);
    while let Ok(Some(body)) = reader.next_frame().await {
        let Ok(Message {
            id,
            event: Event::Requested(req),
        }) = Message::decode(&body)
        else {
            return;
        };
        if req.operation_id == "/bench/ticks" {
            let count = req.input["count"].as_u64().unwrap_or(0);
            for n in 1..=count {
                let item = Message::new(id.as_str(), Event::Responded(json!({"n": n})));
                if send
                    .write_all(&encode_frame(&item, u32::MAX).unwrap())
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let done = Message::new(id.as_str(), Event::Completed);
            let _ = send
                .write_all(&encode_frame(&done, u32::MAX).unwrap())
                .await;
        } else {
            let answer = Message::new(id, Event::Responded(req.input));
            if send
                .write_all(&encode_frame(&answer, u32::MAX).unwrap())
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let _ = send.finish();
}

fn floor_client(pin: alknet::Fingerprint) -> quinn::Endpoint {
    let crypto = tls::client_config(&ServerVerification::pin(pin), None, ALPN_CALL).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

async fn floor_connect(
    endpoint: &quinn::Endpoint,
    addr: std::net::SocketAddr,
) -> quinn::Connection {
    endpoint.connect(addr, "localhost").unwrap().await.unwrap()
}

async fn floor_sequential(conn: &quinn::Connection, calls: usize) -> Vec<Duration> {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let mut reader = FrameReader::new(recv, u32::MAX);
    let mut latencies = Vec::with_capacity(calls);
    for id in 0..calls as u64 {
        let started = Instant::now();
        send.write_all(&request(id, "/demo/echo", echo_input()))
            .await
            .unwrap();
        let body = reader.next_frame().await.unwrap().unwrap();
        let _ = Message::decode(&body).unwrap();
        latencies.push(started.elapsed());
    }
    latencies
}

/// `CALLERS` requests in flight at once on one stream: a writer keeps the window full, a
/// reader drains answers.
async fn floor_pipelined(conn: &quinn::Connection, calls: usize) -> Duration {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let window = Arc::new(Semaphore::new(CALLERS));
    let started = Instant::now();
    let writer = {
        let window = Arc::clone(&window);
        tokio::spawn(async move {
            for id in 0..calls as u64 {
                window.acquire().await.unwrap().forget();
                send.write_all(&request(id, "/demo/echo", echo_input()))
                    .await
                    .unwrap();
            }
            send
        })
    };
    let mut reader = FrameReader::new(recv, u32::MAX);
    for _ in 0..calls {
        let body = reader.next_frame().await.unwrap().unwrap();
        let _ = Message::decode(&body).unwrap();
        window.add_permits(1);
    }
    let elapsed = started.elapsed();
    let _ = writer.await.unwrap().finish();
    elapsed
}

/// The pattern §4.4 rules out: `CALLERS` callers, each call on a fresh stream.
async fn floor_stream_per_call(conn: &quinn::Connection, calls: usize) -> Duration {
    let started = Instant::now();
    let per_caller = calls / CALLERS;
    join_all((0..CALLERS).map(|caller| {
        let conn = conn.clone();
        async move {
            for i in 0..per_caller {
                let (mut send, recv) = conn.open_bi().await.unwrap();
                let id = (caller * per_caller + i) as u64;
                send.write_all(&request(id, "/demo/echo", echo_input()))
                    .await
                    .unwrap();
                send.finish().unwrap();
                let mut reader = FrameReader::new(recv, u32::MAX);
                let body = reader.next_frame().await.unwrap().unwrap();
                let _ = Message::decode(&body).unwrap();
            }
        }
    }))
    .await;
    started.elapsed()
}

async fn floor_subscription(conn: &quinn::Connection, items: usize) -> Duration {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let started = Instant::now();
    send.write_all(&request(1, "/bench/ticks", json!({"count": items})))
        .await
        .unwrap();
    let mut reader = FrameReader::new(recv, u32::MAX);
    let mut seen = 0;
    loop {
        let body = reader.next_frame().await.unwrap().unwrap();
        match Message::decode(&body).unwrap().event {
            Event::Responded(_) => seen += 1,
            Event::Completed => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, items);
    started.elapsed()
}

async fn floor_fresh_connections(
    endpoint: &quinn::Endpoint,
    addr: std::net::SocketAddr,
    n: usize,
) -> Duration {
    let started = Instant::now();
    for id in 0..n as u64 {
        let conn = floor_connect(endpoint, addr).await;
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&request(id, "/demo/echo", echo_input()))
            .await
            .unwrap();
        let mut reader = FrameReader::new(recv, u32::MAX);
        let _ = Message::decode(&reader.next_frame().await.unwrap().unwrap()).unwrap();
        conn.close(0u32.into(), b"done");
    }
    started.elapsed()
}

// ---------------------------------------------------------------- alknet

async fn alknet_sequential(conn: &alknet::Connection, calls: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        conn.call_json("demo/echo", echo_input()).await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies
}

async fn alknet_concurrent(conn: &alknet::Connection, calls: usize) -> Duration {
    let per_caller = calls / CALLERS;
    let started = Instant::now();
    join_all((0..CALLERS).map(|_| {
        let conn = conn.clone();
        tokio::spawn(async move {
            for _ in 0..per_caller {
                conn.call_json("demo/echo", echo_input()).await.unwrap();
            }
        })
    }))
    .await;
    started.elapsed()
}

async fn alknet_subscription(conn: &alknet::Connection, items: usize) -> Duration {
    let started = Instant::now();
    let mut stream = conn
        .subscribe_json("bench/ticks", json!({"count": items}))
        .await
        .unwrap();
    let mut seen = 0;
    while let Some(item) = stream.next().await {
        item.unwrap();
        seen += 1;
    }
    assert_eq!(seen, items);
    started.elapsed()
}

async fn alknet_fresh_connections(
    client: &Client,
    addr: std::net::SocketAddr,
    n: usize,
) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let conn = client.connect(addr, "localhost").await.unwrap();
        conn.call_json("demo/echo", echo_input()).await.unwrap();
        conn.close();
    }
    started.elapsed()
}

// ---------------------------------------------------------------- report

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

struct Row {
    name: &'static str,
    unit: &'static str,
    alknet: f64,
    floor: f64,
    /// For throughput, alknet/floor must be at least this; for latency at most.
    target: Option<f64>,
    higher_is_better: bool,
}

fn print(rows: &[Row]) {
    println!(
        "\n{:<44} {:>12} {:>12} {:>8} {:>10}",
        "metric", "alknet", "floor", "ratio", "target"
    );
    for row in rows {
        let ratio = row.alknet / row.floor;
        let target = match row.target {
            None => String::new(),
            Some(t) => {
                let met = if row.higher_is_better {
                    ratio >= t
                } else {
                    ratio <= t
                };
                format!(
                    "{}{t:.1} {}",
                    if row.higher_is_better { ">=" } else { "<=" },
                    if met { "ok" } else { "MISSED" }
                )
            }
        };
        println!(
            "{:<44} {:>12.1} {:>12.1} {:>7.2}x {:>10}",
            format!("{} ({})", row.name, row.unit),
            row.alknet,
            row.floor,
            ratio,
            target
        );
    }
}

fn best(values: &[Duration]) -> Duration {
    *values.iter().min().unwrap()
}

async fn profile_only(what: &str) {
    let options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(bench_registry(), options).unwrap();
    let verification = ServerVerification::pin(server.fingerprint());
    let client = Client::new(ClientOptions::new(verification)).unwrap();
    let conn = client
        .connect(server.local_addr(), "localhost")
        .await
        .unwrap();
    let started = Instant::now();
    if what == "concurrent" {
        let calls = scaled(640_000) / CALLERS * CALLERS;
        alknet_concurrent(&conn, calls).await;
        let stats = conn.quic().expect("a QUIC connection").stats();
        println!(
            "alknet: {calls} calls in {:?}; client datagrams tx {:.3}/call rx {:.3}/call",
            started.elapsed(),
            stats.udp_tx.datagrams as f64 / calls as f64,
            stats.udp_rx.datagrams as f64 / calls as f64
        );
        let identity = TlsIdentity::self_signed(&["localhost"]).unwrap();
        let floor = floor_server(&identity).await;
        let endpoint = floor_client(identity.fingerprint());
        let floor_conn = floor_connect(&endpoint, floor.local_addr().unwrap()).await;
        let started = Instant::now();
        floor_pipelined(&floor_conn, calls).await;
        let stats = floor_conn.stats();
        println!(
            "floor: {calls} calls in {:?}; client datagrams tx {:.3}/call rx {:.3}/call",
            started.elapsed(),
            stats.udp_tx.datagrams as f64 / calls as f64,
            stats.udp_rx.datagrams as f64 / calls as f64
        );
    } else {
        let items = scaled(2_000_000);
        alknet_subscription(&conn, items).await;
        println!("{items} items in {:?}", started.elapsed());
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    // BENCH_ONLY=concurrent|subscription runs just that part (for profiling).
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        return profile_only(&only).await;
    }
    let sequential_calls = scaled(5_000);
    let concurrent_calls = scaled(64_000) / CALLERS * CALLERS;
    let items = scaled(200_000);
    let fresh = scaled(200);
    println!(
        "alknet call benchmark: {sequential_calls} sequential calls, {concurrent_calls} calls by {CALLERS} callers, \
         {items} subscription items, {fresh} fresh connections; best of {ROUNDS}"
    );

    let identity = TlsIdentity::self_signed(&["localhost"]).unwrap();
    let floor_endpoint = floor_server(&identity).await;
    let floor_addr = floor_endpoint.local_addr().unwrap();
    let floor_client_endpoint = floor_client(identity.fingerprint());
    let floor_conn = floor_connect(&floor_client_endpoint, floor_addr).await;

    let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
    options.identity = Some(identity.clone());
    let server = Server::bind(bench_registry(), options).unwrap();
    let client = Client::new(ClientOptions::new(ServerVerification::pin(
        server.fingerprint(),
    )))
    .unwrap();
    let conn = client
        .connect(server.local_addr(), "localhost")
        .await
        .unwrap();

    // Warm up both paths.
    floor_sequential(&floor_conn, 500).await;
    alknet_sequential(&conn, 500).await;

    let (mut floor_lat, mut alknet_lat) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let mut f = floor_sequential(&floor_conn, sequential_calls).await;
        let mut a = alknet_sequential(&conn, sequential_calls).await;
        f.sort();
        a.sort();
        floor_lat.push(f);
        alknet_lat.push(a);
    }
    let by_p50 = |runs: &[Vec<Duration>]| {
        runs.iter()
            .min_by(|x, y| percentile(x, 0.5).total_cmp(&percentile(y, 0.5)))
            .unwrap()
            .clone()
    };
    let (floor_lat, alknet_lat) = (by_p50(&floor_lat), by_p50(&alknet_lat));
    let seq_rate = |lat: &[Duration]| lat.len() as f64 / lat.iter().sum::<Duration>().as_secs_f64();

    let (mut f64c, mut a64c, mut fper) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        f64c.push(floor_pipelined(&floor_conn, concurrent_calls).await);
        a64c.push(alknet_concurrent(&conn, concurrent_calls).await);
        fper.push(floor_stream_per_call(&floor_conn, concurrent_calls).await);
    }
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();

    let (mut fsub, mut asub) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        fsub.push(floor_subscription(&floor_conn, items).await);
        asub.push(alknet_subscription(&conn, items).await);
    }

    let (mut ffresh, mut afresh) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ffresh.push(floor_fresh_connections(&floor_client_endpoint, floor_addr, fresh).await);
        afresh.push(alknet_fresh_connections(&client, server.local_addr(), fresh).await);
    }
    let per_conn_ms = |d: Duration| d.as_secs_f64() * 1e3 / fresh as f64;

    let per_call_rate = rate(concurrent_calls, best(&fper));
    print(&[
        Row {
            name: "sequential echo p50",
            unit: "µs",
            alknet: percentile(&alknet_lat, 0.5),
            floor: percentile(&floor_lat, 0.5),
            target: Some(1.2),
            higher_is_better: false,
        },
        Row {
            name: "sequential echo p99",
            unit: "µs",
            alknet: percentile(&alknet_lat, 0.99),
            floor: percentile(&floor_lat, 0.99),
            target: None,
            higher_is_better: false,
        },
        Row {
            name: "sequential echo",
            unit: "calls/s",
            alknet: seq_rate(&alknet_lat),
            floor: seq_rate(&floor_lat),
            target: None,
            higher_is_better: true,
        },
        Row {
            name: "64 callers, one connection",
            unit: "calls/s",
            alknet: rate(concurrent_calls, best(&a64c)),
            floor: rate(concurrent_calls, best(&f64c)),
            target: Some(0.8),
            higher_is_better: true,
        },
        Row {
            name: "subscription of small items",
            unit: "items/s",
            alknet: rate(items, best(&asub)),
            floor: rate(items, best(&fsub)),
            target: Some(1.0),
            higher_is_better: true,
        },
        Row {
            name: "fresh connection + one call",
            unit: "ms each",
            alknet: per_conn_ms(best(&afresh)),
            floor: per_conn_ms(best(&ffresh)),
            target: None,
            higher_is_better: false,
        },
    ]);
    println!(
        "\nstream per call (bare quinn, {CALLERS} callers): {per_call_rate:.1} calls/s = {:.2}x the pipelined floor, {:.2}x alknet",
        per_call_rate / rate(concurrent_calls, best(&f64c)),
        per_call_rate / rate(concurrent_calls, best(&a64c)),
    );
    conn.close();
    client.wait_idle(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
}
