//! [`Context`]: what a handler knows about the request it is serving.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::env::Env;
use crate::identity::Identity;
use crate::registry::{Composition, Registry};

/// Per-request information handed to every handler.
///
/// Cloning is cheap. A handler never has to watch for cancellation itself — an aborted request's
/// handler future is dropped — but long-running work that is not a future (a thread, a child
/// process) can wait on [`Context::cancelled`] to stop in time.
#[derive(Clone)]
pub struct Context {
    pub(crate) request_id: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) identity: Option<Arc<Identity>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: CancellationToken,
    pub(crate) peer: Option<Connection>,
    pub(crate) registry: Arc<Registry>,
    /// The running operation's composition: authority and allow-list for `env()`.
    pub(crate) composition: Option<Arc<Composition>>,
    /// The node's default deadline for queries/mutations, for nested calls.
    pub(crate) default_timeout: Duration,
    /// Numbers this request's children: `7.1`, `7.2`, …
    pub(crate) children: Arc<AtomicU64>,
}

impl Context {
    /// The id of this request, as the caller sent it.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The id of the request that caused this one, for nested calls.
    pub fn parent_id(&self) -> Option<&str> {
        self.parent_id.as_deref()
    }

    /// The caller, or `None` for an anonymous caller.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
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

    /// Whether the request was aborted (by the caller, a timeout or shutdown).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the request is aborted.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The connection the request arrived on, when it came over the call protocol. Because the
    /// protocol is symmetric, a handler can call operations the remote side registered.
    pub fn peer(&self) -> Option<&Connection> {
        self.peer.as_ref()
    }

    /// The registry serving this request.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Application state provided at registration with [`Registry::provide`].
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.registry.state::<T>()
    }

    /// Nested calls: to operations of this node or of the peer, under the running operation's
    /// declared authority (see [`Registry::register_composed`]).
    pub fn env(&self) -> Env {
        Env::new(self.clone())
    }
}
