//! Forwarding calls of imported OpenAPI operations: the input becomes a request (parameters
//! written in their OpenAPI style, the body as JSON, the import's credentials), the answer an
//! output, an `HTTP_<status>` error, or a stream of events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use alknet_spec::{OpType, OperationSpec};
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::document::Document;
use super::operation::{Answer, BodyMode, Location, Route, STREAM_ERROR, Style};
use super::sse::{Event, Parser};
use super::{ApiKeyLocation, Credentials, OpenApiImport};
use crate::adapters::OutputCheck;
use crate::adapters::http_client::{HttpClient, MAX_BODY, read_body};
use crate::error::CallError;
use crate::registry::Handler;

/// How long a call may take when the caller set no deadline (and how long a subscription's
/// answer head may take).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything outside the unreserved characters of RFC 3986 is escaped in a path segment or
/// a query component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One imported service: where it is and how this node authenticates to it.
pub(super) struct Service {
    import: String,
    base: String,
    credentials: Credentials,
    client: HttpClient,
}

/// The service's base URL (no trailing slash): the import's, or the document's first server.
pub(super) fn base_url(import: &OpenApiImport, document: &Document) -> Result<String, String> {
    if let Some(base) = &import.base_url {
        return absolute(base).map(|b| b.trim_end_matches('/').to_owned());
    }
    let server = document
        .root
        .pointer("/servers/0")
        .and_then(|server| {
            let mut url = server.get("url")?.as_str()?.to_owned();
            // Server variables take their defaults.
            if let Some(variables) = server.get("variables").and_then(Value::as_object) {
                for (name, variable) in variables {
                    if let Some(default) = variable.get("default").and_then(Value::as_str) {
                        url = url.replace(&format!("{{{name}}}"), default);
                    }
                }
            }
            Some(url)
        })
        .unwrap_or_else(|| "/".to_owned());
    if server.starts_with("http://") || server.starts_with("https://") {
        return absolute(&server).map(|b| b.trim_end_matches('/').to_owned());
    }
    let Some(document_url) = &document.url else {
        return Err(format!(
            "the document is a file and its server `{server}` is not an absolute URL: give the import a `base_url`"
        ));
    };
    let uri: hyper::Uri = document_url.parse().map_err(|e| format!("{e}"))?;
    let origin = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    );
    let base = if server.starts_with('/') {
        format!("{origin}{server}")
    } else {
        // Relative to the document's directory.
        let directory = uri.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{origin}{directory}/{}", server.trim_start_matches("./"))
    };
    Ok(base.trim_end_matches('/').to_owned())
}

fn absolute(url: &str) -> Result<&str, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("base URL `{url}`: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(url),
        _ => Err(format!(
            "base URL `{url}` is not an http:// or https:// URL"
        )),
    }
}

impl Service {
    pub(super) fn new(import: &OpenApiImport, base: String, client: HttpClient) -> Self {
        Self {
            import: import.name.clone(),
            base,
            credentials: import.credentials.clone(),
            client,
        }
    }

    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// The request for one call.
    fn request(&self, route: &Route, input: &Value) -> Result<Request<Full<Bytes>>, CallError> {
        let empty = serde_json::Map::new();
        let fields = match (&route.body, input) {
            (BodyMode::Whole, _) => &empty,
            (_, Value::Object(map)) => map,
            (_, Value::Null) => &empty,
            (_, other) => {
                return Err(CallError::invalid_input(
                    format!("the input is an object, not {other}"),
                    "",
                ));
            }
        };
        let mut path = String::new();
        for (i, segment) in route.path.split('/').enumerate() {
            if i > 0 {
                path.push('/');
            }
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let value = fields.get(name).filter(|v| !v.is_null()).ok_or_else(|| {
                        CallError::invalid_input(
                            format!("the path parameter `{name}` is missing"),
                            format!("/{name}"),
                        )
                    })?;
                    let param = route.params.iter().find(|p| p.name == name);
                    let explode = param.is_some_and(|p| p.explode);
                    if param.is_some_and(|p| p.json_text) {
                        let text = Value::String(value.to_string());
                        path.push_str(&joined(&text, ",", false, true));
                    } else {
                        path.push_str(&joined(value, ",", explode, true));
                    }
                }
                None => path.push_str(segment),
            }
        }
        let mut query = Vec::new();
        for param in route
            .params
            .iter()
            .filter(|p| p.location == Location::Query)
        {
            if let Some(value) = fields.get(&param.name).filter(|v| !v.is_null()) {
                if param.json_text {
                    let text = Value::String(value.to_string());
                    query_pairs(&param.name, &text, param.style, param.explode, &mut query);
                } else {
                    query_pairs(&param.name, value, param.style, param.explode, &mut query);
                }
            }
        }
        if let Some(key) = &self.credentials.api_key
            && key.location == ApiKeyLocation::Query
        {
            query.push(format!(
                "{}={}",
                utf8_percent_encode(&key.name, COMPONENT),
                utf8_percent_encode(&key.value, COMPONENT)
            ));
        }
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let accept = if route.answer == Answer::EventStream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut builder = Request::builder()
            .method(route.method.clone())
            .uri(&url)
            .header(ACCEPT, accept);
        for param in route
            .params
            .iter()
            .filter(|p| p.location == Location::Header)
        {
            if let Some(value) = fields.get(&param.name).filter(|v| !v.is_null()) {
                let text = if param.json_text {
                    value.to_string()
                } else {
                    joined(value, ",", param.explode, false)
                };
                let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(param.name.as_str()),
                    HeaderValue::try_from(text.as_str()),
                ) else {
                    return Err(CallError::invalid_input(
                        format!("`{}` cannot be sent as an HTTP header", param.name),
                        format!("/{}", keywords_escape(&param.name)),
                    ));
                };
                builder = builder.header(name, value);
            }
        }
        if let Some(token) = &self.credentials.bearer {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(key) = &self.credentials.api_key
            && key.location == ApiKeyLocation::Header
        {
            builder = builder.header(key.name.as_str(), key.value.as_str());
        }
        let body = match route.body {
            BodyMode::None => None,
            BodyMode::Whole => (!input.is_null()).then_some(input),
            BodyMode::Field => fields.get("body"),
        };
        let body = match body {
            Some(body) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(body).map_err(|e| {
                    CallError::internal(format!("serializing the body: {e}"))
                })?))
            }
            None => Full::new(Bytes::new()),
        };
        builder
            .body(body)
            .map_err(|e| CallError::invalid_input(format!("the request cannot be made: {e}"), ""))
    }

    /// A transport failure: the service is away or broke the exchange.
    fn unreachable(&self, route: &Route, reason: &str) -> CallError {
        CallError::internal(format!(
            "imported service `{}` ({} {}{}): {reason}",
            self.import, route.method, self.base, route.path
        ))
        .with_retryable(true)
    }

    /// What a non-success answer becomes: the declared `HTTP_<status>`, else an internal
    /// error (retryable when the status says so).
    fn failure(&self, route: &Route, status: StatusCode, body: &[u8]) -> CallError {
        let details = parse_body(body);
        let code = status.as_u16();
        let message = format!(
            "{} {} answered {status}{}",
            route.method,
            route.path,
            summary(&details)
        );
        if route.declared.contains(&code) {
            return CallError::domain(format!("HTTP_{code}"), message).with_details(details);
        }
        if route.declared_classes.contains(&(code / 100)) {
            return CallError::domain(format!("HTTP_{}XX", code / 100), message)
                .with_details(details);
        }
        CallError::internal(format!("imported service `{}`: {message}", self.import))
            .with_details(json!({"status": code, "body": details}))
            .with_retryable(matches!(code, 408 | 429 | 502 | 503 | 504))
    }

    /// A unary call: one request, one answer.
    async fn call(&self, route: &Route, input: Value) -> Result<Value, CallError> {
        let request = self.request(route, &input)?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|reason| self.unreachable(route, &reason))?;
        let status = response.status();
        let body = read_body(response.into_body(), MAX_BODY)
            .await
            .map_err(|reason| self.unreachable(route, &reason))?;
        if !status.is_success() {
            return Err(self.failure(route, status, &body));
        }
        match route.answer {
            Answer::Empty => Ok(Value::Null),
            Answer::Text => Ok(Value::String(String::from_utf8_lossy(&body).into_owned())),
            Answer::Json | Answer::EventStream if body.is_empty() => Ok(Value::Null),
            Answer::Json | Answer::EventStream => serde_json::from_slice(&body).map_err(|e| {
                CallError::internal(format!(
                    "imported service `{}`: {} {} answered something that is not JSON: {e}",
                    self.import, route.method, route.path
                ))
            }),
        }
    }

    /// A subscription: the answer's events, once its head has come. A resumed subscription
    /// asks the service to go on after `resume_after` (`Last-Event-ID`).
    async fn subscribe(
        &self,
        route: &Route,
        input: Value,
        resume_after: Option<u64>,
    ) -> Result<Incoming, CallError> {
        let mut request = self.request(route, &input)?;
        if let Some(after) = resume_after {
            request
                .headers_mut()
                .insert("last-event-id", HeaderValue::from(after));
        }
        let response = self
            .client
            .send(request)
            .await
            .map_err(|reason| self.unreachable(route, &reason))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_body(response.into_body(), MAX_BODY)
                .await
                .map_err(|reason| self.unreachable(route, &reason))?;
            return Err(self.failure(route, status, &body));
        }
        let media = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !media.starts_with("text/event-stream") {
            return Err(CallError::internal(format!(
                "imported service `{}`: {} {} answered `{media}`, not text/event-stream",
                self.import, route.method, route.path
            )));
        }
        Ok(response.into_body())
    }
}

/// One imported operation: the service, how to reach the operation, what its answers must be.
struct Forwarding {
    service: Arc<Service>,
    route: Route,
    outputs: OutputCheck,
}

/// The forwarding handler of one imported operation.
pub(super) fn handler(
    service: &Arc<Service>,
    spec: &OperationSpec,
    route: Route,
) -> Result<Handler, String> {
    let op = Arc::new(Forwarding {
        service: Arc::clone(service),
        route,
        outputs: OutputCheck::new(spec)?,
    });
    Ok(match spec.op_type {
        OpType::Subscription => Handler::subscription(move |ctx, input| {
            let op = Arc::clone(&op);
            async move {
                let head = ctx.remaining().unwrap_or(DEFAULT_TIMEOUT);
                let subscribed = op.service.subscribe(&op.route, input, ctx.resume_after());
                let body = tokio::time::timeout(head, subscribed)
                    .await
                    .map_err(|_| CallError::timeout(format!("no answer within {head:?}")))??;
                Ok(events(body, op))
            }
        }),
        _ => Handler::unary(move |ctx, input| {
            let op = Arc::clone(&op);
            async move {
                let limit = ctx.remaining().unwrap_or(DEFAULT_TIMEOUT);
                let output = tokio::time::timeout(limit, op.service.call(&op.route, input))
                    .await
                    .map_err(|_| CallError::timeout(format!("no answer within {limit:?}")))??;
                op.outputs.check(output)
            }
        }),
    })
}

/// The items of an event stream: each event's data (JSON, or the text when it is not JSON);
/// `event: completed` or the end of the body ends it, `event: error` ends it with
/// [`STREAM_ERROR`].
fn events(
    body: Incoming,
    op: Arc<Forwarding>,
) -> impl futures_util::Stream<Item = Result<Value, CallError>> + Send + 'static {
    struct State {
        body: Option<Incoming>,
        parser: Parser,
        ready: VecDeque<Event>,
        op: Arc<Forwarding>,
    }
    let state = State {
        body: Some(body),
        parser: Parser::new(MAX_BODY),
        ready: VecDeque::new(),
        op,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop_front() {
                let data = parse_body(event.data.as_bytes());
                match event.kind.as_str() {
                    "completed" => return None,
                    "error" => {
                        state.body = None;
                        state.ready.clear();
                        let route = &state.op.route;
                        let error = CallError::domain(
                            STREAM_ERROR,
                            format!(
                                "{} {} ended with an error event{}",
                                route.method,
                                route.path,
                                summary(&data)
                            ),
                        )
                        .with_details(data);
                        return Some((Err(error), state));
                    }
                    _ => {
                        let item = state.op.outputs.check(data);
                        return Some((item, state));
                    }
                }
            }
            let body = state.body.as_mut()?;
            let cut = match body.frame().await {
                None => return None,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let mut ready = Vec::new();
                        let parsed = state.parser.push(&data, &mut ready);
                        state.ready.extend(ready);
                        match parsed {
                            Ok(()) => continue,
                            Err(reason) => reason,
                        }
                    }
                    Err(_) => continue,
                },
                Some(Err(error)) => format!("the stream was cut: {error}"),
            };
            state.body = None;
            state.ready.clear();
            let error = state.op.service.unreachable(&state.op.route, &cut);
            return Some((Err(error), state));
        }
    })
}

/// A body as JSON when it is JSON, else as text.
fn parse_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// `: <message>` from an error body's usual fields (`message`, `detail`, `error`), or nothing.
fn summary(details: &Value) -> String {
    let text = match details {
        Value::String(text) => Some(text.as_str()),
        Value::Object(map) => ["message", "detail", "error", "title"]
            .iter()
            .find_map(|key| map.get(*key).and_then(Value::as_str)),
        _ => None,
    };
    match text {
        Some(text) if !text.is_empty() => {
            let short: String = text.chars().take(200).collect();
            format!(": {short}")
        }
        _ => String::new(),
    }
}

fn keywords_escape(name: &str) -> String {
    alknet_spec::keywords::escape(name)
}

/// A scalar as parameter text; `None` for arrays and objects.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// A value in `simple` style (path, header): arrays and objects comma-joined (objects as
/// `k=v` pairs when exploded, else `k,v`); nested values as JSON. Escaped for a path segment
/// when `escape`.
fn joined(value: &Value, separator: &str, explode: bool, escape: bool) -> String {
    let text = |value: &Value| {
        let raw = scalar(value).unwrap_or_else(|| value.to_string());
        if escape {
            utf8_percent_encode(&raw, COMPONENT).to_string()
        } else {
            raw
        }
    };
    match value {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(separator),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let k = text(&Value::String(k.clone()));
                if explode {
                    format!("{k}={}", text(v))
                } else {
                    format!("{k}{separator}{}", text(v))
                }
            })
            .collect::<Vec<_>>()
            .join(separator),
        other => text(other),
    }
}

/// The query pairs of one parameter, in its style.
fn query_pairs(name: &str, value: &Value, style: Style, explode: bool, out: &mut Vec<String>) {
    let enc = |s: &str| utf8_percent_encode(s, COMPONENT).to_string();
    let text = |v: &Value| enc(&scalar(v).unwrap_or_else(|| v.to_string()));
    let key = enc(name);
    match value {
        Value::Array(items) => match style {
            Style::Plain if explode => {
                out.extend(items.iter().map(|v| format!("{key}={}", text(v))))
            }
            Style::SpaceDelimited => out.push(format!(
                "{key}={}",
                items.iter().map(text).collect::<Vec<_>>().join("%20")
            )),
            Style::PipeDelimited => out.push(format!(
                "{key}={}",
                items.iter().map(text).collect::<Vec<_>>().join("|")
            )),
            _ => out.push(format!(
                "{key}={}",
                items.iter().map(text).collect::<Vec<_>>().join(",")
            )),
        },
        Value::Object(map) => match style {
            Style::DeepObject => out.extend(
                map.iter()
                    .map(|(k, v)| format!("{key}%5B{}%5D={}", enc(k), text(v))),
            ),
            _ if explode => out.extend(map.iter().map(|(k, v)| format!("{}={}", enc(k), text(v)))),
            _ => out.push(format!(
                "{key}={}",
                map.iter()
                    .map(|(k, v)| format!("{},{}", enc(k), text(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        },
        other => out.push(format!("{key}={}", text(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_written_in_their_style() {
        let mut out = Vec::new();
        query_pairs("q", &json!("a b&c"), Style::Plain, true, &mut out);
        query_pairs("ids", &json!([1, 2]), Style::Plain, true, &mut out);
        query_pairs("tags", &json!(["x", "y"]), Style::Plain, false, &mut out);
        query_pairs(
            "f",
            &json!({"a": 1, "b": "z"}),
            Style::DeepObject,
            true,
            &mut out,
        );
        query_pairs(
            "p",
            &json!(["x", "y"]),
            Style::PipeDelimited,
            false,
            &mut out,
        );
        assert_eq!(
            out,
            [
                "q=a%20b%26c",
                "ids=1",
                "ids=2",
                "tags=x,y",
                "f%5Ba%5D=1",
                "f%5Bb%5D=z",
                "p=x|y"
            ]
        );
        assert_eq!(joined(&json!("a/b c"), ",", false, true), "a%2Fb%20c");
        assert_eq!(joined(&json!([1, 2]), ",", false, true), "1,2");
        assert_eq!(joined(&json!({"a": 1}), ",", true, false), "a=1");
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            summary(&json!({"detail": "Item not found"})),
            ": Item not found"
        );
        assert_eq!(summary(&json!([1])), "");
        assert_eq!(parse_body(b"plain"), json!("plain"));
    }
}
