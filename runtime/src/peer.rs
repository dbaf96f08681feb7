//! [`Peer`]: the other side of the connection a request arrived on, as handlers and nested calls
//! see it.
//!
//! The call protocol is symmetric, so a handler serving a request from a connection can call
//! operations the remote side registered. Handlers reach the remote side through
//! [`Context::peer`](crate::Context::peer), which gives the [`Connection`](crate::Connection)
//! itself; this trait is the narrow view the lower layers (the context, nested calls) hold, so
//! they do not depend on how connections are built.

use std::any::Any;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::error::CallError;
use crate::registry::ValueStream;

/// Options for one call to a peer.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Deadline for this call; sent as `timeout_ms` and enforced locally too. Defaults to
    /// [`ProtocolConfig::default_timeout`](crate::ProtocolConfig::default_timeout) for
    /// query/mutation and none for subscriptions.
    pub timeout: Option<Duration>,
    /// A token that replaces the connection's identity for this request.
    pub auth_token: Option<String>,
    /// For a resumable subscription: continue after this item (the count of items already
    /// received, when the first was 1). Sent as `call.requested`'s `resume_after`.
    pub resume_after: Option<u64>,
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

/// What a request's context can do with the remote side of its connection: call its
/// queries/mutations and subscribe to its subscriptions, by name with JSON values. Implemented
/// by [`Connection`](crate::Connection).
pub trait Peer: Send + Sync + 'static {
    /// Calls a query/mutation the remote side registered. Dropping the future aborts the call
    /// on the remote side.
    fn call_json(
        &self,
        op: &str,
        input: Value,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<Value, CallError>>;

    /// Subscribes to a subscription the remote side registered. Dropping the stream aborts it.
    fn subscribe_json(
        &self,
        op: &str,
        input: Value,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>>;

    /// The concrete peer, for [`Context::peer`](crate::Context::peer).
    fn as_any(&self) -> &dyn Any;
}
