//! [`Connection`]: one symmetric call-protocol session (design §4.3–§4.4), over QUIC, a
//! WebSocket, or an in-memory pair.
//!
//! Both ends run the same code. Each side
//! - accepts the streams the peer opens and reads envelopes from every stream, answering requests
//!   on the stream they arrived on;
//! - calls the peer over a small pool of long-lived streams (pipelined, round-robin), and gives
//!   each subscription a stream of its own;
//! - tracks its outgoing requests by id in a pending table and its incoming ones in a running
//!   table, so `call.aborted` can drop the handler.
//!
//! The roles, one module each:
//! - `link`: what carries the connection (QUIC, a message transport, [`Connection::pair`]);
//! - `reader`: reading envelopes from a stream and routing each to one of the sides below;
//! - `outgoing`: the calling side — pending table, call-stream pool, aborts, [`Subscription`];
//! - `incoming`: the serving side — running table, the fast path, streaming items;
//! - `writer`: one writer task per stream, coalescing queued frames into one write.

mod incoming;
mod link;
mod outgoing;
mod reader;
mod writer;

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::ProtocolConfig;
use crate::context::Context;
use crate::error::CallError;
use crate::identity::Identity;
use crate::node::Node;
use crate::node::memory::{Account, Held};
use crate::peer::{CallOptions, Peer};
use crate::registry::ValueStream;
use incoming::IncomingRequests;
use link::Link;
use outgoing::OutgoingCalls;

pub use link::PairOptions;
pub(crate) use link::QUIC_CLOSE_NORMAL;
#[cfg(feature = "http")]
pub(crate) use link::{LinkMessage, MessageTransport};
pub use outgoing::{Subscription, TypedSubscription};

/// A live call-protocol connection. Cheap to clone; the connection closes when the last clone
/// is dropped (or when [`Connection::close`] is called).
///
/// Through it this side calls operations the peer registered ([`Connection::call`],
/// [`Connection::subscribe`]) while the peer may call this side's registry at the same time.
#[derive(Clone)]
pub struct Connection {
    handle: Arc<ConnHandle>,
}

/// Closes the link when the last user-facing handle goes away. Background tasks hold
/// `Arc<ConnInner>` only, so they never keep a connection alive on their own.
struct ConnHandle {
    inner: Arc<ConnInner>,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.inner.link.close();
    }
}

/// Everything one connection holds; the roles' methods live in their modules.
struct ConnInner {
    link: Link,
    node: Arc<Node>,
    /// The identity of the peer, resolved once per connection.
    identity: Option<Arc<Identity>>,
    /// Back-reference for handing `Connection`s to handlers (`Context::peer`).
    handle: Weak<ConnHandle>,
    /// The calling side.
    outgoing: OutgoingCalls,
    /// The serving side.
    incoming: IncomingRequests,
    next_stream_key: AtomicU64,
    /// Cancelled when the connection is gone; parent of every stream and handler token.
    cancel: CancellationToken,
    /// This connection's view of the endpoint's graceful shutdown and hard stop. Children of the
    /// node's tokens, so waiting on them never contends with other connections.
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    /// Bytes of large frames being read on this connection (`frame_buffer_budget`).
    frame_budget: Arc<tokio::sync::Semaphore>,
    /// Calls and requests in flight on this connection, both ways: decides whether frames are
    /// written in place or batched (see `writer`).
    in_flight: writer::InFlight,
    /// Requests the peer has sent so far: with `in_flight`, tells an idle connection.
    requests_seen: AtomicU64,
    /// This connection's share of the node's memory budget.
    account: Arc<Account>,
    /// The fixed cost of the connection, charged while it lives.
    _base_cost: Held,
}

/// What a connection costs before it carries anything (QUIC's connection state, the
/// connection's tasks and tables; a WebSocket session's buffers), charged to its account.
const CONNECTION_COST: usize = 64 * 1024;
/// What a stream costs besides its read buffer and queued frames (QUIC's stream state, its
/// reader and writer tasks), charged while its reader runs.
const STREAM_COST: usize = 8 * 1024;

impl Connection {
    /// A connection over `link`, with nothing running yet: the link's constructor starts the
    /// tasks that read it.
    fn assemble(
        link: Link,
        identity: Option<Arc<Identity>>,
        node: Arc<Node>,
        account: Arc<Account>,
    ) -> Connection {
        let config = node.config.clone();
        let frame_budget = Arc::new(tokio::sync::Semaphore::new(
            config
                .frame_buffer_budget
                .max(config.max_frame_len as usize),
        ));
        let handle = Arc::new_cyclic(|handle| ConnHandle {
            inner: Arc::new(ConnInner {
                link,
                identity,
                handle: handle.clone(),
                outgoing: OutgoingCalls::new(&config),
                incoming: IncomingRequests::new(&config),
                next_stream_key: AtomicU64::new(0),
                cancel: CancellationToken::new(),
                shutdown: node.shutdown.child_token(),
                hard_stop: node.hard_stop.child_token(),
                frame_budget,
                in_flight: writer::InFlight::default(),
                requests_seen: AtomicU64::new(0),
                _base_cost: account.hold(CONNECTION_COST),
                account,
                node,
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

    /// The underlying QUIC connection; `None` for a WebSocket session or an in-memory pair.
    pub fn quic(&self) -> Option<&quinn::Connection> {
        match &self.inner().link {
            Link::Quic(quic) => Some(quic),
            Link::Messages(_) => None,
        }
    }

    /// How many streams this side has run on the connection so far, opened or accepted. Calls
    /// share a few long-lived streams, so this grows with subscriptions, not with calls. A
    /// message link (WebSocket, in-memory) is one channel: 1.
    pub fn streams_started(&self) -> u64 {
        match self.inner().link {
            Link::Quic(_) => self.inner().next_stream_key.load(Ordering::Relaxed),
            Link::Messages(_) => 1,
        }
    }

    /// Closes the connection now. Pending calls on both sides fail with "connection closed".
    pub fn close(&self) {
        self.inner().link.close();
    }

    /// Whether the connection is closed, by either side.
    pub fn is_closed(&self) -> bool {
        self.inner().link.is_closed() || self.inner().cancel.is_cancelled()
    }

    /// Completes when the connection is closed, by either side.
    pub async fn closed(&self) {
        self.inner().cancel.cancelled().await
    }
}

/// Handlers and nested calls reach the remote side through this view (see [`Peer`]).
impl Peer for Connection {
    fn call_json(
        &self,
        op: &str,
        input: Value,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        let connection = self.clone();
        let op = op.to_owned();
        async move { connection.call_json_with(&op, input, options).await }.boxed()
    }

    fn subscribe_json(
        &self,
        op: &str,
        input: Value,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        let connection = self.clone();
        let op = op.to_owned();
        async move {
            let items = connection.subscribe_json_with(&op, input, options).await?;
            Ok(items.boxed())
        }
        .boxed()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Context {
    /// The connection the request arrived on, when it came over the call protocol (QUIC, a
    /// WebSocket session, an in-memory pair). Because the protocol is symmetric, a handler can
    /// call operations the remote side registered.
    pub fn peer(&self) -> Option<&Connection> {
        self.peer_link()?.as_any().downcast_ref::<Connection>()
    }
}

impl ConnInner {
    fn config(&self) -> &ProtocolConfig {
        &self.node.config
    }

    /// What the transport may buffer for a stream this side stops reading: charged to the
    /// account while it does. A QUIC stream's receive window; a message link's socket buffers
    /// are the kernel's.
    fn unread_cost(&self) -> usize {
        match self.link {
            Link::Quic(_) => self.config().stream_receive_window as usize,
            Link::Messages(_) => 0,
        }
    }

    /// This connection as a handler's peer.
    fn as_peer(&self) -> Option<Arc<dyn Peer>> {
        let handle = self.handle.upgrade()?;
        Some(Arc::new(Connection { handle }))
    }

    /// The error for calls that lost their stream: "connection closed" when the whole
    /// connection is gone, as the design requires, else what happened to the stream.
    fn lost_error(&self, stream_problem: &str) -> CallError {
        if self.link.is_closed() || self.cancel.is_cancelled() {
            self.closed_error()
        } else {
            CallError::internal(stream_problem)
        }
    }

    /// The error for a call on a closed connection: "connection closed", or, when it was ended
    /// over a resource limit or for being idle, that (retryable).
    fn closed_error(&self) -> CallError {
        self.link
            .closed_for_resources()
            .unwrap_or_else(|| CallError::internal("connection closed"))
    }

    /// The connection is gone: fail what waits for the peer, forget what the peer asked for.
    fn connection_ended(&self) {
        self.cancel.cancel();
        self.fail_pending(|_| true);
        self.incoming.forget_all();
    }
}

#[cfg(test)]
mod tests;
