//! The gateway against clients that hold its connections: trickled and missing request heads,
//! idle sockets, more connections than the cap, and `Host` names it does not serve.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alknet::{HttpLimits, HttpOptions, Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(options: HttpOptions) -> (Server, SocketAddr) {
    let server = Server::bind(
        alknet::demo::registry(),
        ServerOptions::new("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let addr = server
        .serve_http_with("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    (server, addr)
}

fn limits(max_connections: usize, request_head_timeout: Duration) -> HttpOptions {
    HttpOptions {
        limits: HttpLimits {
            max_connections,
            request_head_timeout,
            ..HttpLimits::default()
        },
        ..HttpOptions::default()
    }
}

/// Whether the server closes `socket` within `within`, draining whatever it sends first.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// One request on a fresh connection; the status line's code.
async fn status_of(addr: SocketAddr, request: &str) -> u16 {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_heads_and_idle_connections_are_closed_in_time() {
    let (_server, addr) = start(limits(64, Duration::from_secs(1))).await;
    // Headers one byte every 200 ms: still unfinished when the second is up.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle() {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "a trickling client kept its connection {took:?}"
    );
    // A connection that never sends anything, and one idle after a request.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    kept_alive.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 512];
    let n = kept_alive.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut kept_alive, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_make_room_for_new_clients() {
    let (_server, addr) = start(limits(4, Duration::from_secs(30))).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every place is taken by a socket that sends nothing: newcomers still get in (and stay
    // connected)...
    let mut newcomers = Vec::new();
    for _ in 0..3 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = [0u8; 512];
        let n = socket.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
        newcomers.push(socket);
    }
    // ...because the idle ones were closed to make room, oldest first.
    let mut closed = 0;
    for socket in &mut idle {
        if closed_within(socket, Duration::from_millis(500)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 3, "one idle socket per newcomer was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_newcomers_get_503() {
    let (_server, addr) = start(limits(2, Duration::from_secs(30))).await;
    // Two subscriptions that last about 2.5 s keep both places busy.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let body = r#"{"operation":"demo/ticks","input":{"count":50,"intervalMs":50}}"#;
        let request = format!(
            "POST /subscribe HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut first = [0u8; 64];
        let n = socket.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        streams.push(socket);
    }
    assert_eq!(
        status_of(addr, &get("/healthz", &addr.to_string())).await,
        503
    );
    // Once they end, their connections are idle again and make room.
    for socket in &mut streams {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("event: completed") {
            let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
                .await
                .expect("the subscription ends")
                .unwrap();
            assert!(n > 0, "closed before the end");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status_of(addr, &get("/healthz", &addr.to_string())).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_keeps_its_connection_busy() {
    let (_server, addr) = start(limits(1, Duration::from_secs(30))).await;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/alknet/call"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The session is not idle, so it is not closed for the newcomer.
    assert_eq!(
        status_of(addr, &get("/healthz", &addr.to_string())).await,
        503
    );
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_of(addr, &get("/healthz", &addr.to_string())).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_nodes_own_host_names_are_served() {
    let options = HttpOptions {
        allowed_hosts: vec!["node.example".into()],
        public_url: Some("https://api.example:8443/base".into()),
        ..HttpOptions::default()
    };
    let (_server, addr) = start(options).await;
    let port = addr.port();
    for (host, expected) in [
        (format!("127.0.0.1:{port}"), 200),
        (format!("[::1]:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("node.example:{port}"), 200),
        ("NODE.example".to_owned(), 200),
        ("api.example".to_owned(), 200),
        // A name someone pointed at this node's address: DNS rebinding.
        (format!("evil.example:{port}"), 403),
        ("node.example.evil.example".to_owned(), 403),
    ] {
        assert_eq!(
            status_of(addr, &get("/healthz", &host)).await,
            expected,
            "{host}"
        );
    }
    // The refusal is a JSON error on every route, operations included.
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let body = r#"{"operation":"demo/add","input":{"a":1,"b":2}}"#;
    let request = format!(
        "POST /call HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("\"code\":\"FORBIDDEN\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_too_many_json_values_is_refused_before_parsing() {
    let (_server, addr) = start(HttpOptions::default()).await;
    let post = |input: usize| {
        let body = format!(
            r#"{{"operation":"demo/echo","input":[{}0]}}"#,
            "0,".repeat(input - 1)
        );
        format!(
            "POST /call HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // 300,000 values (600 KB) is over the default limit of 200,000; 100,000 is not.
    assert_eq!(status_of(addr, &post(300_000)).await, 422);
    assert_eq!(status_of(addr, &post(100_000)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sessions_are_capped() {
    let options = HttpOptions {
        mcp_limits: alknet::gateway::McpLimits {
            max_sessions: 2,
            ..alknet::gateway::McpLimits::default()
        },
        ..HttpOptions::default()
    };
    let (_server, addr) = start(options).await;
    let initialize = || {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    assert_eq!(status_of(addr, &initialize()).await, 200);
    assert_eq!(status_of(addr, &initialize()).await, 200);
    // A third anonymous session waits for one of them to close or expire.
    assert_eq!(status_of(addr, &initialize()).await, 503);
}

/// Starts a large POST /call announcing `len` bytes and sends only its head and `sent` bytes.
async fn unfinished_body(addr: SocketAddr, len: usize, sent: usize) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&vec![b' '; sent]).await.unwrap();
    socket
}

/// The status code of the answer that arrives on `socket` within `within` (0: none).
async fn answer_status(socket: &mut TcpStream, within: Duration) -> u16 {
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(within, socket.read(&mut answer)).await;
    let Ok(Ok(n)) = read else { return 0 };
    let text = String::from_utf8_lossy(&answer[..n]);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_draw_on_the_node_budget_and_must_arrive_in_time() {
    let protocol = alknet::ProtocolConfig {
        max_frame_len: 2 * 1024 * 1024,
        node_frame_budget: 4 * 1024 * 1024,
        frame_budget_wait: Duration::from_millis(300),
        frame_timeout: Duration::from_secs(1),
        ..alknet::ProtocolConfig::default()
    };
    let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
    options.protocol = protocol;
    let server = Server::bind(alknet::demo::registry(), options).unwrap();
    let addr = server
        .serve_http_with("127.0.0.1:0".parse().unwrap(), HttpOptions::default())
        .await
        .unwrap();
    // Two unfinished 2 MiB bodies take the whole budget...
    let mut holders = vec![
        unfinished_body(addr, 2 * 1024 * 1024, 100_000).await,
        unfinished_body(addr, 2 * 1024 * 1024, 100_000).await,
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so a third large body is refused, retryable, once the wait is over.
    let mut third = unfinished_body(addr, 1024 * 1024, 0).await;
    let started = Instant::now();
    assert_eq!(answer_status(&mut third, Duration::from_secs(3)).await, 503);
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Small bodies need no budget.
    let body = r#"{"operation":"demo/add","input":{"a":1,"b":2}}"#;
    let small = format!(
        "POST /call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(status_of(addr, &small).await, 200);
    // The holders never finish: 408 once the frame timeout is up, and the budget is free.
    for holder in &mut holders {
        assert_eq!(answer_status(holder, Duration::from_secs(3)).await, 408);
    }
    let blob = format!(
        r#"{{"operation":"demo/echo","input":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let large = format!(
        "POST /call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{blob}",
        blob.len()
    );
    assert_eq!(status_of(addr, &large).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_and_messages_are_capped() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let (_server, addr) = start(HttpOptions {
        limits: HttpLimits {
            max_websocket_sessions: 2,
            ..HttpLimits::default()
        },
        ..HttpOptions::default()
    })
    .await;
    let url = format!("ws://{addr}/alknet/call");
    let (mut first, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (_second, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    // A third session is refused while two are open.
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("a third session: {other:?}"),
    }
    // A message over 1 MiB closes its session with 1009.
    let big = format!(
        r#"{{"type":"call.requested","id":"1","payload":{{"operationId":"/demo/echo","input":"{}"}}}}"#,
        "x".repeat(1100 * 1024)
    );
    let _ = first.send(WsMessage::Binary(big.into_bytes().into())).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = first.next().await {
            if let Ok(WsMessage::Close(frame)) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the session closes");
    assert_eq!(closed, Some(1009));
    drop(first);
    // Its place is free again.
    let again = async {
        loop {
            if tokio_tungstenite::connect_async(url.as_str()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), again)
        .await
        .expect("a new session once one closed");
}
