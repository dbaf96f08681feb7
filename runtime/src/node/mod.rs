//! The node: what every transport of one endpoint shares, and the dispatch they all use.
//!
//! - `Node`: the registry, protocol settings, identities, task tracker and shutdown signals of
//!   one endpoint (a server, a client, a WebSocket client). Transports hold an `Arc<Node>`.
//! - `memory`: the node's memory budget, with one account per connection.
//! - `request`: the dispatch `Request` and its one constructor.
//! - `dispatch`: the rules of design §5 and §4.5–§4.6, with one entry point per shape.
//! - [`env`](mod@env): nested calls from inside a handler (design §6).
//!
//! Only [`env`](mod@env) is public: the rest is how the transports share one set of rules.

pub(crate) mod dispatch;
pub mod env;
pub(crate) mod memory;
pub(crate) mod request;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::JsonOutput;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ProtocolConfig;
use crate::error::CallError;
use crate::identity::IdentityProvider;
use crate::registry::Registry;
use dispatch::GuardedStream;
use request::Request;

/// State shared by every connection and route of one endpoint (a server or a client).
pub(crate) struct Node {
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
    /// Bytes of large frames being read on all connections (`node_frame_budget`).
    pub frame_budget: Arc<tokio::sync::Semaphore>,
    /// What all connections together make the node hold (`node_memory_budget`).
    pub memory: Arc<memory::MemoryBudget>,
    /// Numbers requests that arrive without an id of their own (HTTP, MCP).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    next_request: AtomicU64,
}

impl Node {
    /// A node serving `registry`.
    pub fn new(
        registry: Arc<Registry>,
        config: ProtocolConfig,
        identities: Option<Arc<dyn IdentityProvider>>,
        default_token: Option<String>,
    ) -> Arc<Self> {
        let frame_budget = Arc::new(tokio::sync::Semaphore::new(
            config.node_frame_budget.max(config.max_frame_len as usize),
        ));
        Arc::new(Self {
            frame_budget,
            memory: memory::MemoryBudget::new(config.node_memory_budget),
            registry,
            config,
            identities,
            default_token,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            next_request: AtomicU64::new(1),
        })
    }

    /// A fresh request id for a transport whose requests carry none: `<transport>-<n>`, unique
    /// on this node.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub fn request_id(&self, transport: &str) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("{transport}-{n}")
    }

    /// Runs a query/mutation to its answer ([`dispatch::unary`]).
    pub fn unary(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<JsonOutput, CallError>> + Send + 'static {
        dispatch::unary(
            Arc::clone(&self.registry),
            self.config.default_timeout,
            request,
        )
    }

    /// Sets up a subscription ([`dispatch::stream`]).
    pub fn stream(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<GuardedStream, CallError>> + Send + 'static {
        dispatch::stream(
            Arc::clone(&self.registry),
            self.config.default_timeout,
            request,
        )
    }
}
