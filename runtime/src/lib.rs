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
//! ## Layers
//! Each layer imports only from the layers above it in this list (see `docs/architecture.md`).
//!
//! 1. Foundations: [`error`] ([`CallError`], protocol codes), [`wire`] (envelopes and
//!    length-prefixed frames, design §4.1–§4.2), [`config`] ([`ProtocolConfig`]), [`tls`]
//!    (certificates, fingerprints), [`identity`] and [`access`] (who calls and what they may
//!    call, design §5).
//! 2. Operations: [`registry`] ([`Registry`], [`Handler`], input validation), [`typed`] (what
//!    `#[operation]` generates, typed calls), [`context`] (the [`Context`] a handler receives),
//!    [`peer`] (the remote side as a handler sees it), [`discovery`] (`services/list`,
//!    `services/schema`).
//! 3. The node: [`node`] — what the transports of one endpoint share, the dispatch rules
//!    (lookup → access → validation → kind check → run, deadlines, panic isolation) with one
//!    entry point per shape, and [`Env`] for nested calls (design §6).
//! 4. [`connection`]: the symmetric [`Connection`] — link, calling side, serving side, reader,
//!    writer — over QUIC, a WebSocket or an in-memory pair ([`Connection::pair`]).
//! 5. Surfaces: [`quic`] ([`Server`] and [`Client`] endpoints); [`gateway`] (feature `http`:
//!    HTTP routes, WebSocket sessions, MCP); [`docker`] (feature `docker`: the Docker pack and
//!    its interactive sessions on ALPN `alknet/tty`, design §11); [`demo`] (the demo service
//!    behind `alknet serve --demo`).
//! 6. [`adapters`]: operations that live elsewhere — another node's, through its discovery,
//!    an OpenAPI service's, an MCP server's — imported into a [`Registry`] as forwarding
//!    operations (design §10).
//! 7. [`fleet`]: many nodes, one view — membership on NATS or a static file, a [`Fleet`]
//!    client that calls one or all members, and federation (design §13).

#![warn(missing_docs)]

// Layer 1: foundations.
pub mod access;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod tls;
pub mod wire;

// Layer 2: operations.
pub mod context;
pub mod discovery;
pub mod peer;
pub mod registry;
pub mod typed;

// Layer 3: the node.
pub mod node;

// Layer 4: connections.
pub mod connection;

// Layer 5: surfaces.
pub mod demo;
#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "http")]
pub mod gateway;
pub mod quic;

// Layer 6: adapters.
pub mod adapters;

// Layer 7: fleets.
pub mod fleet;

// Lets `#[operation]` expand to `::alknet::…` paths inside this crate too (the demo service).
extern crate self as alknet;

/// The IR crate, re-exported.
pub use alknet_spec as spec;

pub use access::OwnershipProvider;
pub use adapters::CallImport;
pub use config::ProtocolConfig;
pub use connection::{Connection, PairOptions, Subscription, TypedSubscription};
pub use context::Context;
pub use error::CallError;
pub use fleet::Fleet;
#[cfg(feature = "http")]
pub use gateway::{HttpLimits, HttpOptions};
pub use identity::{ConfigIdentities, Identity, IdentityProvider};
pub use node::env::{Env, NestedOptions};
pub use peer::{CallOptions, Peer};
pub use quic::{
    AlpnService, Client, ClientOptions, EndpointError, NodeHandle, Server, ServerOptions,
};
pub use registry::{Composition, Handler, LiveOperations, Registry, RegistryError};
pub use typed::{DomainError, Empty, NoDomainError, OpError, Operation, ServeOperation, State};

/// Derives [`DomainError`] for an enum of declared errors.
pub use alknet_macros::DomainError;
/// Declares an operation from an async function. See the crate docs of `alknet-macros`.
pub use alknet_macros::operation;
#[cfg(feature = "http")]
pub use gateway::websocket::{WebSocketClient, WebSocketOptions};
/// schemars, re-exported so `#[derive(JsonSchema)]` users and generated code agree on one version.
pub use schemars;
/// serde and serde_json, re-exported so that code `alknet-codegen` generates needs `alknet` as
/// its only dependency (`#[serde(crate = "::alknet::serde")]`).
pub use serde;
pub use serde_json;
pub use tls::{Fingerprint, ServerVerification, TlsIdentity};
