//! What carries a connection: QUIC (a stream per subscription, a pool for calls), or a message
//! transport that behaves as one stream everything shares — a WebSocket session, or the other
//! half of an in-memory pair ([`Connection::pair`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

use super::writer::{
    FrameReceiver, FrameSender, InFlight, StreamHandle, WriterRef, frame_queue, write_frames,
};
use super::{ConnInner, Connection, STREAM_COST};
use crate::config::ProtocolConfig;
use crate::error::CallError;
use crate::identity::{Identity, IdentityProvider};
use crate::node::Node;
use crate::registry::Registry;
use crate::wire::split_frames;

/// QUIC application error code for a connection closed by its owner.
pub(crate) const QUIC_CLOSE_NORMAL: u32 = 0;
/// QUIC application error code for a connection ended because the node was over its memory
/// budget and this connection held the most. Calls lost with it are retryable.
pub(crate) const QUIC_CLOSE_RESOURCE_LIMIT: u32 = 3;
/// QUIC application error code for a connection closed after carrying nothing for the server's
/// `idle_connection_timeout`.
pub(crate) const QUIC_CLOSE_IDLE: u32 = 4;

/// Envelopes in flight between the halves of an in-memory pair, each way. What each half
/// queues for sending is bounded in bytes by its frame queue; this only decouples the halves.
const PAIR_QUEUE: usize = 64;

/// The key of the single stream of a message link.
pub(super) const MESSAGE_STREAM_KEY: u64 = 0;

/// What carries a connection.
pub(super) enum Link {
    /// QUIC: calls share a few long-lived streams, each subscription gets a stream of its own.
    Quic(quinn::Connection),
    /// A message transport: one envelope per message, in both directions, behaving as one
    /// stream that everything shares.
    Messages(MessageLink),
}

/// The connection's side of a message transport; [`MessageTransport`] is the transport's side.
pub(super) struct MessageLink {
    remote: SocketAddr,
    /// The one stream: every request and answer goes through it.
    pub stream: StreamHandle,
    /// Cancelled when the link is over, from either end: the transport then sends what is
    /// queued and closes.
    pub closing: CancellationToken,
    /// Why the link was closed, when the peer broke the protocol.
    pub violation: Arc<OnceLock<String>>,
}

impl Link {
    pub fn close(&self) {
        match self {
            Link::Quic(quic) => quic.close(QUIC_CLOSE_NORMAL.into(), b"closed"),
            Link::Messages(link) => link.closing.cancel(),
        }
    }

    /// When the peer (or this side) ended the connection over a resource limit or for being
    /// idle: the error for what was lost with it, retryable.
    pub fn closed_for_resources(&self) -> Option<CallError> {
        let Link::Quic(quic) = self else {
            return None;
        };
        let quinn::ConnectionError::ApplicationClosed(close) = quic.close_reason()? else {
            return None;
        };
        let code = close.error_code.into_inner();
        let why = if code == u64::from(QUIC_CLOSE_RESOURCE_LIMIT) {
            "connection ended: the node was over its memory budget and this connection held the most"
        } else if code == u64::from(QUIC_CLOSE_IDLE) {
            "connection ended: idle for longer than the server keeps idle connections"
        } else {
            return None;
        };
        Some(CallError::internal(why).with_retryable(true))
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Link::Quic(quic) => quic.close_reason().is_some(),
            Link::Messages(link) => link.closing.is_cancelled(),
        }
    }

    pub fn remote_address(&self) -> SocketAddr {
        match self {
            Link::Quic(quic) => quic.remote_address(),
            Link::Messages(link) => link.remote,
        }
    }
}

/// What a message transport (a WebSocket session) gets from [`Connection::start_messages`].
pub(crate) struct MessageTransport {
    /// Length-prefixed frames for the peer, one or more per chunk ([`crate::wire::split_frames`]):
    /// each frame's body goes out as one message.
    outgoing: FrameReceiver,
    /// Cancelled when the connection is over: send what `outgoing` still holds, then close.
    pub closing: CancellationToken,
    violation: Arc<OnceLock<String>>,
}

impl MessageTransport {
    /// The next chunk of frames to send. Waits while the connection is open; once it is
    /// closing, hands out what is still queued; then `None`: time to close.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.closing.is_cancelled() {
            tokio::select! {
                biased;
                chunk = self.outgoing.recv() => if chunk.is_some() {
                    return chunk;
                },
                _ = self.closing.cancelled() => {}
            }
        }
        self.outgoing.try_recv()
    }

    /// A chunk that is already queued, without waiting: to send several with one flush.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub fn queued_chunk(&mut self) -> Option<Bytes> {
        self.outgoing.try_recv()
    }

    /// Why the connection is closing, when the peer broke the protocol (a close reason for it).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub fn violation(&self) -> Option<&str> {
        self.violation.get().map(String::as_str)
    }
}

/// What a message transport hands the connection.
pub(crate) enum LinkMessage {
    /// One message: an envelope (not length-prefixed).
    Envelope(Bytes),
    /// The peer broke the transport's rules (a text message on a WebSocket): the link ends.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    Violation(String),
}

/// How the two halves of [`Connection::pair`] are set up.
#[derive(Clone, Default)]
pub struct PairOptions {
    /// Protocol settings for both halves.
    pub protocol: ProtocolConfig,
    /// Resolves request tokens on both halves; `None` treats token-less callers as their
    /// connection identity below.
    pub identities: Option<Arc<dyn IdentityProvider>>,
    /// Who the left half is, as the right half sees it (like a client certificate).
    pub left_identity: Option<Identity>,
    /// Who the right half is, as the left half sees it.
    pub right_identity: Option<Identity>,
}

impl Connection {
    /// Starts serving `quic`: accepts the peer's streams and answers its requests from the
    /// node's registry.
    ///
    /// `idle_timeout`: close the connection once it has carried nothing for that long (a
    /// server's setting).
    pub(crate) fn start(
        quic: quinn::Connection,
        node: Arc<Node>,
        idle_timeout: Option<Duration>,
    ) -> Connection {
        // The peer's certificate (if it presented one) names who it is, for the whole connection.
        let identity = crate::tls::peer_fingerprint(&quic)
            .and_then(|fingerprint| node.identities.as_ref()?.by_fingerprint(&fingerprint))
            .map(Arc::new);
        let remote = quic.remote_address();
        let account = node.memory.open();
        let connection = Self::assemble(Link::Quic(quic), identity, node, account);
        let inner = Arc::clone(connection.inner());
        let span = debug_span!("connection", %remote);
        if let Some(timeout) = idle_timeout {
            tokio::spawn(Arc::clone(&inner).close_when_idle(timeout));
        }
        // Not on the tracker: after a graceful shutdown begins this task only waits for the
        // connection to close, which the server does after the tracked work is done. Tracked,
        // it would hold every shutdown with a connected client for the whole grace period.
        tokio::spawn(Arc::clone(&inner).accept_streams().instrument(span));
        connection
    }

    /// Starts a connection over a message transport: `incoming` are the peer's messages, and
    /// the returned [`MessageTransport`] says what to send and when to close. `identity` is who
    /// the peer is for the whole session (from a WebSocket's upgrade request).
    pub(crate) fn start_messages(
        node: Arc<Node>,
        identity: Option<Arc<Identity>>,
        remote: SocketAddr,
        incoming: BoxStream<'static, LinkMessage>,
    ) -> (Connection, MessageTransport) {
        let account = node.memory.open();
        let (tx, outgoing) = frame_queue(
            node.config.stream_write_buffer,
            None,
            InFlight::default(),
            Arc::clone(&account),
        );
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
        let connection = Self::assemble(Link::Messages(link), identity, node, account);
        let inner = Arc::clone(connection.inner());
        let span = debug_span!("connection", %remote, transport = "messages");
        inner.node.tracker.spawn(
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

    /// Two connected halves in this process, without QUIC or sockets (like tarpc's channel
    /// transport): the left half serves `left` and calls `right`, and the other way round.
    /// Everything the protocol does — calls, subscriptions, aborts, deadlines, calls in both
    /// directions — runs as over a WebSocket session. Dropping either half closes both.
    pub fn pair(left: Registry, right: Registry) -> (Connection, Connection) {
        Self::pair_with(left, right, PairOptions::default())
    }

    /// [`Connection::pair`] with options: protocol settings and who each half is.
    pub fn pair_with(
        left: Registry,
        right: Registry,
        options: PairOptions,
    ) -> (Connection, Connection) {
        let node = |registry| {
            Node::new(
                Arc::new(registry),
                options.protocol.clone(),
                options.identities.clone(),
                None,
            )
        };
        let (left_node, right_node) = (node(left), node(right));
        let (to_left, left_incoming) = mpsc::channel(PAIR_QUEUE);
        let (to_right, right_incoming) = mpsc::channel(PAIR_QUEUE);
        let remote = SocketAddr::from(([127, 0, 0, 1], 0));
        let (left, left_transport) = Self::start_messages(
            left_node,
            options.right_identity.map(Arc::new),
            remote,
            receiver_stream(left_incoming),
        );
        let (right, right_transport) = Self::start_messages(
            right_node,
            options.left_identity.map(Arc::new),
            remote,
            receiver_stream(right_incoming),
        );
        tokio::spawn(pump(left_transport, to_right));
        tokio::spawn(pump(right_transport, to_left));
        (left, right)
    }
}

fn receiver_stream(rx: mpsc::Receiver<LinkMessage>) -> BoxStream<'static, LinkMessage> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        let message = rx.recv().await?;
        Some((message, rx))
    })
    .boxed()
}

/// Carries one half's frames to the other half, one envelope per message, until the half
/// closes; then sends what is still queued and lets go, which ends the other half's reading.
async fn pump(mut transport: MessageTransport, to: mpsc::Sender<LinkMessage>) {
    while let Some(chunk) = transport.next_chunk().await {
        for frame in split_frames(chunk) {
            if to.send(LinkMessage::Envelope(frame)).await.is_err() {
                transport.closing.cancel();
                return;
            }
        }
    }
}

impl ConnInner {
    /// A stream of its own for a subscription (QUIC); the one stream of a message link.
    pub(super) async fn open_stream(self: &Arc<Self>) -> Result<StreamHandle, CallError> {
        match &self.link {
            Link::Quic(quic) => {
                let (send, recv) = quic.open_bi().await.map_err(|_| self.closed_error())?;
                Ok(self.start_stream(send, recv, true))
            }
            Link::Messages(link) if !link.closing.is_cancelled() => Ok(link.stream.clone()),
            Link::Messages(_) => Err(self.closed_error()),
        }
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
                _ = self.account.evicted().cancelled() => {
                    quic.close(QUIC_CLOSE_RESOURCE_LIMIT.into(), b"over the node's memory budget");
                    break;
                }
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

    /// Closes the connection once nothing has run on it, either way, for `timeout`: no
    /// request from the peer arrived and no call or subscription was in flight. Checked four
    /// times per `timeout`, so an idle connection lasts up to 1¼ × `timeout`.
    async fn close_when_idle(self: Arc<Self>, timeout: Duration) {
        let Link::Quic(quic) = &self.link else {
            return;
        };
        let mut tick = tokio::time::interval(timeout / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = self.requests_seen.load(Ordering::Relaxed);
        let mut idle_since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                now = tick.tick() => {
                    let requests = self.requests_seen.load(Ordering::Relaxed);
                    if requests != seen || self.in_flight.load(Ordering::Relaxed) > 0 {
                        seen = requests;
                        idle_since = now;
                    } else if now.duration_since(idle_since) >= timeout {
                        debug!("closing an idle connection");
                        quic.close(QUIC_CLOSE_IDLE.into(), b"idle");
                        return;
                    }
                }
            }
        }
    }

    /// Starts only the writer of a QUIC stream this side opened, for an owner that reads the
    /// stream itself (a subscription). The stream finishes when the owner lets go.
    pub(super) fn start_writer(self: &Arc<Self>, send: quinn::SendStream) -> FrameSender {
        self.next_stream_key.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = frame_queue(
            self.config().stream_write_buffer,
            Some(send),
            Arc::clone(&self.in_flight),
            Arc::clone(&self.account),
        );
        self.node
            .tracker
            .spawn(write_frames(rx, self.cancel.child_token()));
        tx
    }

    /// Starts the reader and writer of a QUIC stream. `opened_here` streams belong to whoever
    /// opened them (a call-stream slot, a subscription): when that owner lets go, the stream
    /// finishes. Streams the peer opened stay open until the peer finishes its side.
    fn start_stream(
        self: &Arc<Self>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        opened_here: bool,
    ) -> StreamHandle {
        let key = self.next_stream_key.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = frame_queue(
            self.config().stream_write_buffer,
            Some(send),
            Arc::clone(&self.in_flight),
            Arc::clone(&self.account),
        );
        let token = self.cancel.child_token();
        let reader_done = CancellationToken::new();
        let writer = if opened_here {
            WriterRef::Weak(tx.downgrade())
        } else {
            WriterRef::Strong(tx.clone())
        };
        let tracker = &self.node.tracker;
        tracker.spawn(write_frames(rx, token.clone()));
        let cost = self.account.hold(STREAM_COST);
        let read = Arc::clone(self).read_frames(recv, key, writer, token, reader_done.clone());
        tracker.spawn(async move {
            read.await;
            drop(cost);
        });
        StreamHandle {
            key,
            tx,
            reader_done,
        }
    }
}
