//! Request bodies within the node's memory budget.
//!
//! A body is read whole before its operation runs, so many clients sending large bodies at
//! once could make the node hold `max_frame_len` each. Bodies over [`SMALL_FRAME_LEN`] draw on
//! the node's budget for large frames first (the one QUIC's large frames draw on,
//! `node_frame_budget`), waiting at most `frame_budget_wait`, and must arrive within
//! `frame_timeout`: the same rules as a large frame on QUIC. Without room in time the answer
//! is 503 with a retryable error; a body too slow to arrive gets 408.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::CallError;
use crate::node::Node;
use crate::wire::SMALL_FRAME_LEN;

/// Reads a large body under the budget, then runs the route with it.
pub(super) async fn within_budget(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let config = &node.config;
    let max = config.max_frame_len as usize;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    // Bodies of unknown length may grow to the limit, so they reserve it.
    let size = match (announced, chunked) {
        (Some(len), _) => len,
        (None, true) => max,
        (None, false) => 0,
    };
    if size <= SMALL_FRAME_LEN as usize {
        return next.run(request).await;
    }
    if size > max {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            CallError::invalid_input(
                format!("the body of {size} bytes is over this node's limit of {max}"),
                "",
            ),
        );
    }
    let acquire = Arc::clone(&node.frame_budget).acquire_many_owned(size as u32);
    let Ok(Ok(permit)) = tokio::time::timeout(config.frame_budget_wait, acquire).await else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            CallError::internal(
                "no room in this node's memory budget for large request bodies; try again",
            )
            .with_retryable(true),
        );
    };
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(config.frame_timeout, axum::body::to_bytes(body, max)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                CallError::invalid_input("the body could not be read whole", ""),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                CallError::invalid_input("the body arrived too slowly", ""),
            );
        }
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    // Held until the route has answered: it parsed the body (and may have kept it) meanwhile.
    drop(permit);
    response
}

fn refuse(status: StatusCode, error: CallError) -> Response {
    (status, axum::Json(error)).into_response()
}
