//! [`Connection`]: one symmetric call-protocol session over QUIC (design §4.3–§4.4).
//!
//! Both ends run the same code. Each side
//! - accepts the streams the peer opens and reads envelopes from every stream, answering requests
//!   on the stream they arrived on;
//! - calls the peer over a small pool of long-lived streams (pipelined, round-robin), and gives
//!   each subscription a stream of its own;
//! - tracks its outgoing requests by id in a pending table and its incoming ones in a running
//!   table, so `call.aborted` can drop the handler.
//!
//! Each stream has a reader task and a writer task. The writer drains a bounded queue of encoded
//! frames and hands everything queued to QUIC in one write, so answers that pile up (a busy
//! subscription, many pipelined calls) are coalesced instead of paying a write each.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, debug_span, warn};

use crate::config::ProtocolConfig;
use crate::dispatch::{self, Answer, Request};
use crate::error::CallError;
use crate::identity::{Identity, IdentityProvider};
use crate::registry::Registry;
use crate::typed::{OpError, Operation};
use crate::wire::{
    CallRequested, DecodeError, Event, FrameError, FrameReader, Message, encode_frame,
    encode_frame_into, event_type,
};

/// Frames queued per stream before writers wait.
const WRITE_QUEUE: usize = 1024;
/// Frames handed to QUIC in one write at most.
const WRITE_BATCH: usize = 256;
/// Bytes of subscription items gathered into one frame batch at most.
const ITEM_BATCH_BYTES: usize = 64 * 1024;
/// QUIC application error code for a stream ended because of a protocol violation.
const STREAM_PROTOCOL_ERROR: u32 = 1;
/// QUIC application error code for a connection closed by its owner.
pub(crate) const CLOSE_NORMAL: u32 = 0;

/// State shared by every connection of one endpoint (a server or a client).
pub(crate) struct NodeShared {
    pub registry: Arc<Registry>,
    pub config: ProtocolConfig,
    /// Resolves peers (by certificate) and tokens (per request). `None`: everyone anonymous.
    pub identities: Option<Arc<dyn IdentityProvider>>,
    /// A token this side attaches to every request it sends, unless the call names its own.
    pub default_token: Option<String>,
    /// Every reader, writer and handler task, so a server can wait for them on shutdown.
    pub tracker: TaskTracker,
    /// Graceful shutdown began: stop reading new requests, end subscriptions.
    pub shutdown: CancellationToken,
    /// The grace period is over: answer the remaining calls and stop.
    pub hard_stop: CancellationToken,
}

impl NodeShared {
    pub fn new(
        registry: Arc<Registry>,
        config: ProtocolConfig,
        identities: Option<Arc<dyn IdentityProvider>>,
        default_token: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry,
            config,
            identities,
            default_token,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
        })
    }
}

/// A live call-protocol connection. Cheap to clone; the QUIC connection closes when the last
/// clone is dropped (or when [`Connection::close`] is called).
///
/// Through it this side calls operations the peer registered ([`Connection::call`],
/// [`Connection::subscribe`]) while the peer may call this side's registry at the same time.
#[derive(Clone)]
pub struct Connection {
    handle: Arc<ConnHandle>,
}

/// Closes the QUIC connection when the last user-facing handle goes away. Background tasks hold
/// `Arc<ConnInner>` only, so they never keep a connection alive on their own.
struct ConnHandle {
    inner: Arc<ConnInner>,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.inner.link.close();
    }
}

/// What carries a connection.
enum Link {
    /// QUIC: calls share a few long-lived streams, each subscription gets a stream of its own.
    Quic(quinn::Connection),
    /// A message transport (a WebSocket session): one envelope per message, in both
    /// directions, behaving as one stream that everything shares.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    Messages(MessageLink),
}

/// The connection's side of a message transport; [`MessageTransport`] is the transport's side.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
struct MessageLink {
    remote: SocketAddr,
    /// The one stream: every request and answer goes through it.
    stream: StreamHandle,
    /// Cancelled when the link is over, from either end: the transport then sends what is
    /// queued and closes.
    closing: CancellationToken,
    /// Why the link was closed, when the peer broke the protocol.
    violation: Arc<OnceLock<String>>,
}

impl Link {
    fn close(&self) {
        match self {
            Link::Quic(quic) => quic.close(CLOSE_NORMAL.into(), b"closed"),
            Link::Messages(link) => link.closing.cancel(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Link::Quic(quic) => quic.close_reason().is_some(),
            Link::Messages(link) => link.closing.is_cancelled(),
        }
    }

    fn remote_address(&self) -> SocketAddr {
        match self {
            Link::Quic(quic) => quic.remote_address(),
            Link::Messages(link) => link.remote,
        }
    }
}

/// What a message transport (a WebSocket session) gets from [`Connection::start_messages`].
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct MessageTransport {
    /// Length-prefixed frames for the peer, one or more per chunk ([`crate::wire::split_frames`]):
    /// each frame's body goes out as one message.
    pub outgoing: mpsc::Receiver<Bytes>,
    /// Cancelled when the connection is over: send what `outgoing` still holds, then close.
    pub closing: CancellationToken,
    violation: Arc<OnceLock<String>>,
}

#[cfg_attr(not(feature = "http"), allow(dead_code))]
impl MessageTransport {
    /// Why the connection is closing, when the peer broke the protocol (a close reason for it).
    pub fn violation(&self) -> Option<&str> {
        self.violation.get().map(String::as_str)
    }
}

/// What a message transport hands the connection.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) enum Incoming {
    /// One message: an envelope (not length-prefixed).
    Envelope(Bytes),
    /// The peer broke the transport's rules (a text message on a WebSocket): the link ends.
    Violation(String),
}

/// The key of the single stream of a message link.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
const MESSAGE_STREAM_KEY: u64 = 0;

struct ConnInner {
    link: Link,
    shared: Arc<NodeShared>,
    /// The identity of the peer, resolved once per connection.
    identity: Option<Arc<Identity>>,
    /// Back-reference for handing `Connection`s to handlers (`Context::peer`).
    handle: Weak<ConnHandle>,
    /// Requests this side sent, by numeric id.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Requests the peer sent that are still running, by wire id.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Long-lived streams for this side's query/mutation calls.
    call_streams: Vec<Mutex<Option<StreamHandle>>>,
    /// Serializes opening replacement call streams (rare), so the per-call path stays a
    /// plain lock-and-clone.
    opening_call_stream: tokio::sync::Mutex<()>,
    next_call_stream: AtomicUsize,
    next_id: AtomicU64,
    next_stream_key: AtomicU64,
    /// Cancelled when the connection is gone; parent of every stream and handler token.
    cancel: CancellationToken,
    /// This connection's view of the endpoint's graceful shutdown and hard stop. Children of the
    /// shared tokens, so waiting on them never contends with other connections.
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    /// One permit per running request from the peer (`max_concurrent_requests`).
    request_slots: Arc<Semaphore>,
    /// Bytes of large frames being read on this connection (`frame_buffer_budget`).
    frame_budget: Arc<Semaphore>,
}

struct Pending {
    sink: PendingSink,
    /// The stream the request went out on: if it dies, the request cannot be answered.
    stream_key: u64,
}

enum PendingSink {
    Unary(oneshot::Sender<Result<Value, CallError>>),
    Stream(mpsc::Sender<StreamEvent>),
}

/// What the reader hands a subscription. A closed channel without `Completed` or `Failed` means
/// the stream or connection was lost.
enum StreamEvent {
    Item(Value),
    Completed,
    Failed(CallError),
}

/// The sending half of a stream, as seen by callers.
#[derive(Clone)]
struct StreamHandle {
    key: u64,
    tx: mpsc::Sender<Bytes>,
    /// Cancelled when the reader ended: nothing more can arrive on this stream.
    reader_done: CancellationToken,
}

/// Options for one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Deadline for this call; sent as `timeout_ms` and enforced locally too. Defaults to
    /// [`ProtocolConfig::default_timeout`] for query/mutation and none for subscriptions.
    pub timeout: Option<Duration>,
    /// A token that replaces the connection's identity for this request.
    pub auth_token: Option<String>,
}

impl CallOptions {
    /// Options with a deadline.
    pub fn timeout(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::default()
        }
    }
}

impl Connection {
    /// Starts serving `quic`: accepts the peer's streams and answers its requests from the
    /// registry in `shared`.
    pub(crate) fn start(quic: quinn::Connection, shared: Arc<NodeShared>) -> Connection {
        // The peer's certificate (if it presented one) names who it is, for the whole connection.
        let identity = crate::tls::peer_fingerprint(&quic)
            .and_then(|fingerprint| shared.identities.as_ref()?.by_fingerprint(&fingerprint))
            .map(Arc::new);
        let remote = quic.remote_address();
        let connection = Self::assemble(Link::Quic(quic), identity, shared);
        let inner = Arc::clone(connection.inner());
        let span = debug_span!("connection", %remote);
        // Not on the tracker: after a graceful shutdown begins this task only waits for the
        // connection to close, which the server does after the tracked work is done. Tracked,
        // it would hold every shutdown with a connected client for the whole grace period.
        tokio::spawn(Arc::clone(&inner).accept_streams().instrument(span));
        connection
    }

    /// Starts a connection over a message transport (a WebSocket session): `incoming` are the
    /// peer's messages, and the returned [`MessageTransport`] says what to send and when to
    /// close. `identity` is who the peer is for the whole session (from its upgrade request).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn start_messages(
        shared: Arc<NodeShared>,
        identity: Option<Arc<Identity>>,
        remote: SocketAddr,
        incoming: BoxStream<'static, Incoming>,
    ) -> (Connection, MessageTransport) {
        let (tx, outgoing) = mpsc::channel(WRITE_QUEUE);
        let closing = CancellationToken::new();
        let violation = Arc::new(OnceLock::new());
        let link = MessageLink {
            remote,
            stream: StreamHandle {
                key: MESSAGE_STREAM_KEY,
                tx: tx.clone(),
                reader_done: closing.clone(),
            },
            closing: closing.clone(),
            violation: Arc::clone(&violation),
        };
        let connection = Self::assemble(Link::Messages(link), identity, shared);
        let inner = Arc::clone(connection.inner());
        let span = debug_span!("connection", %remote, transport = "websocket");
        inner.shared.tracker.spawn(
            Arc::clone(&inner)
                .read_messages(incoming, tx)
                .instrument(span),
        );
        let transport = MessageTransport {
            outgoing,
            closing,
            violation,
        };
        (connection, transport)
    }

    fn assemble(
        link: Link,
        identity: Option<Arc<Identity>>,
        shared: Arc<NodeShared>,
    ) -> Connection {
        let streams = shared.config.call_streams.max(1);
        let config = &shared.config;
        let request_slots = Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
        let frame_budget = Arc::new(Semaphore::new(
            config
                .frame_buffer_budget
                .max(config.max_frame_len as usize),
        ));
        let handle = Arc::new_cyclic(|handle| ConnHandle {
            inner: Arc::new(ConnInner {
                link,
                identity,
                handle: handle.clone(),
                pending: Mutex::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                call_streams: (0..streams).map(|_| Mutex::new(None)).collect(),
                opening_call_stream: tokio::sync::Mutex::new(()),
                next_call_stream: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                next_stream_key: AtomicU64::new(0),
                cancel: CancellationToken::new(),
                shutdown: shared.shutdown.child_token(),
                hard_stop: shared.hard_stop.child_token(),
                request_slots,
                frame_budget,
                shared,
            }),
        });
        Connection { handle }
    }

    fn inner(&self) -> &Arc<ConnInner> {
        &self.handle.inner
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.inner().link.remote_address()
    }

    /// The identity of the peer (from its client certificate), if any.
    pub fn peer_identity(&self) -> Option<&Identity> {
        self.inner().identity.as_deref()
    }

    /// The underlying QUIC connection; `None` for a WebSocket session.
    pub fn quic(&self) -> Option<&quinn::Connection> {
        match &self.inner().link {
            Link::Quic(quic) => Some(quic),
            Link::Messages(_) => None,
        }
    }

    /// How many streams this side has run on the connection so far, opened or accepted. Calls
    /// share a few long-lived streams, so this grows with subscriptions, not with calls. A
    /// WebSocket session is one channel: 1.
    pub fn streams_started(&self) -> u64 {
        match self.inner().link {
            Link::Quic(_) => self.inner().next_stream_key.load(Ordering::Relaxed),
            // The one channel everything shares.
            Link::Messages(_) => 1,
        }
    }

    /// Closes the connection now. Pending calls on both sides fail with "connection closed".
    pub fn close(&self) {
        self.inner().link.close();
    }

    /// Drops this side's pooled call streams so their writers can finish (graceful shutdown).
    pub(crate) async fn release_call_streams(&self) {
        let _opening = self.inner().opening_call_stream.lock().await;
        for slot in &self.inner().call_streams {
            slot.lock().expect("call stream lock").take();
        }
    }

    /// Completes when the connection is closed, by either side.
    pub async fn closed(&self) {
        self.inner().cancel.cancelled().await
    }

    /// Calls an operation declared with `#[operation]`: typed input, typed output, and its
    /// declared errors as their enum in [`OpError::Domain`].
    pub async fn call<O: Operation>(
        &self,
        input: &O::Input,
    ) -> Result<O::Output, OpError<O::Error>> {
        self.call_with::<O>(input, CallOptions::default()).await
    }

    /// [`Connection::call`] with options.
    pub async fn call_with<O: Operation>(
        &self,
        input: &O::Input,
        options: CallOptions,
    ) -> Result<O::Output, OpError<O::Error>> {
        crate::typed::typed_call::<O, _, _>(input, |input| {
            self.call_json_with(O::NAME, input, options)
        })
        .await
    }

    /// Calls a query or mutation on the peer by name, with JSON values. `op` may carry the
    /// wire's leading `/`.
    pub async fn call_json(&self, op: &str, input: Value) -> Result<Value, CallError> {
        self.call_json_with(op, input, CallOptions::default()).await
    }

    /// [`Connection::call_json`] with options. Dropping the future before it completes sends
    /// `call.aborted`, so the peer stops working on it.
    pub async fn call_json_with(
        &self,
        op: &str,
        input: Value,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let inner = self.inner();
        let timeout = options
            .timeout
            .unwrap_or(inner.shared.config.default_timeout);
        let stream = inner.call_stream().await?;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = inner.request_frame(id, op, input, &options, Some(timeout), false)?;
        let (tx, rx) = oneshot::channel();
        let mut guard = inner
            .send_request(&stream, id, frame, PendingSink::Unary(tx))
            .await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => {
                guard.disarm();
                result
            }
            Ok(Err(_)) => {
                guard.disarm();
                Err(inner.lost_error("stream closed"))
            }
            // The guard removes the pending entry and tells the peer to stop.
            Err(_) => Err(CallError::timeout(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Subscribes to an operation declared with `#[operation]`: a stream of typed items.
    pub async fn subscribe<O: Operation>(
        &self,
        input: &O::Input,
    ) -> Result<TypedSubscription<O>, OpError<O::Error>> {
        self.subscribe_with::<O>(input, CallOptions::default())
            .await
    }

    /// [`Connection::subscribe`] with options.
    pub async fn subscribe_with<O: Operation>(
        &self,
        input: &O::Input,
        options: CallOptions,
    ) -> Result<TypedSubscription<O>, OpError<O::Error>> {
        let inner = self
            .subscribe_json_with(O::NAME, encode_input(input)?, options)
            .await?;
        Ok(TypedSubscription {
            inner,
            _op: std::marker::PhantomData,
        })
    }

    /// Subscribes to a subscription on the peer by name, with JSON values. The stream yields
    /// items until the subscription completes (the stream ends) or fails (one `Err`, then the
    /// end). Dropping it early sends `call.aborted`.
    pub async fn subscribe_json(&self, op: &str, input: Value) -> Result<Subscription, CallError> {
        self.subscribe_json_with(op, input, CallOptions::default())
            .await
    }

    /// [`Connection::subscribe_json`] with options (a deadline for the whole subscription, a
    /// token).
    pub async fn subscribe_json_with(
        &self,
        op: &str,
        input: Value,
        options: CallOptions,
    ) -> Result<Subscription, CallError> {
        let inner = self.inner();
        let stream = inner.open_stream().await?;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = inner.request_frame(id, op, input, &options, options.timeout, true)?;
        let (tx, rx) = mpsc::channel(inner.shared.config.subscription_buffer.max(1));
        let guard = inner
            .send_request(&stream, id, frame, PendingSink::Stream(tx))
            .await?;
        Ok(Subscription {
            rx,
            guard,
            deadline: options.timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            finished: false,
        })
    }
}

pub(crate) fn encode_input<I: Serialize + ?Sized>(input: &I) -> Result<Value, CallError> {
    serde_json::to_value(input)
        .map_err(|e| CallError::invalid_input(format!("input not serializable: {e}"), ""))
}

pub(crate) fn decode_output<O: DeserializeOwned>(output: Value) -> Result<O, CallError> {
    serde_json::from_value(output).map_err(|e| {
        CallError::internal(format!("the output does not match the expected type: {e}"))
    })
}

impl ConnInner {
    fn config(&self) -> &ProtocolConfig {
        &self.shared.config
    }

    /// The error for calls that lost their stream: "connection closed" when the whole
    /// connection is gone, as the design requires, else what happened to the stream.
    fn lost_error(&self, stream_problem: &str) -> CallError {
        if self.link.is_closed() || self.cancel.is_cancelled() {
            CallError::internal("connection closed")
        } else {
            CallError::internal(stream_problem)
        }
    }

    fn request_frame(
        &self,
        id: u64,
        op: &str,
        input: Value,
        options: &CallOptions,
        timeout: Option<Duration>,
        stream: bool,
    ) -> Result<Bytes, CallError> {
        let operation_id = if op.starts_with('/') {
            op.to_owned()
        } else {
            format!("/{op}")
        };
        let message = Message::new(
            id.to_string(),
            Event::Requested(CallRequested {
                operation_id,
                input,
                auth_token: options
                    .auth_token
                    .clone()
                    .or_else(|| self.shared.default_token.clone()),
                timeout_ms: timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                stream: Some(stream),
            }),
        );
        encode_frame(&message, self.config().max_frame_len)
            .map_err(|e| CallError::invalid_input(format!("request too large to send: {e}"), ""))
    }

    /// Registers `sink` as the waiter for request `id` and sends the request on `stream`. The
    /// returned guard aborts the request if it is dropped before being disarmed.
    async fn send_request(
        self: &Arc<Self>,
        stream: &StreamHandle,
        id: u64,
        frame: Bytes,
        sink: PendingSink,
    ) -> Result<AbortOnDrop, CallError> {
        let pending = Pending {
            sink,
            stream_key: stream.key,
        };
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id, pending);
        let mut guard = AbortOnDrop {
            inner: Arc::clone(self),
            id,
            tx: Some(stream.tx.clone()),
        };
        if stream.tx.send(frame).await.is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
            guard.disarm();
            return Err(self.lost_error("stream closed"));
        }
        Ok(guard)
    }

    /// A pooled stream for a query/mutation, opening or replacing it as needed.
    async fn call_stream(self: &Arc<Self>) -> Result<StreamHandle, CallError> {
        if let Link::Messages(_) = self.link {
            return self.open_stream().await;
        }
        let slot = &self.call_streams
            [self.next_call_stream.fetch_add(1, Ordering::Relaxed) % self.call_streams.len()];
        let alive = |slot: &Mutex<Option<StreamHandle>>| {
            slot.lock()
                .expect("call stream lock")
                .as_ref()
                .filter(|s| !s.reader_done.is_cancelled() && !s.tx.is_closed())
                .cloned()
        };
        if let Some(stream) = alive(slot) {
            return Ok(stream);
        }
        let _opening = self.opening_call_stream.lock().await;
        if let Some(stream) = alive(slot) {
            return Ok(stream);
        }
        let stream = self.open_stream().await?;
        *slot.lock().expect("call stream lock") = Some(stream.clone());
        Ok(stream)
    }

    /// A stream of its own for a subscription (QUIC); the one stream of a message link.
    async fn open_stream(self: &Arc<Self>) -> Result<StreamHandle, CallError> {
        match &self.link {
            Link::Quic(quic) => {
                let (send, recv) = quic
                    .open_bi()
                    .await
                    .map_err(|_| CallError::internal("connection closed"))?;
                Ok(self.start_stream(send, recv, true))
            }
            Link::Messages(link) if !link.closing.is_cancelled() => Ok(link.stream.clone()),
            Link::Messages(_) => Err(CallError::internal("connection closed")),
        }
    }

    /// The connection is gone: fail what waits for the peer, forget what the peer asked for.
    fn connection_ended(&self) {
        self.cancel.cancel();
        self.fail_pending(|_| true);
        self.running.lock().expect("running lock").clear();
    }

    /// Accepts the peer's streams until the connection ends, then fails what is left.
    async fn accept_streams(self: Arc<Self>) {
        let Link::Quic(quic) = &self.link else {
            return;
        };
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                accepted = quic.accept_bi() => match accepted {
                    Ok((send, recv)) => {
                        self.start_stream(send, recv, false);
                    }
                    Err(error) => {
                        debug!(%error, "connection ended");
                        break;
                    }
                },
            }
        }
        // During a graceful shutdown the connection lives on until the server closes it.
        let reason = quic.closed().await;
        debug!(%reason, "connection closed");
        self.connection_ended();
    }

    /// Reads the peer's messages on a message link until it ends, handling each as
    /// [`ConnInner::read_frames`] does for a QUIC stream.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    async fn read_messages(
        self: Arc<Self>,
        mut incoming: BoxStream<'static, Incoming>,
        tx: mpsc::Sender<Bytes>,
    ) {
        let Link::Messages(link) = &self.link else {
            return;
        };
        let writer = WriterRef::Strong(tx);
        let token = self.cancel.child_token();
        let mut out = BytesMut::new();
        let mut shutting_down = false;
        let violation = loop {
            let next = tokio::select! {
                biased;
                next = incoming.next() => next,
                _ = link.closing.cancelled() => break None,
                _ = self.shutdown.cancelled() => {
                    shutting_down = true;
                    break None;
                }
            };
            let body = match next {
                None => break None,
                Some(Incoming::Violation(problem)) => break Some(problem),
                Some(Incoming::Envelope(body)) => body,
            };
            if let Err(problem) = self
                .handle_body(&body, MESSAGE_STREAM_KEY, &writer, &token, &mut out)
                .await
            {
                break Some(format!("not an envelope: {problem}"));
            }
            if !out.is_empty() {
                if let Some(tx) = writer.get() {
                    let _ = tx.send(out.split().freeze()).await;
                }
            }
        };
        if shutting_down {
            // Stop reading, but let what is running answer (subscriptions end at once with
            // "server shutting down"), until the grace period is over.
            let hard_stop = self.hard_stop.cancelled();
            tokio::pin!(hard_stop);
            while !self.running.lock().expect("running lock").is_empty() {
                tokio::select! {
                    _ = &mut hard_stop => break,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        }
        if let Some(problem) = violation {
            warn!(%problem, "protocol violation: closing the session");
            let _ = link.violation.set(problem);
        }
        link.closing.cancel();
        debug!("connection closed");
        self.connection_ended();
    }

    /// Starts the reader and writer of a stream. `opened_here` streams belong to whoever opened
    /// them (a call-stream slot, a subscription): when that owner lets go, the stream finishes.
    /// Streams the peer opened stay open until the peer finishes its side.
    fn start_stream(
        self: &Arc<Self>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        opened_here: bool,
    ) -> StreamHandle {
        let key = self.next_stream_key.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let token = self.cancel.child_token();
        let reader_done = CancellationToken::new();
        let writer = if opened_here {
            WriterRef::Weak(tx.downgrade())
        } else {
            WriterRef::Strong(tx.clone())
        };
        let tracker = &self.shared.tracker;
        tracker.spawn(write_frames(send, rx, token.clone()));
        tracker.spawn(Arc::clone(self).read_frames(recv, key, writer, token, reader_done.clone()));
        StreamHandle {
            key,
            tx,
            reader_done,
        }
    }

    /// Reads envelopes from one stream until it ends, handling each.
    async fn read_frames(
        self: Arc<Self>,
        recv: quinn::RecvStream,
        key: u64,
        writer: WriterRef,
        token: CancellationToken,
        reader_done: CancellationToken,
    ) {
        let mut reader = FrameReader::new(recv, self.config().max_frame_len)
            .with_budget(Arc::clone(&self.frame_budget));
        let mut shutting_down = false;
        // Answers produced while reading: sent as one chunk once no whole frame is buffered.
        let mut out = BytesMut::new();
        let stream_gone = token.cancelled();
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(stream_gone, shutdown);
        let malformed = loop {
            // Reading first: while frames are buffered, the cancellation futures are not polled.
            let frame = tokio::select! {
                biased;
                frame = reader.next_frame() => frame,
                _ = &mut stream_gone => break None,
                _ = &mut shutdown => {
                    shutting_down = true;
                    break None;
                }
            };
            let body = match frame {
                Ok(Some(body)) => body,
                Ok(None) => break None,
                Err(FrameError::Io(error)) => {
                    debug!(%error, "stream read ended");
                    break None;
                }
                Err(error) => break Some(error.to_string()),
            };
            if let Err(problem) = self
                .handle_body(&body, key, &writer, &token, &mut out)
                .await
            {
                break Some(problem);
            }
            if !out.is_empty() && (!reader.has_buffered_frame() || out.len() >= ITEM_BATCH_BYTES) {
                let chunk = out.split().freeze();
                // No writer left: the stream's owner let go, and nothing can be answered.
                if let Some(tx) = writer.get() {
                    let _ = tx.send(chunk).await;
                }
            }
        };
        reader_done.cancel();
        if let Some(problem) = malformed {
            warn!(%problem, "malformed frame: ending the stream");
            let mut recv = reader.into_inner();
            let _ = recv.stop(STREAM_PROTOCOL_ERROR.into());
            // Resets the send side and aborts every handler started from this stream.
            token.cancel();
        } else if shutting_down {
            // Dropping an unfinished receive stream tells the peer to stop sending, and its
            // writes would fail, failing calls we are still about to answer. Keep the stream
            // open, unread, until the connection closes.
            let recv = reader.into_inner();
            let closed = self.cancel.clone();
            tokio::spawn(async move {
                closed.cancelled().await;
                drop(recv);
            });
        }
        self.fail_pending(|p| p.stream_key == key);
    }

    /// Decodes one envelope and handles it. `Err` is a message that is not an envelope at all:
    /// the stream (or session) must end.
    async fn handle_body(
        self: &Arc<Self>,
        body: &[u8],
        key: u64,
        writer: &WriterRef,
        token: &CancellationToken,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        match Message::decode(body) {
            Ok(message) => self.handle_message(message, key, writer, token, out).await,
            Err(DecodeError::NotEnvelope(error)) => return Err(error.to_string()),
            Err(DecodeError::UnknownType { id, event_type }) => {
                debug!(%id, %event_type, "ignoring unknown event type");
            }
            Err(DecodeError::BadPayload {
                id,
                event_type,
                reason,
            }) => self.handle_bad_payload(id, event_type, reason, out).await,
        }
        Ok(())
    }

    async fn handle_message(
        self: &Arc<Self>,
        message: Message,
        key: u64,
        writer: &WriterRef,
        token: &CancellationToken,
        out: &mut BytesMut,
    ) {
        let Message { id, event } = message;
        match event {
            Event::Requested(request) => {
                // Requests on a stream whose writer is gone cannot be answered: drop them.
                if let Some(tx) = writer.get() {
                    self.start_request(id, request, &tx, token, out).await;
                }
            }
            Event::Aborted => {
                let cancel = self.running.lock().expect("running lock").remove(&id);
                if let Some(cancel) = cancel {
                    debug!(%id, "request aborted by the caller");
                    cancel.cancel();
                }
            }
            Event::Responded(output) => self.deliver(&id, key, Ok(output), false).await,
            Event::Error(error) => self.deliver(&id, key, Err(error), true).await,
            Event::Completed => self.complete(&id).await,
        }
    }

    /// A request with a malformed payload is answered; a malformed answer fails its call.
    async fn handle_bad_payload(
        self: &Arc<Self>,
        id: String,
        event: &'static str,
        reason: String,
        out: &mut BytesMut,
    ) {
        let problem = format!("malformed `{event}` payload: {reason}");
        if event == event_type::REQUESTED {
            let error = CallError::invalid_input(problem, "");
            self.encode_answer(out, Message::new(id, Event::Error(error)));
        } else if let Ok(numeric) = id.parse::<u64>() {
            let entry = self.pending.lock().expect("pending lock").remove(&numeric);
            if let Some(entry) = entry {
                entry.sink.fail(CallError::internal(problem)).await;
            }
        }
    }

    /// Routes an answer to the caller waiting for it. Unknown ids (answers that raced an abort)
    /// are dropped.
    async fn deliver(&self, id: &str, key: u64, item: Result<Value, CallError>, terminal: bool) {
        let Ok(numeric) = id.parse::<u64>() else {
            return;
        };
        let sink = {
            let mut pending = self.pending.lock().expect("pending lock");
            match pending.get(&numeric) {
                None => return,
                Some(entry) if entry.stream_key != key => {
                    debug!(%id, "answer arrived on another stream than its request");
                }
                Some(_) => {}
            }
            match &pending[&numeric].sink {
                PendingSink::Stream(tx) if !terminal => Sink::Item(tx.clone()),
                _ => Sink::Final(pending.remove(&numeric).expect("entry present").sink),
            }
        };
        match (sink, item) {
            // Waiting here throttles the stream when the subscriber reads slowly.
            (Sink::Item(tx), Ok(output)) => {
                let _ = tx.send(StreamEvent::Item(output)).await;
            }
            (Sink::Item(tx), Err(error)) => {
                let _ = tx.send(StreamEvent::Failed(error)).await;
            }
            (Sink::Final(sink), Ok(output)) => match sink {
                PendingSink::Unary(tx) => {
                    let _ = tx.send(Ok(output));
                }
                PendingSink::Stream(tx) => {
                    let _ = tx.send(StreamEvent::Item(output)).await;
                }
            },
            (Sink::Final(sink), Err(error)) => sink.fail(error).await,
        }
    }

    async fn complete(&self, id: &str) {
        let Ok(numeric) = id.parse::<u64>() else {
            return;
        };
        let entry = self.pending.lock().expect("pending lock").remove(&numeric);
        match entry.map(|p| p.sink) {
            Some(PendingSink::Unary(tx)) => {
                let _ = tx.send(Err(CallError::internal(
                    "protocol violation: call.completed answered a query/mutation",
                )));
            }
            Some(PendingSink::Stream(tx)) => {
                let _ = tx.send(StreamEvent::Completed).await;
            }
            None => {}
        }
    }

    /// Fails every pending request matching `which` with the connection/stream loss error.
    fn fail_pending(&self, which: impl Fn(&Pending) -> bool) {
        let lost: Vec<Pending> = {
            let mut pending = self.pending.lock().expect("pending lock");
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| which(p))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for entry in lost {
            // A subscription notices the dropped sender itself (see `Subscription::poll_next`).
            if let PendingSink::Unary(tx) = entry.sink {
                let _ = tx.send(Err(
                    self.lost_error("stream closed before the answer arrived")
                ));
            }
        }
    }

    /// Appends `message` to `out` as a frame; an answer over the frame limit becomes an
    /// `INTERNAL` error for its id instead.
    fn encode_answer(&self, out: &mut BytesMut, message: Message) {
        if let Err(error) = encode_frame_into(&message, out, self.config().max_frame_len) {
            let error = CallError::internal(format!("the answer is too large to send: {error}"));
            encode_frame_into(
                &Message::new(message.id, Event::Error(error)),
                out,
                u32::MAX,
            )
            .expect("an error frame is small");
        }
    }

    async fn send_message(&self, tx: &mpsc::Sender<Bytes>, message: Message) -> Result<(), ()> {
        let mut out = BytesMut::new();
        self.encode_answer(&mut out, message);
        tx.send(out.freeze()).await.map_err(|_| ())
    }

    /// Serves a request from the peer.
    ///
    /// Fast path: a query/mutation whose dispatch finishes on its first poll (most do: no IO,
    /// or IO that is already ready) is answered right here, without a task, a table entry or a
    /// cancellation link. Anything else gets a task of its own, registered for `call.aborted`.
    async fn start_request(
        self: &Arc<Self>,
        id: String,
        request: CallRequested,
        tx: &mpsc::Sender<Bytes>,
        stream_token: &CancellationToken,
        out: &mut BytesMut,
    ) {
        if self.running.lock().expect("running lock").contains_key(&id) {
            let error =
                CallError::invalid_input(format!("request id `{id}` is already in use"), "");
            self.encode_answer(out, Message::new(id, Event::Error(error)));
            return;
        }
        let span = debug_span!("call", id = %id, operation = %request.operation_id);
        // A token that resolves replaces the connection's identity for this request only; one
        // that does not resolve changes nothing (and reveals nothing).
        let identity = request
            .auth_token
            .as_deref()
            .and_then(|token| self.shared.identities.as_ref()?.by_token(token))
            .map(Arc::new)
            .or_else(|| self.identity.clone());
        let cancel = CancellationToken::new();
        let dispatched = dispatch::dispatch(
            Arc::clone(&self.shared.registry),
            self.config().default_timeout,
            Request {
                id: id.clone(),
                parent_id: None,
                operation_id: request.operation_id,
                input: request.input,
                timeout_ms: request.timeout_ms,
                deadline: None,
                expect_stream: request.stream,
                identity,
                peer: self.handle.upgrade().map(|handle| Connection { handle }),
                cancel: cancel.clone(),
                internal: false,
            },
        );
        let mut dispatched = dispatched.instrument(span.clone()).boxed();
        let work = match (&mut dispatched).now_or_never() {
            Some(Answer::Unary(outcome)) => {
                self.encode_answer(out, Message::new(id, outcome_event(outcome)));
                return;
            }
            Some(Answer::Stream(items)) => Work::Stream(Box::new(items)),
            None => Work::Pending(dispatched),
        };
        // Waiting here stops this stream's reader: backpressure on a peer with too much running.
        let Ok(slot) = Arc::clone(&self.request_slots).acquire_owned().await else {
            return;
        };
        self.running
            .lock()
            .expect("running lock")
            .insert(id.clone(), cancel.clone());
        let task =
            Arc::clone(self).run_request(id, work, tx.clone(), cancel, stream_token.clone(), slot);
        self.shared.tracker.spawn(task.instrument(span));
    }

    async fn run_request(
        self: Arc<Self>,
        id: String,
        work: Work,
        tx: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
        stream_token: CancellationToken,
        _slot: OwnedSemaphorePermit,
    ) {
        let _running = RunningGuard {
            inner: &self,
            id: id.clone(),
        };
        let items = match work {
            Work::Stream(items) => *items,
            Work::Pending(dispatched) => {
                let answer = tokio::select! {
                    biased;
                    answer = dispatched => answer,
                    _ = cancel.cancelled() => return,
                    // The stream or connection went away: cancel the request, so whatever
                    // it started stops too.
                    _ = stream_token.cancelled() => {
                        cancel.cancel();
                        return;
                    }
                    _ = self.hard_stop.cancelled() => {
                        cancel.cancel();
                        Answer::Unary(Err(CallError::internal("server shutting down")))
                    }
                };
                match answer {
                    Answer::Unary(outcome) => {
                        self.answer(&tx, id, outcome).await;
                        return;
                    }
                    Answer::Stream(items) => items,
                }
            }
        };
        self.stream_items(id, items, tx, cancel, stream_token).await;
    }

    async fn answer(
        &self,
        tx: &mpsc::Sender<Bytes>,
        id: String,
        outcome: Result<Value, CallError>,
    ) {
        let _ = self
            .send_message(tx, Message::new(id, outcome_event(outcome)))
            .await;
    }

    /// Sends a subscription's items, gathering those that are ready at once into one batch.
    async fn stream_items(
        &self,
        id: String,
        mut items: impl Stream<Item = Result<Value, CallError>> + Unpin,
        tx: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
        stream_token: CancellationToken,
    ) {
        let max_len = self.config().max_frame_len;
        let mut batch = BytesMut::new();
        let cancelled = cancel.cancelled();
        let stream_gone = stream_token.cancelled();
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(cancelled, stream_gone, shutdown);
        loop {
            let first = tokio::select! {
                biased;
                _ = &mut cancelled => return,
                _ = &mut stream_gone => {
                    cancel.cancel();
                    return;
                }
                _ = &mut shutdown => Some(Err(CallError::internal("server shutting down"))),
                item = items.next() => item,
            };
            let mut next = Some(first);
            let mut finished = false;
            while let Some(item) = next.take() {
                let message = match item {
                    Some(Ok(output)) => Message::new(id.as_str(), Event::Responded(output)),
                    Some(Err(error)) => {
                        finished = true;
                        Message::new(id.as_str(), Event::Error(error))
                    }
                    None => {
                        finished = true;
                        Message::new(id.as_str(), Event::Completed)
                    }
                };
                if let Err(error) = encode_frame_into(&message, &mut batch, max_len) {
                    finished = true;
                    let error =
                        CallError::internal(format!("an item is too large to send: {error}"));
                    encode_frame_into(
                        &Message::new(id.as_str(), Event::Error(error)),
                        &mut batch,
                        u32::MAX,
                    )
                    .expect("an error frame is small");
                }
                if finished || batch.len() >= ITEM_BATCH_BYTES {
                    break;
                }
                next = items.next().now_or_never();
            }
            if tx.send(batch.split().freeze()).await.is_err() || finished {
                return;
            }
        }
    }
}

fn outcome_event(outcome: Result<Value, CallError>) -> Event {
    match outcome {
        Ok(output) => Event::Responded(output),
        Err(error) => Event::Error(error),
    }
}

/// A request that did not finish on its first poll.
enum Work {
    /// Still being dispatched or running (a query/mutation, or a subscription's setup).
    Pending(futures_util::future::BoxFuture<'static, Answer>),
    /// A subscription, ready to stream.
    Stream(Box<dispatch::GuardedStream>),
}

/// How a stream's reader reaches the stream's writer, to answer requests that arrive on it.
enum WriterRef {
    /// For streams the peer opened: the reader keeps them open until the peer finishes.
    Strong(mpsc::Sender<Bytes>),
    /// For streams this side opened: their owner keeps them open; once it lets go (a
    /// subscription ends, a call-stream slot is replaced) the writer finishes the stream.
    Weak(mpsc::WeakSender<Bytes>),
}

impl WriterRef {
    fn get(&self) -> Option<mpsc::Sender<Bytes>> {
        match self {
            WriterRef::Strong(tx) => Some(tx.clone()),
            WriterRef::Weak(tx) => tx.upgrade(),
        }
    }
}

/// What [`ConnInner::deliver`] does with an answer once the lock is released.
enum Sink {
    Item(mpsc::Sender<StreamEvent>),
    Final(PendingSink),
}

impl PendingSink {
    async fn fail(self, error: CallError) {
        match self {
            PendingSink::Unary(tx) => {
                let _ = tx.send(Err(error));
            }
            PendingSink::Stream(tx) => {
                let _ = tx.send(StreamEvent::Failed(error)).await;
            }
        }
    }
}

/// Removes a request from the running table when its task ends, however it ends.
struct RunningGuard<'a> {
    inner: &'a ConnInner,
    id: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .running
            .lock()
            .expect("running lock")
            .remove(&self.id);
    }
}

/// Writes queued frames to a stream, coalescing whatever is queued into one QUIC write. Ends
/// when every sender is gone (all answers written), or at once when the stream is cancelled.
async fn write_frames(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Bytes>,
    token: CancellationToken,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    loop {
        if token.is_cancelled() {
            let _ = send.reset(STREAM_PROTOCOL_ERROR.into());
            return;
        }
        let received = tokio::select! {
            biased;
            received = rx.recv_many(&mut batch, WRITE_BATCH) => received,
            _ = &mut cancelled => {
                let _ = send.reset(STREAM_PROTOCOL_ERROR.into());
                return;
            }
        };
        if received == 0 {
            break;
        }
        if batch.len() < WRITE_BATCH {
            // Let tasks that are already runnable (other callers, other handlers) queue their
            // frames first, so one QUIC write — and one datagram — carries many of them. When
            // nothing else is runnable this returns at once.
            tokio::task::yield_now().await;
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(frame) => batch.push(frame),
                    Err(_) => break,
                }
            }
        }
        if let Err(error) = send.write_all_chunks(&mut batch).await {
            debug!(%error, "stream write failed");
            token.cancel();
            return;
        }
        batch.clear();
    }
    let _ = send.finish();
    // Wait until the peer has the tail, so a graceful close does not cut it off.
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
}

/// Sends `call.aborted` for a request whose caller went away before its answer.
struct AbortOnDrop {
    inner: Arc<ConnInner>,
    id: u64,
    tx: Option<mpsc::Sender<Bytes>>,
}

impl AbortOnDrop {
    /// The answer arrived: nothing to abort.
    fn disarm(&mut self) {
        self.tx = None;
    }

    /// Forgets the request and, if it was still pending, tells the peer to stop.
    fn abort(&mut self) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let was_pending = self
            .inner
            .pending
            .lock()
            .expect("pending lock")
            .remove(&self.id)
            .is_some();
        if !was_pending {
            return;
        }
        let frame = encode_frame(&Message::new(self.id.to_string(), Event::Aborted), u32::MAX)
            .expect("an abort frame is small");
        if let Err(mpsc::error::TrySendError::Full(frame)) = tx.try_send(frame) {
            // The queue is busy: hand the abort to a task instead of blocking a destructor.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = tx.send(frame).await;
                });
            }
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The items of a subscription. Ends after `call.completed`, or after yielding one `Err`.
/// Dropping it before the end aborts the subscription on the peer.
pub struct Subscription {
    rx: mpsc::Receiver<StreamEvent>,
    guard: AbortOnDrop,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    finished: bool,
}

impl Stream for Subscription {
    type Item = Result<Value, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(event) = this.rx.poll_recv(cx) {
            if let Some(StreamEvent::Item(output)) = event {
                return Poll::Ready(Some(Ok(output)));
            }
            this.finished = true;
            this.guard.disarm();
            return Poll::Ready(match event {
                Some(StreamEvent::Completed) => None,
                Some(StreamEvent::Failed(error)) => Some(Err(error)),
                _ => Some(Err(this
                    .guard
                    .inner
                    .lost_error("stream closed before the subscription ended"))),
            });
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.finished = true;
            this.guard.abort();
            return Poll::Ready(Some(Err(CallError::timeout(
                "the subscription deadline expired",
            ))));
        }
        Poll::Pending
    }
}

/// The items of a subscription to an `#[operation]`: typed, with its declared errors as their
/// enum. Dropping it early aborts the subscription.
pub struct TypedSubscription<O: Operation> {
    inner: Subscription,
    _op: std::marker::PhantomData<fn() -> O>,
}

impl<O: Operation> Stream for TypedSubscription<O> {
    type Item = Result<O::Output, OpError<O::Error>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx).map(|item| {
            item.map(|r| match r {
                Ok(output) => decode_output(output).map_err(OpError::Call),
                Err(error) => Err(OpError::from_call_error(error)),
            })
        })
    }
}
