//! The HTTP gateway (design §7): axum routes, WebSocket sessions and MCP over the same node —
//! registry, identities, dispatch and shutdown — as the QUIC transport.
//!
//! | route | |
//! |---|---|
//! | `POST /call` `{"operation", "input"}` | one query/mutation |
//! | `POST /batch` `[{"operation", "input"}, …]` | answers in order, `{"output"}` or `{"error"}` each |
//! | `POST /subscribe`, `GET /subscribe?operation=…&input=…` | Server-Sent Events |
//! | `POST /ops/{name}` | typed route: body = input; SSE for subscriptions |
//! | `GET /search?q=`, `GET /schema?name=` | discovery |
//! | `GET /openapi.json`, `/openapi-3.0.json`, `/openapi-3.2.json` | the OpenAPI 3.1 projection of the registry; its 3.0.3 and 3.2 variants |
//! | `GET /alknet/call` | WebSocket: the call protocol, one binary message per envelope |
//! | `POST /mcp` | MCP, streamable HTTP (feature `mcp`) |
//! | `GET /healthz` | `ok` |
//!
//! Every error answer is a JSON `call.error`, with the status of design §7: `NOT_FOUND` 404,
//! `FORBIDDEN` 401 without an identity and 403 with one, `INVALID_INPUT` 422 (400 for a body that
//! is not JSON), `INVALID_OPERATION_TYPE` 400, `TIMEOUT` 504, `INTERNAL` 500, a declared domain
//! code its `http_status` (else 500); 405 (with `Allow`), 413 and unknown routes are JSON too.
//! A client that goes away drops the handler: that is the cancellation.
//!
//! One module per part: `routes` (the HTTP routes), [`websocket`] (call-protocol sessions and
//! the [`WebSocketClient`](websocket::WebSocketClient)), `mcp` (the MCP server), and what they
//! share: `auth` (bearer tokens) and `batch` (one batch behaviour for HTTP and MCP).

mod auth;
mod batch;
mod body;
mod listener;
#[cfg(feature = "mcp")]
mod mcp;
mod origin;
mod routes;
mod sse;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use alknet_spec::openapi::{OpenApiInfo, openapi_document};
use axum::Router;

pub use batch::MAX_BATCH;
pub use listener::HttpLimits;
#[cfg(feature = "mcp")]
pub use mcp::McpLimits;

use crate::node::Node;
use crate::quic::{EndpointError, Server};
use routes::Gateway;

/// How the gateway serves.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// MCP at `/mcp` exposes four fixed tools (`search`, `schema`, `call`, `batch`) instead of
    /// one tool per operation: for registries too large to list.
    pub mcp_gateway_mode: bool,
    /// The URL callers reach the gateway at (behind a proxy, a name), published as the OpenAPI
    /// document's `servers`. Default: the listening address, or `/` (the document's own host)
    /// when listening on every interface.
    pub public_url: Option<String>,
    /// Origins (`https://app.example`) whose web pages may call the gateway: their CORS
    /// preflights are answered, and their WebSocket sessions and MCP requests accepted. Empty
    /// (the default): no cross-origin access, and a browser request with any `Origin` header
    /// is refused on `/alknet/call` and `/mcp`. Requests without `Origin` (not a browser) are
    /// unaffected.
    pub cors_origins: Vec<String>,
    /// Host names the gateway answers to besides IP addresses, `localhost` and the host of
    /// `public_url`. A request whose `Host` names anything else is refused (403): a page on a
    /// domain its attacker points at this node's address (DNS rebinding) gets nothing.
    pub allowed_hosts: Vec<String>,
    /// Limits on connections: how many, and how long each may take for a request head.
    pub limits: HttpLimits,
    /// Limits on MCP sessions (feature `mcp`).
    #[cfg(feature = "mcp")]
    pub mcp_limits: McpLimits,
}

impl Server {
    /// Serves the HTTP gateway (design §7) on `addr` (port 0 picks a free port) with this
    /// server's registry, identities, deadlines and shutdown; returns the bound address.
    pub async fn serve_http(&self, addr: SocketAddr) -> Result<SocketAddr, EndpointError> {
        self.serve_http_with(addr, HttpOptions::default()).await
    }

    /// [`Server::serve_http`] with options.
    pub async fn serve_http_with(
        &self,
        addr: SocketAddr,
        options: HttpOptions,
    ) -> Result<SocketAddr, EndpointError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EndpointError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| EndpointError::Bind { addr, source })?;
        let node = Arc::clone(self.node());
        let server_url = options.public_url.clone().unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                "/".to_owned()
            } else {
                format!("http://{bound}")
            }
        });
        let router = router(Arc::clone(&node), &options, &server_url);
        tokio::spawn(listener::serve(
            listener,
            router,
            options.limits.clone(),
            node.shutdown.clone(),
        ));
        Ok(bound)
    }
}

/// Which OpenAPI document a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenApiVersion {
    /// `/openapi.json`: OpenAPI 3.1, the full schemas.
    V3_1,
    /// `/openapi-3.0.json`: the 3.0.3 variant for tools that read only 3.0.
    V3_0,
    /// `/openapi-3.2.json`: the 3.2 variant, event streams described per event.
    V3_2,
}

/// `/openapi.json`, `/openapi-3.0.json` and `/openapi-3.2.json`: built from the registry, and
/// again when its live operations change.
pub(crate) struct OpenApiDocument {
    info: OpenApiInfo,
    /// The documents and the registry generation they were built for; the variants are made
    /// when first asked for.
    current: std::sync::Mutex<Option<BuiltDocuments>>,
}

struct BuiltDocuments {
    generation: u64,
    v3_1: Arc<serde_json::Value>,
    v3_0: Option<Arc<serde_json::Value>>,
    v3_2: Option<Arc<serde_json::Value>>,
}

impl OpenApiDocument {
    /// The document for the registry as it is now.
    pub(crate) fn current(
        &self,
        registry: &crate::Registry,
        version: OpenApiVersion,
    ) -> Arc<serde_json::Value> {
        let generation = registry.generation();
        let mut current = self.current.lock().expect("not poisoned");
        let built = match current.as_mut() {
            Some(built) if built.generation == generation => built,
            _ => {
                // HTTP callers have no connection to be called back on: operations that need
                // one are left out of the document.
                let document = openapi_document(&registry.spec_bundle_without_peer(), &self.info);
                current.insert(BuiltDocuments {
                    generation,
                    v3_1: Arc::new(document),
                    v3_0: None,
                    v3_2: None,
                })
            }
        };
        match version {
            OpenApiVersion::V3_1 => Arc::clone(&built.v3_1),
            OpenApiVersion::V3_0 => Arc::clone(built.v3_0.get_or_insert_with(|| {
                Arc::new(alknet_spec::openapi::v3_0::downgrade(&built.v3_1))
            })),
            OpenApiVersion::V3_2 => {
                Arc::clone(built.v3_2.get_or_insert_with(|| {
                    Arc::new(alknet_spec::openapi::v3_2::upgrade(&built.v3_1))
                }))
            }
        }
    }
}

/// The gateway's routes over `node`; with the `mcp` feature, `/mcp` too.
fn router(node: Arc<Node>, options: &HttpOptions, server_url: &str) -> Router {
    let info = OpenApiInfo {
        title: "alknet node".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "The operations of this node, over the alknet HTTP gateway.".into(),
        servers: vec![server_url.to_owned()],
    };
    let openapi = Arc::new(OpenApiDocument {
        info,
        current: std::sync::Mutex::new(None),
    });
    let origins = origin::Origins::new(&options.cors_origins);
    let policy = origin::Policy {
        origins: origins.clone(),
        hosts: origin::Hosts::new(&options.allowed_hosts, options.public_url.as_deref()),
    };
    let routes = routes::routes(Gateway {
        node: Arc::clone(&node),
        openapi,
        websocket_sessions: Arc::new(tokio::sync::Semaphore::new(
            options.limits.max_websocket_sessions.max(1),
        )),
        websocket_max_message: options.limits.websocket_max_message,
    });
    // MCP answers in its own JSON-RPC terms, so it is added after the JSON-error layer.
    #[cfg(feature = "mcp")]
    let routes = routes.nest(
        "/mcp",
        mcp::router(
            Arc::clone(&node),
            options.mcp_gateway_mode,
            &options.mcp_limits,
        ),
    );
    #[cfg(not(feature = "mcp"))]
    let _ = options;
    // Browsers: the WebSocket and MCP accept only listed origins; CORS answers their preflights.
    routes
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&node),
            body::within_budget,
        ))
        .layer(axum::middleware::from_fn_with_state(policy, origin::guard))
        .layer(origins.cors())
}
