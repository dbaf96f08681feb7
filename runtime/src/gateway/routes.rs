//! The gateway's HTTP routes: each turns what it received into a dispatch request and the
//! answer into JSON or Server-Sent Events. Errors are JSON `call.error`s with the statuses of
//! design §7 (see the [module docs](super)).

use std::net::SocketAddr;
use std::sync::Arc;

use alknet_spec::{OperationName, ProtocolCode, Visibility};
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::auth::bearer_identity;
use super::batch::{BatchCall, parse_batch, run_batch};
use super::listener::Activity;
use super::sse::{self, END_ID};
use crate::error::CallError;
use crate::identity::Identity;
use crate::node::Node;
use crate::node::request::Request;
use crate::wire::too_many_json_values;

/// What every route shares: the node and the OpenAPI document made from its registry.
#[derive(Clone)]
pub(super) struct Gateway {
    pub node: Arc<Node>,
    pub openapi: Arc<super::OpenApiDocument>,
    /// One permit per open WebSocket session (`HttpLimits::max_websocket_sessions`).
    pub websocket_sessions: Arc<tokio::sync::Semaphore>,
    /// `HttpLimits::websocket_max_message`.
    pub websocket_max_message: usize,
}

/// Who is calling over HTTP, from `Authorization: Bearer <token>`.
struct Caller {
    identity: Option<Arc<Identity>>,
}

impl Caller {
    fn from_headers(gateway: &Gateway, headers: &HeaderMap) -> Caller {
        Caller {
            identity: bearer_identity(&gateway.node, headers),
        }
    }
}

/// A `call.error` as an HTTP response.
struct ErrorResponse {
    error: CallError,
    status: StatusCode,
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(&self.error)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl Gateway {
    /// The HTTP status of `error`, answered for `operation` to `caller`.
    fn status(&self, error: &CallError, operation: Option<&str>, caller: &Caller) -> StatusCode {
        let code = match error.code.parse::<ProtocolCode>() {
            Ok(ProtocolCode::Forbidden) if caller.identity.is_none() => 401,
            Ok(code) => alknet_spec::openapi::protocol_status(code.as_str()),
            Err(_) => operation
                .and_then(|op| OperationName::parse_wire(op).ok())
                .and_then(|name| self.node.registry.get(name.as_str()))
                .and_then(|op| {
                    op.spec()
                        .declared_error(&error.code)
                        .and_then(|e| e.http_status)
                })
                .unwrap_or(500),
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error(&self, error: CallError, operation: Option<&str>, caller: &Caller) -> Response {
        let status = self.status(&error, operation, caller);
        ErrorResponse { error, status }.into_response()
    }

    fn request(
        &self,
        operation: &str,
        input: Value,
        caller: &Caller,
        cancel: &CancellationToken,
    ) -> Request {
        Request::new(
            self.node.request_id("http"),
            operation,
            input,
            caller.identity.clone(),
            cancel.clone(),
        )
    }

    /// One query/mutation: 200 with the output, or the error with its status.
    async fn unary(&self, operation: &str, input: Value, caller: &Caller) -> Response {
        let cancel = CancellationToken::new();
        // Dropped with this future when the client goes away: the handler's signal fires.
        let _cancel_on_drop = cancel.clone().drop_guard();
        let request = self.request(operation, input, caller, &cancel);
        match self
            .node
            .unary(request)
            .await
            .and_then(|o| o.to_json_bytes())
        {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(error) => self.error(error, Some(operation), caller),
        }
    }

    /// A subscription as Server-Sent Events, or the error that stopped it from starting.
    async fn subscription(
        &self,
        operation: &str,
        input: Value,
        caller: &Caller,
        headers: &HeaderMap,
    ) -> Response {
        // A browser's EventSource reconnects when a stream closes, sending the last event id it
        // saw. After the end marker that is `end`: 204 tells it to stop. A number asks to resume
        // after that item: a resumable subscription goes on from the next one; any other
        // answers INVALID_INPUT (dispatch refuses it), never a replay.
        let mut resume_after = None;
        if let Some(last) = headers.get("last-event-id") {
            if last.as_bytes() == END_ID.as_bytes() {
                return StatusCode::NO_CONTENT.into_response();
            }
            match last
                .to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
            {
                Some(after) => resume_after = Some(after),
                None => {
                    let error = CallError::invalid_input(
                        format!(
                            "Last-Event-ID `{}` is neither an item number nor `end`",
                            last.to_str().unwrap_or("(not text)")
                        ),
                        "",
                    );
                    return ErrorResponse {
                        error,
                        status: StatusCode::BAD_REQUEST,
                    }
                    .into_response();
                }
            }
        }
        let cancel = CancellationToken::new();
        let mut request = self.request(operation, input, caller, &cancel);
        request.meta.resume_after = resume_after;
        match self.node.stream(request).await {
            Ok(items) => sse::response(
                items,
                cancel.drop_guard(),
                resume_after.map_or(1, |after| after.saturating_add(1)),
            ),
            Err(error) => self.error(error, Some(operation), caller),
        }
    }
}

fn invalid_json(problem: impl std::fmt::Display) -> ErrorResponse {
    ErrorResponse {
        error: CallError::invalid_input(format!("the body is not JSON: {problem}"), ""),
        status: StatusCode::BAD_REQUEST,
    }
}

fn missing_parameter(name: &str) -> Response {
    ErrorResponse {
        error: CallError::invalid_input(format!("missing the `{name}` query parameter"), ""),
        status: StatusCode::BAD_REQUEST,
    }
    .into_response()
}

/// Parses a request body, refusing (422) a large one holding more than `max_values` JSON
/// values before parsing it (`ProtocolConfig::max_request_values`).
fn parse_json<T: for<'de> Deserialize<'de>>(
    body: &Bytes,
    max_values: usize,
) -> Result<T, ErrorResponse> {
    if let Some(values) = too_many_json_values(body, max_values) {
        return Err(ErrorResponse {
            error: CallError::invalid_input(
                format!(
                    "the body holds about {values} JSON values, over this node's limit of \
                     {max_values}"
                ),
                "",
            ),
            status: StatusCode::UNPROCESSABLE_ENTITY,
        });
    }
    serde_json::from_slice(body).map_err(invalid_json)
}

fn parse_call(body: &Bytes, max_values: usize) -> Result<BatchCall, ErrorResponse> {
    let value: Value = parse_json(body, max_values)?;
    serde_json::from_value(value).map_err(|e| ErrorResponse {
        error: CallError::invalid_input(
            format!("expected {{\"operation\": \"svc/op\", \"input\": …}}: {e}"),
            "",
        ),
        status: StatusCode::UNPROCESSABLE_ENTITY,
    })
}

async fn call(State(gateway): State<Gateway>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = Caller::from_headers(&gateway, &headers);
    let request = match parse_call(&body, gateway.node.config.max_request_values) {
        Ok(request) => request,
        Err(response) => return response.into_response(),
    };
    gateway
        .unary(&request.operation, request.input, &caller)
        .await
}

async fn batch(State(gateway): State<Gateway>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = Caller::from_headers(&gateway, &headers);
    let calls: Vec<Value> = match parse_json(&body, gateway.node.config.max_request_values) {
        Ok(calls) => calls,
        Err(response) => return response.into_response(),
    };
    let calls = match parse_batch(calls) {
        Ok(calls) => calls,
        Err(refused) => {
            let status = if refused.too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return ErrorResponse {
                error: refused.error,
                status,
            }
            .into_response();
        }
    };
    let cancel = CancellationToken::new();
    // Dropped with this future when the client goes away: every call's signal fires.
    let _cancel_on_drop = cancel.clone().drop_guard();
    let answers = run_batch(&gateway.node, "http", calls, caller.identity, &cancel).await;
    Json(answers).into_response()
}

async fn subscribe_post(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = Caller::from_headers(&gateway, &headers);
    match parse_call(&body, gateway.node.config.max_request_values) {
        Ok(request) => {
            gateway
                .subscription(&request.operation, request.input, &caller, &headers)
                .await
        }
        Err(response) => response.into_response(),
    }
}

#[derive(Deserialize)]
struct SubscribeQuery {
    operation: Option<String>,
    input: Option<String>,
}

async fn subscribe_get(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Query(query): Query<SubscribeQuery>,
) -> Response {
    let caller = Caller::from_headers(&gateway, &headers);
    let Some(operation) = query.operation else {
        return missing_parameter("operation");
    };
    // An operation that does not exist is 404 whatever the input says: `input` is published
    // as a plain string (so generators pass it as it is), and a tool trying strings against an
    // unknown name must meet the same answer as for the name alone.
    let exists = gateway
        .node
        .registry
        .get(&operation)
        .is_some_and(|op| op.spec().visibility == Visibility::External);
    let input = match query.input.as_deref() {
        None | Some("") => json!({}),
        Some(_) if !exists => json!({}),
        Some(text) => {
            match parse_json::<Value>(
                &Bytes::copy_from_slice(text.as_bytes()),
                gateway.node.config.max_request_values,
            ) {
                Ok(input) => input,
                Err(mut response) => {
                    response.error.message = response
                        .error
                        .message
                        .replace("the body", "the `input` parameter");
                    return response.into_response();
                }
            }
        }
    };
    gateway
        .subscription(&operation, input, &caller, &headers)
        .await
}

async fn typed_route(
    State(gateway): State<Gateway>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = Caller::from_headers(&gateway, &headers);
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match parse_json(&body, gateway.node.config.max_request_values) {
            Ok(input) => input,
            Err(response) => return response.into_response(),
        }
    };
    let is_subscription = gateway.node.registry.get(&name).is_some_and(|op| {
        op.spec().visibility == Visibility::External && !op.spec().op_type.is_unary()
    });
    if is_subscription {
        return gateway.subscription(&name, input, &caller, &headers).await;
    }
    gateway.unary(&name, input, &caller).await
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

async fn search(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Response {
    let caller = Caller::from_headers(&gateway, &headers);
    let input = match query.q {
        Some(q) => json!({"q": q}),
        None => json!({}),
    };
    gateway.unary(crate::discovery::LIST, input, &caller).await
}

#[derive(Deserialize)]
struct SchemaQuery {
    name: Option<String>,
}

async fn schema(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Query(query): Query<SchemaQuery>,
) -> Response {
    let caller = Caller::from_headers(&gateway, &headers);
    let Some(name) = query.name else {
        return missing_parameter("name");
    };
    gateway
        .unary(crate::discovery::SCHEMA, json!({"name": name}), &caller)
        .await
}

async fn openapi_route(State(gateway): State<Gateway>) -> Response {
    openapi_answer(&gateway, super::OpenApiVersion::V3_1)
}

async fn openapi_3_0_route(State(gateway): State<Gateway>) -> Response {
    openapi_answer(&gateway, super::OpenApiVersion::V3_0)
}

async fn openapi_3_2_route(State(gateway): State<Gateway>) -> Response {
    openapi_answer(&gateway, super::OpenApiVersion::V3_2)
}

fn openapi_answer(gateway: &Gateway, version: super::OpenApiVersion) -> Response {
    let document = gateway.openapi.current(&gateway.node.registry, version);
    Json(document.as_ref()).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found(request: HttpRequest) -> Response {
    ErrorResponse {
        error: CallError::not_found(format!(
            "no route {} {}",
            request.method(),
            request.uri().path()
        )),
        status: StatusCode::NOT_FOUND,
    }
    .into_response()
}

/// Gives axum's own bodiless answers (405 with `Allow`, 413, 415, …) the JSON error body every
/// other answer has, keeping their status and headers.
async fn json_errors(request: HttpRequest, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "NOT_FOUND",
            "method not allowed on this route; see the Allow header".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "INVALID_INPUT",
            "the body is larger than the gateway accepts".to_owned(),
        ),
        other => ("INVALID_INPUT", format!("rejected: {other}")),
    };
    let body = serde_json::to_vec(&CallError::protocol(
        code.parse().expect("a protocol code"),
        message,
    ))
    .expect("errors serialize");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

async fn websocket(
    State(gateway): State<Gateway>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    activity: Option<Extension<Activity>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let caller = Caller::from_headers(&gateway, &headers);
    let Ok(session) = Arc::clone(&gateway.websocket_sessions).try_acquire_owned() else {
        return ErrorResponse {
            error: CallError::internal("too many WebSocket sessions are open; try again later")
                .with_retryable(true),
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
        .into_response();
    };
    let max = gateway
        .websocket_max_message
        .min(gateway.node.config.max_frame_len as usize);
    // The session keeps its connection busy: it is not idle, whatever HTTP sees.
    let busy = activity.map(|Extension(activity)| activity.enter());
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let _busy = busy;
            let _session = session;
            super::websocket::serve_session(gateway.node, caller.identity, remote, socket).await
        })
}

/// The gateway's routes (everything but MCP) over `gateway`, with JSON error bodies and the
/// body limit.
pub(super) fn routes(gateway: Gateway) -> Router {
    let body_limit = gateway.node.config.max_frame_len as usize;
    Router::new()
        .route("/call", post(call))
        .route("/batch", post(batch))
        .route("/subscribe", post(subscribe_post).get(subscribe_get))
        .route("/ops/{*name}", post(typed_route))
        .route("/search", get(search))
        .route("/schema", get(schema))
        .route("/openapi.json", get(openapi_route))
        .route("/openapi-3.0.json", get(openapi_3_0_route))
        .route("/openapi-3.2.json", get(openapi_3_2_route))
        .route("/alknet/call", get(websocket))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(json_errors))
        .with_state(gateway)
}
