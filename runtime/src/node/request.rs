//! [`Request`]: one request as dispatch takes it, from any transport or from a composer.
//!
//! Every transport builds its requests with [`Request::new`] and sets only what it knows (a
//! peer, a `timeout_ms`, a parent deadline); everything else has one default here. A field that
//! handlers read belongs in [`RequestMeta`], which the handler's context carries; a field only
//! dispatch reads belongs here.

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::RequestMeta;
use crate::identity::Identity;

/// One request as a transport received it (or as a composer made it).
pub(crate) struct Request {
    /// What the handler's context will carry.
    pub meta: RequestMeta,
    /// The operation, as the wire names it (a leading `/` is accepted).
    pub operation_id: String,
    pub input: Value,
    /// The caller's relative deadline (`call.requested`'s `timeout_ms`).
    pub timeout_ms: Option<u64>,
    /// An upper bound inherited from a parent request.
    pub deadline: Option<Instant>,
    /// Nested call from a composition: internal operations are reachable.
    pub internal: bool,
}

impl Request {
    /// A request for `operation_id` by `identity`, aborted through `cancel`: no parent, no
    /// peer, no deadline of its own (the node's default applies), external operations only.
    pub fn new(
        id: String,
        operation_id: impl Into<String>,
        input: Value,
        identity: Option<Arc<Identity>>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            meta: RequestMeta::new(id, identity, cancel),
            operation_id: operation_id.into(),
            input,
            timeout_ms: None,
            deadline: None,
            internal: false,
        }
    }
}
