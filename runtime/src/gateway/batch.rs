//! Batches: several calls in one request, for `POST /batch` and MCP's `batch` tool alike.
//!
//! One behaviour on every surface: a batch holds at most [`MAX_BATCH`] calls (more is refused
//! whole, nothing runs); a malformed entry refuses the whole batch; the calls run concurrently
//! and the answers come back in order, `{"output": …}` or `{"error": …}` each.

use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::CallError;
use crate::identity::Identity;
use crate::node::Node;
use crate::node::request::Request;
use crate::wire::JsonOutput;

/// Largest number of calls in one batch.
pub const MAX_BATCH: usize = 1000;

/// One call: `{"operation": "svc/op", "input": …}`; a missing `input` is `{}`.
#[derive(Deserialize)]
pub(crate) struct BatchCall {
    pub operation: String,
    #[serde(default = "empty_object")]
    pub input: Value,
}

pub(crate) fn empty_object() -> Value {
    json!({})
}

/// Why a batch was refused before anything ran.
pub(crate) struct BatchRefused {
    pub error: CallError,
    /// Over [`MAX_BATCH`] (HTTP answers 413), rather than malformed (422).
    pub too_large: bool,
}

/// Reads a batch: all of it, or a refusal naming the first bad entry.
pub(crate) fn parse_batch(calls: Vec<Value>) -> Result<Vec<BatchCall>, BatchRefused> {
    if calls.len() > MAX_BATCH {
        return Err(BatchRefused {
            error: CallError::invalid_input(
                format!(
                    "a batch holds at most {MAX_BATCH} calls; this one has {}",
                    calls.len()
                ),
                "",
            ),
            too_large: true,
        });
    }
    calls
        .into_iter()
        .enumerate()
        .map(|(i, call)| {
            serde_json::from_value::<BatchCall>(call).map_err(|e| BatchRefused {
                error: CallError::invalid_input(
                    format!("call {i} is not {{\"operation\": \"svc/op\", \"input\": …}}: {e}"),
                    format!("/{i}"),
                ),
                too_large: false,
            })
        })
        .collect()
}

/// Runs the calls concurrently as `identity`; the answers in order. `cancel` stops them all
/// (each call also stops when this future is dropped).
pub(crate) async fn run_batch(
    node: &Node,
    transport: &str,
    calls: Vec<BatchCall>,
    identity: Option<std::sync::Arc<Identity>>,
    cancel: &CancellationToken,
) -> Vec<Value> {
    join_all(calls.into_iter().map(|call| {
        let request = Request::new(
            node.request_id(transport),
            call.operation,
            call.input,
            identity.clone(),
            cancel.child_token(),
        );
        let answer = node.unary(request);
        async move {
            match answer.await.and_then(JsonOutput::into_value) {
                Ok(output) => json!({"output": output}),
                Err(error) => json!({"error": error}),
            }
        }
    }))
    .await
}
