//! Which web pages may use the gateway (design §7, browsers): CORS for the listed origins, an
//! `Origin` check on the routes a page could otherwise reach without a preflight — the
//! WebSocket `/alknet/call` (browsers do not preflight upgrades) and `/mcp` — JSON-only
//! bodies on the routes that run operations, so no "simple" cross-site request (a form, a
//! `text/plain` fetch) can run one, and a `Host` check on every route, so a page on a domain
//! pointed at the node (DNS rebinding) cannot reach it as if it were same-origin.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::CallError;

/// The origins allowed to call from a browser, as `--cors` lists them.
#[derive(Clone, Default)]
pub(super) struct Origins {
    allowed: Arc<Vec<HeaderValue>>,
}

impl Origins {
    /// The list, without a trailing `/` (browsers send `https://app.example`).
    pub fn new(origins: &[String]) -> Self {
        let allowed = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        Self {
            allowed: Arc::new(allowed),
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.allowed.iter().any(|allowed| allowed == origin)
    }

    /// Preflights and response headers for the listed origins; nothing for the others (their
    /// browsers then refuse to let the page read anything).
    pub fn cors(&self) -> CorsLayer {
        let origins = self.clone();
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                origins.allows(origin)
            }))
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                header::HeaderName::from_static("last-event-id"),
                header::HeaderName::from_static("mcp-session-id"),
                header::HeaderName::from_static("mcp-protocol-version"),
            ])
            .expose_headers([header::HeaderName::from_static("mcp-session-id")])
            .max_age(std::time::Duration::from_secs(600))
    }
}

/// The host names the gateway answers to, besides IP addresses and `localhost`.
#[derive(Clone, Default)]
pub(super) struct Hosts {
    names: Arc<Vec<String>>,
}

impl Hosts {
    /// `names` (host names, any port) and the host of `public_url`, if it has one.
    pub fn new(names: &[String], public_url: Option<&str>) -> Self {
        let from_url = public_url
            .and_then(|url| url.split_once("://"))
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
            .map(|authority| host_of(authority).to_owned());
        let names = names
            .iter()
            .map(|name| host_of(name).to_owned())
            .chain(from_url)
            .filter(|name| !name.is_empty())
            .map(|name| name.to_ascii_lowercase())
            .collect();
        Self {
            names: Arc::new(names),
        }
    }

    /// Whether a request naming `authority` (`Host`, or the URI's authority) is for this node.
    /// IP addresses always are: DNS rebinding needs a name.
    fn allows(&self, authority: &str) -> bool {
        let host = host_of(authority);
        if host.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host == "localhost" || host.ends_with(".localhost") || self.names.contains(&host)
    }
}

/// The host of an authority (`name:port`, `[::1]:port`, `name`), without brackets or port.
fn host_of(authority: &str) -> &str {
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match authority.rsplit_once(':') {
        // One colon: `host:port`. More: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => authority,
    }
}

/// What the guard checks against: the CORS origins and the host names.
#[derive(Clone)]
pub(super) struct Policy {
    pub origins: Origins,
    pub hosts: Hosts,
}

/// Whether `content_type` is JSON: `application/json` or `application/<something>+json`, with
/// parameters or not.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Routes that run operations from a POST body.
fn runs_operations(path: &str) -> bool {
    matches!(path, "/call" | "/batch" | "/subscribe") || path.starts_with("/ops/")
}

/// Refuses what a page could make a browser send without asking: a WebSocket upgrade or an MCP
/// request from an unlisted origin, and a body that is not JSON on a route that runs
/// operations (415; a missing `Content-Type` is refused when the request comes from a page,
/// that is, carries an `Origin`).
pub(super) async fn guard(
    State(Policy { origins, hosts }): State<Policy>,
    request: Request,
    next: Next,
) -> Response {
    // HTTP/1.1 clients must send `Host`; without one (HTTP/1.0 tools) nothing names a host to
    // check. A browser always sends it.
    let authority = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if let Some(authority) = authority
        && !hosts.allows(authority)
    {
        let error = CallError::forbidden(format!(
            "this node does not serve the host `{}`: list it with --allow-host (a name pointed \
             at this node by someone else is how DNS rebinding reaches it)",
            host_of(authority)
        ));
        return (StatusCode::FORBIDDEN, axum::Json(error)).into_response();
    }
    let path = request.uri().path();
    if request.method() == Method::POST && runs_operations(path) {
        let content_type = request.headers().get(header::CONTENT_TYPE);
        let from_a_page = request.headers().contains_key(header::ORIGIN);
        let refused = match content_type {
            Some(content_type) => !is_json(content_type),
            None => from_a_page,
        };
        if refused {
            let error = CallError::invalid_input(
                format!(
                    "send the body as application/json (got {})",
                    content_type
                        .and_then(|c| c.to_str().ok())
                        .unwrap_or("no Content-Type")
                ),
                "",
            );
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, axum::Json(error)).into_response();
        }
    }
    let guarded = path == "/alknet/call" || path == "/mcp" || path.starts_with("/mcp/");
    if guarded
        && request.method() != Method::OPTIONS
        && let Some(origin) = request.headers().get(header::ORIGIN)
        && !origins.allows(origin)
    {
        let error = CallError::forbidden(format!(
            "origin {} is not allowed: serve with --cors {0} to let its pages in",
            origin.to_str().unwrap_or("(not text)")
        ));
        return (StatusCode::FORBIDDEN, axum::Json(error)).into_response();
    }
    next.run(request).await
}
