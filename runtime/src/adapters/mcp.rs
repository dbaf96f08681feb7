//! `from_mcp` (feature `import-mcp`): a remote MCP server's tools, over streamable HTTP,
//! imported as operations.
//!
//! [`Registry::import_mcp`] connects (rmcp's client), lists the tools and registers one
//! operation per tool, named `<import>/<tool>` (a dotted tool name such as alknet's own
//! `demo.add` becomes `<import>/demo/add`; characters a name cannot hold become `_`). A tool
//! annotated `readOnlyHint` is a query, any other a mutation. The input schema is the tool's;
//! the output is the tool's `structuredContent` when it declares an `outputSchema`, else
//! `{"content": [...]}` with its content blocks as MCP sends them. A result with `isError` is
//! the declared domain error `TOOL_ERROR`, its content in `details`. The import calls as this
//! node (the bearer token of the import), and a lost session is opened again on the next call.

use std::sync::Arc;
use std::time::Duration;

use alknet_spec::{ErrorSpec, OpType, OperationSpec, Visibility};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::ImportError;
use crate::error::CallError;
use crate::registry::{Handler, Registry};

/// One import of a remote MCP server's tools.
#[derive(Clone)]
pub struct McpImport {
    /// The local name: imported tools are called `<name>/<tool>`. One name segment.
    pub name: String,
    /// The server's streamable HTTP endpoint (`http://host:port/mcp`). Plain HTTP only for now:
    /// an `https://` URL is refused (reach a TLS server through a local proxy).
    pub url: String,
    /// A bearer token this node presents (`Authorization: Bearer …`).
    pub bearer: Option<String>,
    /// Re-export the tools through this node's surfaces; otherwise internal.
    pub external: bool,
}

impl std::fmt::Debug for McpImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpImport")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("external", &self.external)
            .finish_non_exhaustive()
    }
}

/// The domain error a tool result with `isError` becomes.
pub const TOOL_ERROR: &str = "TOOL_ERROR";

/// How long connecting (the MCP initialize exchange) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Session = RunningService<RoleClient, ()>;

impl Registry {
    /// Imports the tools of the MCP server `import` names; returns their local names. Fails
    /// when the server cannot be reached or its tools cannot be listed, and when a local name
    /// is taken.
    pub async fn import_mcp(&mut self, import: McpImport) -> Result<Vec<String>, ImportError> {
        super::check_import_name(&import.name)?;
        if !import.url.starts_with("http://") {
            return Err(ImportError::Unreachable {
                name: import.name.clone(),
                remote: import.url.clone(),
                reason:
                    "only http:// MCP servers can be imported by this build (no TLS client yet)"
                        .to_owned(),
            });
        }
        let server = Arc::new(McpServer {
            import: import.clone(),
            session: Mutex::new(None),
        });
        let unreachable = |reason: String| ImportError::Unreachable {
            name: import.name.clone(),
            remote: import.url.clone(),
            reason,
        };
        let session = server.connect().await.map_err(unreachable)?;
        let tools = session
            .list_all_tools()
            .await
            .map_err(|e| ImportError::Discovery {
                name: import.name.clone(),
                reason: format!("tools/list: {e}"),
            })?;
        *server.session.lock().await = Some(Arc::new(session));
        let mut names = Vec::new();
        for tool in tools {
            let Some(spec) = tool_spec(&import, &tool) else {
                warn!(import = %import.name, tool = %tool.name, "tool skipped: its name cannot be an operation name");
                continue;
            };
            let handler = tool_handler(&server, &tool);
            names.push(self.register_imported(&import.name, spec, handler)?);
        }
        info!(import = %import.name, url = %import.url, tools = names.len(), "MCP tools imported");
        Ok(names)
    }
}

fn tool_spec(import: &McpImport, tool: &Tool) -> Option<OperationSpec> {
    let name = super::local_name(&import.name, &tool.name)?;
    let read_only = tool
        .annotations
        .as_ref()
        .and_then(|a| a.read_only_hint)
        .unwrap_or(false);
    let op_type = if read_only {
        OpType::Query
    } else {
        OpType::Mutation
    };
    let output_schema = match &tool.output_schema {
        Some(schema) => Value::Object((**schema).clone()),
        None => json!({
            "type": "object",
            "required": ["content"],
            "properties": {"content": {"type": "array", "description": "the tool's MCP content blocks"}}
        }),
    };
    let mut spec = OperationSpec::new(&name, op_type)
        .ok()?
        .with_input_schema(Value::Object((*tool.input_schema).clone()))
        .with_output_schema(output_schema)
        .with_error(ErrorSpec::new(
            TOOL_ERROR,
            "the tool reported an error (MCP `isError`); `details` holds its content",
        ));
    spec.description = tool
        .description
        .as_deref()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("The MCP tool `{}`.", tool.name));
    spec.visibility = if import.external {
        Visibility::External
    } else {
        Visibility::Internal
    };
    Some(spec)
}

fn tool_handler(server: &Arc<McpServer>, tool: &Tool) -> Handler {
    let server = Arc::clone(server);
    let tool_name: Arc<str> = tool.name.as_ref().into();
    let structured = tool.output_schema.is_some();
    Handler::unary(move |_ctx, input: Value| {
        let (server, tool_name) = (Arc::clone(&server), Arc::clone(&tool_name));
        async move {
            let arguments = match input {
                Value::Object(map) => map,
                Value::Null => serde_json::Map::new(),
                other => {
                    return Err(CallError::invalid_input(
                        format!("a tool's input is an object, not {other}"),
                        "",
                    ));
                }
            };
            let result = server.call(&tool_name, arguments).await?;
            tool_output(result, structured)
        }
    })
}

/// What a tool result becomes: its structured content, or its content blocks; `isError` a
/// `TOOL_ERROR`.
fn tool_output(result: CallToolResult, structured: bool) -> Result<Value, CallError> {
    let content = serde_json::to_value(&result.content).unwrap_or(Value::Null);
    if result.is_error == Some(true) {
        let message = result
            .content
            .iter()
            .find_map(|block| block.as_text().map(|t| t.text.clone()))
            .unwrap_or_else(|| "the tool reported an error".to_owned());
        let details = json!({"content": content, "structuredContent": result.structured_content});
        return Err(CallError::domain(TOOL_ERROR, message).with_details(details));
    }
    match (structured, result.structured_content) {
        (true, Some(value)) => Ok(value),
        (true, None) => Err(CallError::internal(
            "the tool declares an output schema but answered without structuredContent",
        )),
        (false, _) => Ok(json!({"content": content})),
    }
}

/// The session with one imported MCP server, opened again when lost.
struct McpServer {
    import: McpImport,
    session: Mutex<Option<Arc<Session>>>,
}

impl McpServer {
    async fn connect(&self) -> Result<Session, String> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.import.url.as_str());
        if let Some(token) = &self.import.bearer {
            config = config.auth_header(token.clone());
        }
        config.reinit_on_expired_session = true;
        let transport = StreamableHttpClientTransport::with_client(http_client()?, config);
        match tokio::time::timeout(CONNECT_TIMEOUT, ().serve(transport)).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
        }
    }

    async fn session(&self) -> Result<Arc<Session>, CallError> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref()
            && !session.is_transport_closed()
        {
            return Ok(Arc::clone(session));
        }
        let session = Arc::new(self.connect().await.map_err(|reason| {
            CallError::internal(format!(
                "imported MCP server `{}` at {} is unreachable: {reason}",
                self.import.name, self.import.url
            ))
            .with_retryable(true)
        })?);
        *current = Some(Arc::clone(&session));
        Ok(session)
    }

    async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Map<String, Value>,
    ) -> Result<CallToolResult, CallError> {
        let session = self.session().await?;
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        session
            .call_tool(params)
            .await
            .map_err(|error| match error {
                ServiceError::McpError(error) if error.code.0 == -32602 => {
                    CallError::invalid_input(error.message.to_string(), "")
                }
                ServiceError::McpError(error) => CallError::internal(format!(
                    "MCP server `{}`: {} ({})",
                    self.import.name, error.message, error.code.0
                )),
                other => CallError::internal(format!(
                    "MCP server `{}` at {}: {other}",
                    self.import.name, self.import.url
                ))
                .with_retryable(true),
            })
    }
}

/// A plain-HTTP client: this build has no TLS for MCP imports (see [`McpImport::url`]).
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}
