//! [`Context`]: what a handler knows about the request it is serving.
//!
//! A context is made by dispatch from the request a transport (or a composer) handed it: the
//! request's own facts (`RequestMeta`: id, parent, caller, peer, cancellation) plus what
//! dispatch resolved (deadline, composition). Nested calls are reached with `Context::env`
//! (see [`Env`](crate::Env)) and the caller's connection with `Context::peer`; both live in the
//! layers that implement them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;
use crate::peer::Peer;
use crate::registry::{Composition, Registry};

/// The facts of one request that its handler can read: filled by whoever makes the request (a
/// transport, a composer) and carried into the handler's [`Context`] unchanged.
#[derive(Clone)]
pub(crate) struct RequestMeta {
    /// The request id, as the caller sent it (or `<parent>.<n>` for a nested call).
    pub id: String,
    /// The request that caused this one, for nested calls.
    pub parent_id: Option<String>,
    /// Who calls; `None` is anonymous.
    pub identity: Option<Arc<Identity>>,
    /// The remote side of the connection the request arrived on, if it came over one.
    pub peer: Option<Arc<dyn Peer>>,
    /// Fires when the request is aborted (by its caller, a deadline, shutdown or its parent).
    pub cancel: CancellationToken,
    /// For a resumable subscription: the last item the caller already has.
    pub resume_after: Option<u64>,
}

impl RequestMeta {
    /// A request with no parent and no peer.
    pub fn new(id: String, identity: Option<Arc<Identity>>, cancel: CancellationToken) -> Self {
        Self {
            id,
            parent_id: None,
            identity,
            peer: None,
            cancel,
            resume_after: None,
        }
    }
}

/// Per-request information handed to every handler.
///
/// Cloning is cheap. A handler never has to watch for cancellation itself — an aborted request's
/// handler future is dropped — but long-running work that is not a future (a thread, a child
/// process) can wait on [`Context::cancelled`] to stop in time.
#[derive(Clone)]
pub struct Context {
    pub(crate) meta: RequestMeta,
    pub(crate) deadline: Option<Instant>,
    pub(crate) registry: Arc<Registry>,
    /// The running operation's composition: authority and allow-list for `env()`.
    pub(crate) composition: Option<Arc<Composition>>,
    /// The node's default deadline for queries/mutations, for nested calls.
    pub(crate) default_timeout: Duration,
    /// Numbers this request's children: `7.1`, `7.2`, …
    pub(crate) children: Arc<AtomicU64>,
}

impl Context {
    /// The context of a request that dispatch resolved.
    pub(crate) fn new(
        meta: RequestMeta,
        deadline: Option<Instant>,
        registry: Arc<Registry>,
        composition: Option<Arc<Composition>>,
        default_timeout: Duration,
    ) -> Self {
        Self {
            meta,
            deadline,
            registry,
            composition,
            default_timeout,
            children: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The id of this request, as the caller sent it.
    pub fn request_id(&self) -> &str {
        &self.meta.id
    }

    /// The id of the request that caused this one, for nested calls.
    pub fn parent_id(&self) -> Option<&str> {
        self.meta.parent_id.as_deref()
    }

    /// The caller, or `None` for an anonymous caller.
    pub fn identity(&self) -> Option<&Identity> {
        self.meta.identity.as_deref()
    }

    /// When the request expires, if it has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (zero once passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// For a resumable subscription (`#[operation(subscription, resumable)]`): the last item the
    /// caller already received, numbered from 1 in the order this subscription sends them. The
    /// handler goes on with item `n + 1`, so the caller sees no gap and no duplicate. `None`
    /// for a fresh subscription. Dispatch refuses a resume point for an operation that is not
    /// resumable, so a handler only sees one when it declared it can resume.
    pub fn resume_after(&self) -> Option<u64> {
        self.meta.resume_after
    }

    /// Whether the request was aborted (by the caller, a timeout or shutdown).
    pub fn is_cancelled(&self) -> bool {
        self.meta.cancel.is_cancelled()
    }

    /// Completes when the request is aborted.
    pub async fn cancelled(&self) {
        self.meta.cancel.cancelled().await
    }

    /// The remote side of the connection the request arrived on, as the narrow [`Peer`] view
    /// (nested calls use it); `Context::peer` gives the connection itself.
    pub fn peer_link(&self) -> Option<&Arc<dyn Peer>> {
        self.meta.peer.as_ref()
    }

    /// The registry serving this request.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Application state provided at registration with [`Registry::provide`].
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.registry.state::<T>()
    }
}
