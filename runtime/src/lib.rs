//! # alknet: typed remote operations over QUIC
//!
//! The runtime of alknet. An operation is described by an [`OperationSpec`](spec::OperationSpec) (from
//! [`alknet_spec`]) and served by a [`Handler`]; a [`Registry`] holds them; a [`Server`] accepts
//! QUIC connections speaking the alknet call protocol (ALPN `alknet/call`); a [`Client`] dials
//! one. Both ends get the same symmetric [`Connection`]: either side can call operations the
//! other registered.
//!
//! ```no_run
//! use alknet::{Client, ClientOptions, Handler, Registry, Server, ServerOptions, ServerVerification};
//! use alknet::spec::{OpType, OperationSpec};
//! use serde_json::{Value, json};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let mut registry = Registry::new();
//! registry.register_handler(
//!     OperationSpec::new("math/double", OpType::Query)?
//!         .with_input_schema(json!({"type": "number"})),
//!     Handler::unary(|_ctx, input: Value| async move {
//!         Ok(json!(input.as_f64().unwrap_or_default() * 2.0))
//!     }),
//! )?;
//! let server = Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse()?))?;
//!
//! let client = Client::new(ClientOptions::new(ServerVerification::pin(server.fingerprint())))?;
//! let conn = client.connect(server.local_addr(), "localhost").await?;
//! assert_eq!(conn.call_json("math/double", json!(21)).await?, json!(42.0));
//! # Ok(()) }
//! ```
//!
//! ## Modules
//! - [`wire`]: envelopes, events and length-prefixed frames (design §4.1–§4.2).
//! - [`error`]: [`CallError`], the `call.error` payload and protocol codes.
//! - [`registry`]: [`Registry`], [`Handler`] and input validation; [`discovery`]: the built-in
//!   `services/list` and `services/schema`.
//! - [`context`]: the [`Context`] a handler receives; [`env`](mod@env): nested calls under a
//!   composition's authority (design §6).
//! - [`identity`] and [`access`]: who calls — certificates, tokens, the config-file provider —
//!   and what they may call (design §5).
//! - [`connection`]: the symmetric [`Connection`], calls, subscriptions, aborts.
//! - [`quic`]: [`Server`] and [`Client`] endpoints; [`tls`]: certificates and fingerprints.
//! - The HTTP gateway (feature `http`, on by default): [`Server::serve_http`] serves POST, SSE
//!   and WebSocket routes and `/openapi.json` over the same dispatch (design §7);
//!   [`websocket`]: call-protocol sessions over WebSocket, a [`Connection`] in both directions,
//!   and the [`WebSocketClient`].
//! - The Docker pack (feature `docker`, on by default): [`docker`] serves containers and
//!   images as `docker/…` operations and interactive sessions on ALPN `alknet/tty` (design §11).
//! - [`config`]: [`ProtocolConfig`], the protocol tunables.
//! - [`demo`]: the demo service behind `alknet serve --demo`.
//!
//! The dispatch rules shared by every transport (lookup → access → validation → kind check →
//! run, deadlines, panic isolation) live in one private module, so later transports reuse them.

pub mod access;
pub mod config;
pub mod connection;
pub mod context;
pub mod demo;
pub mod discovery;
mod dispatch;
#[cfg(feature = "docker")]
pub mod docker;
pub mod env;
pub mod error;
#[cfg(feature = "http")]
mod http;
pub mod identity;
#[cfg(feature = "mcp")]
mod mcp;
pub mod quic;
pub mod registry;
pub mod tls;
pub mod typed;
#[cfg(feature = "http")]
pub mod websocket;
pub mod wire;

// Lets `#[operation]` expand to `::alknet::…` paths inside this crate too (the demo service).
extern crate self as alknet;

/// The IR crate, re-exported.
pub use alknet_spec as spec;

pub use access::OwnershipProvider;
pub use config::ProtocolConfig;
pub use connection::{CallOptions, Connection, Subscription, TypedSubscription};
pub use context::Context;
pub use env::{Env, NestedOptions};
pub use error::CallError;
pub use identity::{ConfigIdentities, Identity, IdentityProvider};
pub use quic::{
    AlpnService, Client, ClientOptions, EndpointError, NodeHandle, Server, ServerOptions,
};
pub use registry::{Composition, Handler, Registry, RegistryError};
pub use typed::{DomainError, Empty, NoDomainError, OpError, Operation, ServeOperation, State};

/// Derives [`DomainError`] for an enum of declared errors.
pub use alknet_macros::DomainError;
/// Declares an operation from an async function. See the crate docs of `alknet-macros`.
pub use alknet_macros::operation;
/// schemars, re-exported so `#[derive(JsonSchema)]` users and generated code agree on one version.
pub use schemars;
pub use tls::{Fingerprint, ServerVerification, TlsIdentity};
#[cfg(feature = "http")]
pub use websocket::{WebSocketClient, WebSocketOptions};
