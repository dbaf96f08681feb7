//! Helpers shared by the integration tests: a server on loopback with the demo service plus test
//! operations, drop probes to observe handler cleanup, and a raw client that speaks the framing
//! over bare quinn so tests can send exactly the bytes they want.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alknet::spec::{ErrorSpec, OpType, OperationSpec};
use alknet::tls::{self, ALPN_CALL};
use alknet::wire::{FrameReader, Message, encode_frame};
use alknet::{
    CallError, Client, ClientOptions, Connection, Handler, ProtocolConfig, Registry, Server,
    ServerOptions, ServerVerification,
};
use futures_util::stream;
use serde_json::{Value, json};
use tokio::sync::watch;

/// Counts drops of the guards it hands out, so a test can see a handler's cleanup run.
#[derive(Clone)]
pub struct DropProbe {
    count: Arc<watch::Sender<usize>>,
}

/// Increments its probe when dropped.
pub struct DropGuard(DropProbe);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.count.send_modify(|n| *n += 1);
    }
}

impl DropProbe {
    pub fn new() -> Self {
        Self {
            count: Arc::new(watch::channel(0).0),
        }
    }

    pub fn guard(&self) -> DropGuard {
        DropGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until at least `n` guards were dropped; false after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> bool {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(within, rx.wait_for(|count| *count >= n))
            .await
            .is_ok()
    }
}

/// Probes the test operations report to.
#[derive(Clone)]
pub struct Probes {
    /// `test/slow` handlers dropped (finished or aborted).
    pub slow: DropProbe,
    /// `test/forever` subscriptions dropped.
    pub forever: DropProbe,
    /// `test/flood` items produced.
    pub flooded: Arc<AtomicUsize>,
}

impl Probes {
    pub fn new() -> Self {
        Self {
            slow: DropProbe::new(),
            forever: DropProbe::new(),
            flooded: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// `test/flood` items produced so far.
    pub fn flooded(&self) -> usize {
        self.flooded.load(Ordering::Relaxed)
    }
}

fn op(name: &str, op_type: OpType) -> OperationSpec {
    OperationSpec::new(name, op_type).unwrap()
}

/// The demo service plus operations that misbehave on purpose.
pub fn test_registry(probes: &Probes) -> Registry {
    let mut registry = alknet::demo::registry();
    let slow = probes.slow.clone();
    registry
        .register_handler(
            op("test/slow", OpType::Query).with_input_schema(json!({
                "type": "object", "required": ["ms"], "properties": {"ms": {"type": "integer"}}
            })),
            Handler::unary(move |_ctx, input: Value| {
                let guard = slow.guard();
                async move {
                    let _guard = guard;
                    let ms = input["ms"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!({"slept_ms": ms}))
                }
            }),
        )
        .unwrap();
    let forever = probes.forever.clone();
    registry
        .register_handler(
            op("test/forever", OpType::Subscription),
            Handler::subscription(move |_ctx, _input| {
                let guard = forever.guard();
                async move {
                    Ok(stream::unfold((0u64, guard), |(n, guard)| async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Some((Ok(json!({"n": n + 1})), (n + 1, guard)))
                    }))
                }
            }),
        )
        .unwrap();
    let flooded = Arc::clone(&probes.flooded);
    registry
        .register_handler(
            op("test/flood", OpType::Subscription),
            // Items of 1 KiB, as fast as they are taken, without end.
            Handler::subscription(move |_ctx, _input| {
                let flooded = Arc::clone(&flooded);
                async move {
                    let padding = "x".repeat(1000);
                    Ok(stream::repeat_with(move || {
                        let n = flooded.fetch_add(1, Ordering::Relaxed);
                        Ok(json!({"n": n, "padding": padding}))
                    }))
                }
            }),
        )
        .unwrap();
    registry
        .register_handler(
            op("test/panic", OpType::Query),
            Handler::unary(|_ctx, _input| async move {
                if true {
                    panic!("boom");
                }
                Ok(Value::Null)
            }),
        )
        .unwrap();
    registry
        .register_handler(
            op("test/panic_stream", OpType::Subscription),
            Handler::subscription(|_ctx, _input| async move {
                Ok(stream::iter(0..3).map(|n| {
                    if n == 2 {
                        panic!("boom in a stream");
                    }
                    Ok(json!({"n": n}))
                }))
            }),
        )
        .unwrap();
    registry
        .register_handler(
            op("test/fail_stream", OpType::Subscription)
                .with_error(ErrorSpec::new("STREAM_BROKE", "the stream broke")),
            Handler::subscription(|_ctx, _input| async move {
                Ok(stream::iter(vec![
                    Ok(json!({"n": 1})),
                    Ok(json!({"n": 2})),
                    Err(CallError::domain("STREAM_BROKE", "broke after two")),
                    Ok(json!({"n": 3})),
                ]))
            }),
        )
        .unwrap();
    // Outputs serde cannot write as JSON (map keys that are not strings).
    let unwritable = || std::collections::HashMap::from([((1u8, 2u8), 3u8)]);
    registry
        .register_handler(
            op("test/unwritable", OpType::Query),
            Handler::typed_unary(move |_ctx, _input: Value| async move { Ok(unwritable()) }),
        )
        .unwrap();
    registry
        .register_handler(
            op("test/unwritable_stream", OpType::Subscription),
            Handler::typed_subscription(move |_ctx, _input: Value| async move {
                // An empty map is written (`{}`); the second item cannot be.
                Ok(stream::iter([
                    Ok(std::collections::HashMap::new()),
                    Ok(unwritable()),
                    Ok(std::collections::HashMap::new()),
                ]))
            }),
        )
        .unwrap();
    registry
        .register_handler(
            op("test/undeclared", OpType::Mutation),
            Handler::unary(|_ctx, _input| async move {
                Err(CallError::domain("NOT_DECLARED", "an undeclared code")
                    .with_details(json!({"k": "v"})))
            }),
        )
        .unwrap();
    registry
        .register_handler(
            op("test/big", OpType::Query),
            Handler::unary(|_ctx, input: Value| async move {
                let len = input["len"].as_u64().unwrap_or(0) as usize;
                Ok(json!("x".repeat(len)))
            }),
        )
        .unwrap();
    registry
        .register_handler(
            op("test/ask_peer", OpType::Query),
            Handler::unary(|ctx, input: Value| async move {
                let peer = ctx
                    .peer()
                    .ok_or_else(|| CallError::internal("no peer"))?
                    .clone();
                peer.call_json("client/name", input).await
            }),
        )
        .unwrap();
    registry
}

use futures_util::StreamExt;

/// A server on loopback with [`test_registry`].
pub struct TestNode {
    pub server: Server,
    pub probes: Probes,
}

impl TestNode {
    pub fn start() -> Self {
        Self::with_config(ProtocolConfig::default())
    }

    pub fn with_config(protocol: ProtocolConfig) -> Self {
        Self::with_options(|options| options.protocol = protocol)
    }

    /// A node whose server options `configure` adjusts.
    pub fn with_options(configure: impl FnOnce(&mut ServerOptions)) -> Self {
        let probes = Probes::new();
        let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
        configure(&mut options);
        let server = Server::bind(test_registry(&probes), options).unwrap();
        Self { server, probes }
    }

    pub fn client_options(&self) -> ClientOptions {
        ClientOptions::new(ServerVerification::pin(self.server.fingerprint()))
    }

    /// A client endpoint and one connection to this node.
    pub async fn connect(&self) -> (Client, Connection) {
        let client = Client::new(self.client_options()).unwrap();
        let conn = client
            .connect(self.server.local_addr(), "localhost")
            .await
            .unwrap();
        (client, conn)
    }

    /// A bare quinn connection offering `alpn`, for sending hand-made frames.
    pub async fn raw(&self, alpn: &[u8]) -> anyhow::Result<quinn::Connection> {
        let crypto = tls::client_config(
            &ServerVerification::pin(self.server.fingerprint()),
            None,
            alpn,
        )?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap())?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        Ok(endpoint
            .connect(self.server.local_addr(), "localhost")?
            .await?)
    }

    pub async fn raw_call(&self) -> quinn::Connection {
        self.raw(ALPN_CALL).await.unwrap()
    }
}

/// One raw bidirectional stream with a frame reader.
pub struct RawStream {
    pub send: quinn::SendStream,
    pub reader: FrameReader<quinn::RecvStream>,
}

impl RawStream {
    pub async fn open(conn: &quinn::Connection) -> Self {
        let (send, recv) = conn.open_bi().await.unwrap();
        Self {
            send,
            reader: FrameReader::new(recv, u32::MAX),
        }
    }

    pub async fn send(&mut self, message: &Message) {
        let frame = encode_frame(message, u32::MAX).unwrap();
        self.send.write_all(&frame).await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }

    /// The next message, or `None` if nothing arrives within `within` or the stream ended.
    pub async fn next_within(&mut self, within: Duration) -> Option<Message> {
        match tokio::time::timeout(within, self.reader.next_frame()).await {
            Ok(Ok(Some(body))) => Some(Message::decode(&body).expect("server sends envelopes")),
            _ => None,
        }
    }

    pub async fn next(&mut self) -> Message {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("a message within 5 s")
    }

    /// Whether the server ended this stream (reset, stop or finish) within `within`.
    pub async fn ended_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            loop {
                match self.reader.next_frame().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return true,
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

/// A `call.requested` message.
pub fn requested(id: &str, op: &str, input: Value) -> Message {
    Message::new(
        id,
        alknet::wire::Event::Requested(alknet::wire::CallRequested {
            operation_id: op.into(),
            input,
            auth_token: None,
            timeout_ms: None,
            stream: None,
            item_batches: false,
            resume_after: None,
        }),
    )
}

/// A `call.requested` with `timeout_ms`.
pub fn requested_with_timeout(id: &str, op: &str, input: Value, timeout_ms: u64) -> Message {
    let mut message = requested(id, op, input);
    if let alknet::wire::Event::Requested(request) = &mut message.event {
        request.timeout_ms = Some(timeout_ms);
    }
    message
}

/// Says that `test` was skipped, and why: on stderr where `cargo test` shows it (libtest
/// captures `eprintln!` of passing tests, not writes to the stderr handle), and as a line in
/// `<target>/tmp/skipped/<group>` for the summary `scripts/test.sh` prints after the run. A
/// group is one missing tool or service (`docker`, `python mcp`, …).
pub fn skipped(group: &str, test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(group))
    {
        let _ = writeln!(file, "{test}\t{reason}");
    }
}
