//! The MCP server at `/mcp` (design §8), on rmcp's streamable-HTTP transport.
//!
//! Tools are the projection of `alknet_spec::mcp` — the same function `alknet-codegen mcp` prints
//! with — filtered per caller: the `Authorization: Bearer` token of each HTTP request resolves
//! through the node's identity provider, and only operations whose scope rules the caller passes
//! are listed (resource rules are decided per call). Calls go through the same dispatch as every
//! other transport. Results carry `structuredContent` (wrapped as `{"result": …}` when the
//! output is not an object) and a text copy; errors the caller can act on (domain errors,
//! invalid input, forbidden) are tool errors (`isError`), an unknown tool is a JSON-RPC error.
//! A client's `notifications/cancelled` drops the handler.
//!
//! Gateway mode (`alknet serve --mcp-gateway`) exposes four fixed tools instead — `search`,
//! `schema`, `call`, `batch` — for registries too large to list as tools.

use std::sync::Arc;

use alknet_spec::{OpType, Visibility, mcp as projection};
use axum::http::request::Parts;
use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::auth::bearer_identity;
use super::batch::{parse_batch, run_batch};
use crate::access;
use crate::error::CallError;
use crate::identity::Identity;
use crate::node::Node;
use crate::node::request::Request;
use crate::wire::JsonOutput;

/// The MCP server: one per session, sharing the node.
#[derive(Clone)]
struct McpServer {
    node: Arc<Node>,
    gateway_mode: bool,
}

fn caller(node: &Node, context: &RequestContext<RoleServer>) -> Option<Arc<Identity>> {
    let parts = context.extensions.get::<Parts>()?;
    bearer_identity(node, &parts.headers)
}

fn tool(value: Value) -> Result<Tool, ErrorData> {
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("bad tool: {e}"), None))
}

fn gateway_tools() -> Vec<Value> {
    let object = |properties: Value, required: &[&str]| json!({"type": "object", "properties": properties, "required": required});
    vec![
        json!({
            "name": "search",
            "description": "Lists the operations you may call, optionally filtered by `q` (name or description).",
            "inputSchema": object(json!({"q": {"type": "string"}}), &[]),
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }),
        json!({
            "name": "schema",
            "description": "The full specification (input/output schemas, errors, access) of one operation.",
            "inputSchema": object(json!({"name": {"type": "string"}}), &["name"]),
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }),
        json!({
            "name": "call",
            "description": "Calls one query or mutation by name with its input.",
            "inputSchema": object(json!({"operation": {"type": "string"}, "input": {}}), &["operation"]),
            "annotations": {"readOnlyHint": false, "openWorldHint": false}
        }),
        json!({
            "name": "batch",
            "description": "Several calls; answers in order, each {output} or {error}.",
            "inputSchema": object(json!({"calls": {"type": "array", "items": {"type": "object", "properties": {"operation": {"type": "string"}, "input": {}}, "required": ["operation"]}}}), &["calls"]),
            "annotations": {"readOnlyHint": false, "openWorldHint": false}
        }),
    ]
}

/// A tool result: `structuredContent` plus a text copy; `isError` for failures.
/// A failed operation as a tool error whose `structuredContent` would have to match the tool's
/// `outputSchema`: clients validate it against that schema even on errors (the TypeScript SDK
/// then throws instead of returning `isError`), so the `{"error": <call.error>}` goes in the
/// text content only.
fn error_result(error: &CallError) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(
        json!({ "error": error }).to_string(),
    )])
    .into()
}

fn result(structured: Value, is_error: bool) -> CallToolResponse {
    if is_error {
        CallToolResult::structured_error(structured).into()
    } else {
        CallToolResult::structured(structured).into()
    }
}

impl McpServer {
    async fn dispatch(
        &self,
        operation: &str,
        input: Value,
        identity: Option<Arc<Identity>>,
        cancel: CancellationToken,
    ) -> Result<Value, CallError> {
        let request = Request::new(
            self.node.request_id("mcp"),
            operation,
            input,
            identity,
            cancel,
        );
        self.node
            .unary(request)
            .await
            .and_then(JsonOutput::into_value)
    }

    /// Calls one operation for a tool, turning the outcome into a tool result.
    async fn call_operation(
        &self,
        operation: &str,
        arguments: Value,
        identity: Option<Arc<Identity>>,
        cancel: CancellationToken,
    ) -> Result<CallToolResponse, ErrorData> {
        let spec = self
            .node
            .registry
            .get(operation)
            .map(|op| op.spec().clone())
            .filter(|spec| {
                projection::is_tool(spec)
                    && access::may_list(spec, identity.as_deref())
                    && !self.node.registry.needs_peer(&spec.name)
            })
            .ok_or_else(|| {
                ErrorData::invalid_params(
                    format!("unknown tool `{}`", projection::tool_name(operation)),
                    None,
                )
            })?;
        let input = if projection::wraps_input(&spec) {
            // The tool's schema requires `input`: leaving it out is not a null input.
            match arguments.get("input") {
                Some(input) => input.clone(),
                None => {
                    return Ok(error_result(&CallError::invalid_input(
                        "`input` is required: this tool takes the operation's input as {\"input\": …}",
                        "/input",
                    )));
                }
            }
        } else {
            arguments
        };
        Ok(
            match self.dispatch(operation, input, identity, cancel).await {
                Ok(output)
                    if projection::is_object_schema(&spec.output_schema) && output.is_object() =>
                {
                    result(output, false)
                }
                Ok(output) => result(json!({"result": output}), false),
                Err(error) => error_result(&error),
            },
        )
    }

    async fn gateway_call(
        &self,
        name: &str,
        arguments: Value,
        identity: Option<Arc<Identity>>,
        cancel: CancellationToken,
    ) -> Result<CallToolResponse, ErrorData> {
        let outcome = match name {
            "search" => {
                self.dispatch(
                    crate::discovery::LIST,
                    json!({"q": arguments.get("q")})
                        .as_object()
                        .map(|o| {
                            let mut o = o.clone();
                            o.retain(|_, v| !v.is_null());
                            Value::Object(o)
                        })
                        .unwrap_or_default(),
                    identity,
                    cancel,
                )
                .await
            }
            "schema" => {
                self.dispatch(
                    crate::discovery::SCHEMA,
                    json!({"name": arguments.get("name")}),
                    identity,
                    cancel,
                )
                .await
            }
            "call" => {
                let operation = arguments
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let input = arguments.get("input").cloned().unwrap_or_else(|| json!({}));
                self.dispatch(&operation, input, identity, cancel)
                    .await
                    .map(|output| json!({"output": output}))
            }
            "batch" => {
                let calls = match arguments.get("calls") {
                    Some(Value::Array(calls)) => Ok(calls.clone()),
                    _ => Err(CallError::invalid_input(
                        "`calls` must be an array of {\"operation\", \"input\"}",
                        "/calls",
                    )),
                };
                match calls.and_then(|calls| parse_batch(calls).map_err(|refused| refused.error)) {
                    Ok(calls) => {
                        let answers = run_batch(&self.node, "mcp", calls, identity, &cancel).await;
                        Ok(json!({"answers": answers}))
                    }
                    Err(error) => Err(error),
                }
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{other}`"),
                    None,
                ));
            }
        };
        Ok(match outcome {
            Ok(value) if value.is_object() => result(value, false),
            Ok(value) => result(json!({"result": value}), false),
            Err(error) => result(json!({"error": error}), true),
        })
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> InitializeResult {
        let capabilities: ServerCapabilities =
            serde_json::from_value(json!({"tools": {"listChanged": false}}))
                .expect("valid capabilities");
        InitializeResult::new(capabilities)
            .with_server_info(Implementation::new("alknet", env!("CARGO_PKG_VERSION")))
            .with_instructions(if self.gateway_mode {
                "alknet operations: use `search` to find operations, `schema` to read one, `call` or `batch` to run them."
            } else {
                "alknet operations as tools: each tool is an operation (`/` in its name written as `.`)."
            })
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = if self.gateway_mode {
            gateway_tools()
        } else {
            let identity = caller(&self.node, &context);
            self.node
                .registry
                .operations()
                .iter()
                .map(|op| op.spec())
                .filter(|spec| {
                    spec.visibility == Visibility::External && spec.op_type != OpType::Subscription
                })
                .filter(|spec| !crate::discovery::is_builtin(&spec.name))
                .filter(|spec| !self.node.registry.needs_peer(&spec.name))
                .filter(|spec| access::may_list(spec, identity.as_deref()))
                .map(projection::tool)
                .collect()
        };
        Ok(ListToolsResult::with_all_items(
            tools.into_iter().map(tool).collect::<Result<_, _>>()?,
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let identity = caller(&self.node, &context);
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        // The client's `notifications/cancelled` (or a closed session) drops the handler.
        let cancel = context.ct.child_token();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let name = request.name.to_string();
        if self.gateway_mode {
            return self.gateway_call(&name, arguments, identity, cancel).await;
        }
        let operation = projection::operation_name(&name);
        self.call_operation(&operation, arguments, identity, cancel)
            .await
    }
}

/// Limits on MCP sessions: how many at once, and how long an idle one is kept.
#[derive(Debug, Clone)]
pub struct McpLimits {
    /// Sessions open at once (default 1024, about 52 KB each). A client that starts one more
    /// gets a JSON-RPC error (HTTP 503) until one closes or expires.
    pub max_sessions: usize,
    /// A session without requests for this long is closed (default 120 s).
    pub session_idle: std::time::Duration,
    /// A session that has not sent `initialize` this long after it was created is closed
    /// (default 10 s).
    pub init_timeout: std::time::Duration,
}

impl Default for McpLimits {
    fn default() -> Self {
        Self {
            max_sessions: 1024,
            session_idle: std::time::Duration::from_secs(120),
            init_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The `/mcp` routes for axum: rmcp's service behind the session cap.
pub(super) fn router(node: Arc<Node>, gateway_mode: bool, limits: &McpLimits) -> axum::Router {
    // The gateway checks `Host` (and `Origin`) for every route, MCP included, against the
    // node's own list: rmcp's loopback-only default would refuse names the node serves.
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(node.shutdown.child_token())
        .disable_allowed_hosts();
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(limits.session_idle);
    sessions.session_config.init_timeout = Some(limits.init_timeout);
    let sessions = Arc::new(sessions);
    let handler = McpServer { node, gateway_mode };
    let service =
        StreamableHttpService::new(move || Ok(handler.clone()), Arc::clone(&sessions), config);
    let cap = SessionCap {
        sessions,
        max: limits.max_sessions,
    };
    axum::Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn_with_state(cap, refuse_over_cap))
}

#[derive(Clone)]
struct SessionCap {
    sessions: Arc<LocalSessionManager>,
    max: usize,
}

/// Refuses a request that would start a session (a POST without `Mcp-Session-Id`) while the
/// cap is reached.
async fn refuse_over_cap(
    axum::extract::State(cap): axum::extract::State<SessionCap>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let starts_session = request.method() == axum::http::Method::POST
        && !request.headers().contains_key("mcp-session-id");
    if starts_session && cap.sessions.sessions.read().await.len() >= cap.max {
        let refusal = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {
                "code": -32000,
                "message": format!(
                    "this node has its {} MCP sessions open: try again when one closes",
                    cap.max
                ),
            },
        });
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(refusal),
        )
            .into_response();
    }
    next.run(request).await
}
