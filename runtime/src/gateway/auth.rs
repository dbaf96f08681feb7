//! Who calls over HTTP: `Authorization: Bearer <token>`, resolved through the node's identity
//! provider. The gateway routes, the WebSocket upgrade and MCP share it.

use std::sync::Arc;

use axum::http::{HeaderMap, header};

use crate::identity::Identity;
use crate::node::Node;

/// The identity named by an `Authorization: Bearer <token>` header, if the token resolves. A
/// token that does not resolve is the same as none: the caller is anonymous.
pub(crate) fn bearer_identity(node: &Node, headers: &HeaderMap) -> Option<Arc<Identity>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    node.identities
        .as_ref()?
        .by_token(token.trim())
        .map(Arc::new)
}
