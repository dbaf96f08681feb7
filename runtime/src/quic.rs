//! QUIC endpoints: a [`Server`] that accepts call-protocol connections and a [`Client`] that
//! dials them. Both produce the same symmetric [`Connection`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::ProtocolConfig;
use crate::connection::{Connection, QUIC_CLOSE_NORMAL};
use crate::identity::IdentityProvider;
use crate::node::Node;
use crate::registry::Registry;
use crate::tls::{self, ALPN_CALL, Fingerprint, ServerVerification, TlsError, TlsIdentity};

/// QUIC application error code for a connection refused because of its ALPN.
const CLOSE_BAD_ALPN: u32 = 2;

/// Why an endpoint could not start or a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("could not bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The QUIC configuration was rejected.
    #[error("invalid QUIC configuration: {0}")]
    Config(String),
    /// The connection attempt failed.
    #[error("could not connect to {addr}: {reason}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

fn transport_config(config: &ProtocolConfig) -> Result<quinn::TransportConfig, EndpointError> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(config.max_concurrent_streams.into())
        .max_concurrent_uni_streams(0u8.into())
        .stream_receive_window(config.stream_receive_window.into())
        .receive_window(config.connection_receive_window.into())
        .send_window(config.connection_send_window)
        .keep_alive_interval(Some(config.keep_alive))
        .max_idle_timeout(Some(
            config
                .idle_timeout
                .try_into()
                .map_err(|_| EndpointError::Config("idle_timeout is too large".into()))?,
        ));
    Ok(transport)
}

/// How a server presents itself and what it serves.
#[derive(Clone)]
pub struct ServerOptions {
    /// UDP address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The certificate; `None` generates a self-signed one for `localhost`.
    pub identity: Option<TlsIdentity>,
    /// Protocol settings.
    pub protocol: ProtocolConfig,
    /// Connections served at once, counting handshakes in progress; further ones are refused
    /// (default 1024). With the node's memory budgets this decides the most memory hostile
    /// peers can make the node hold (docs/protocol.md, "Bounds").
    pub max_connections: usize,
    /// A connection that carries nothing for this long — no request from the peer, no call
    /// or subscription in flight either way — is closed, with a retryable error for any call
    /// that races it (default 10 minutes; `None`: kept as long as the peer keeps it alive).
    /// QUIC's own `idle_timeout` only closes connections whose peer went silent; an idle peer
    /// still sends keep-alives.
    pub idle_connection_timeout: Option<Duration>,
    /// Resolves callers from client certificates and tokens; `None` treats everyone as
    /// anonymous (only public operations can be called).
    pub identities: Option<Arc<dyn IdentityProvider>>,
    /// Other protocols served on the same endpoint, each under its own ALPN (the Docker pack's
    /// interactive sessions, `alknet/tty`). Connections that negotiate `alknet/call` get the call
    /// protocol; the others go to the service of their ALPN.
    pub alpn_services: Vec<Arc<dyn AlpnService>>,
}

/// A protocol served next to the call protocol on a [`Server`]'s endpoint, under its own ALPN.
pub trait AlpnService: Send + Sync + 'static {
    /// The ALPN protocol id it answers to.
    fn alpn(&self) -> &'static [u8];

    /// Serves one connection until it ends. `node` carries the server's registry (ownership
    /// providers), identities and shutdown.
    fn serve(
        &self,
        connection: quinn::Connection,
        node: NodeHandle,
    ) -> futures_util::future::BoxFuture<'static, ()>;
}

/// What an [`AlpnService`] may use of the server: its registry, identities and shutdown.
#[derive(Clone)]
pub struct NodeHandle {
    node: Arc<Node>,
}

impl NodeHandle {
    /// The server's registry (for its ownership providers and state).
    pub fn registry(&self) -> &Registry {
        &self.node.registry
    }

    /// Resolves identities from certificates and tokens, if the server has a provider.
    pub fn identities(&self) -> Option<&Arc<dyn IdentityProvider>> {
        self.node.identities.as_ref()
    }

    /// Completes when the server begins shutting down.
    pub async fn shutting_down(&self) {
        self.node.shutdown.cancelled().await
    }

    /// Runs `task` on the server's task tracker: a graceful shutdown waits for it (up to the
    /// grace period).
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.node.tracker.spawn(task);
    }
}

impl ServerOptions {
    /// Defaults (self-signed certificate, default protocol settings) on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            identity: None,
            protocol: ProtocolConfig::default(),
            max_connections: 1024,
            idle_connection_timeout: Some(Duration::from_secs(600)),
            identities: None,
            alpn_services: Vec::new(),
        }
    }
}

/// A node accepting call-protocol connections.
///
/// [`Server::shutdown`] stops it gracefully. Dropping it stops it at once: no new connections,
/// the open ones closed (their calls fail with "connection closed"), its HTTP gateway stopped.
pub struct Server {
    endpoint: quinn::Endpoint,
    node: Arc<Node>,
    identity: TlsIdentity,
    fingerprint: Fingerprint,
    connections: Arc<Mutex<HashMap<usize, Connection>>>,
    accept_task: JoinHandle<()>,
}

impl Server {
    /// Binds the socket and starts accepting connections in the background.
    pub fn bind(registry: Registry, options: ServerOptions) -> Result<Server, EndpointError> {
        let identity = match options.identity {
            Some(identity) => identity,
            None => TlsIdentity::self_signed(&["localhost", "127.0.0.1", "::1"])?,
        };
        let mut alpns = vec![ALPN_CALL];
        alpns.extend(options.alpn_services.iter().map(|s| s.alpn()));
        let crypto = tls::server_config(&identity, &alpns)?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
            .map_err(|e| EndpointError::Config(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(transport_config(&options.protocol)?));
        let endpoint =
            quinn::Endpoint::server(server_config, options.listen).map_err(|source| {
                EndpointError::Bind {
                    addr: options.listen,
                    source,
                }
            })?;
        let node = Node::new(
            Arc::new(registry),
            options.protocol,
            options.identities,
            None,
        );
        let connections = Arc::new(Mutex::new(HashMap::new()));
        let accept_task = tokio::spawn(accept_connections(
            endpoint.clone(),
            Arc::clone(&node),
            Arc::clone(&connections),
            options.max_connections,
            options.idle_connection_timeout,
            options.alpn_services,
        ));
        Ok(Server {
            endpoint,
            node,
            fingerprint: identity.fingerprint(),
            identity,
            connections,
            accept_task,
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// The fingerprint clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate the server presents: also what the node presents when it calls
    /// others as itself (a federation calling its members).
    pub fn identity(&self) -> &TlsIdentity {
        &self.identity
    }

    /// The registry it serves.
    pub fn registry(&self) -> &Registry {
        &self.node.registry
    }

    /// The node this server's transports share (the HTTP gateway serves it too).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Bytes the node's connections make it hold now, as counted against
    /// [`ProtocolConfig::node_memory_budget`] (docs/protocol.md, "Bounds"): a gauge worth
    /// exporting.
    pub fn memory_held(&self) -> usize {
        self.node.memory.used()
    }

    /// The QUIC connections currently open. Each can call operations its client registered.
    /// (WebSocket sessions of the gateway are reached from handlers, through `Context::peer`.)
    pub fn connections(&self) -> Vec<Connection> {
        self.connections
            .lock()
            .expect("connections lock")
            .values()
            .cloned()
            .collect()
    }

    /// Stops gracefully: refuses new connections and new requests, ends subscriptions with
    /// `INTERNAL` "server shutting down", lets running queries/mutations finish within `grace`
    /// (then answers them with the same error), flushes every answer and closes.
    pub async fn shutdown(self, grace: Duration) {
        info!("shutting down");
        self.endpoint.set_server_config(None);
        self.node.shutdown.cancel();
        self.accept_task.abort();
        let connections = self.connections();
        for connection in &connections {
            connection.release_call_streams().await;
        }
        self.node.tracker.close();
        if tokio::time::timeout(grace, self.node.tracker.wait())
            .await
            .is_err()
        {
            warn!("grace period over: answering the calls still running");
            self.node.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.node.tracker.wait()).await;
        }
        self.endpoint
            .close(QUIC_CLOSE_NORMAL.into(), b"server shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        drop(connections);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // After `shutdown` all of this has happened already and repeating it is harmless.
        self.accept_task.abort();
        self.node.shutdown.cancel();
        self.node.hard_stop.cancel();
        self.endpoint
            .close(QUIC_CLOSE_NORMAL.into(), b"server stopped");
    }
}

async fn accept_connections(
    endpoint: quinn::Endpoint,
    node: Arc<Node>,
    connections: Arc<Mutex<HashMap<usize, Connection>>>,
    max_connections: usize,
    idle_connection_timeout: Option<Duration>,
    alpn_services: Vec<Arc<dyn AlpnService>>,
) {
    // Handshakes in progress count towards the limit: each holds QUIC state and a task.
    let handshaking = Arc::new(AtomicUsize::new(0));
    while let Some(incoming) = endpoint.accept().await {
        let open = connections.lock().expect("connections lock").len()
            + handshaking.load(Ordering::Relaxed);
        if open >= max_connections {
            warn!(remote = %incoming.remote_address(), "connection limit reached: refusing");
            incoming.refuse();
            continue;
        }
        let node = Arc::clone(&node);
        let connections = Arc::clone(&connections);
        let alpn_services = alpn_services.clone();
        let handshaking = Arc::clone(&handshaking);
        handshaking.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let handshake = incoming.await;
            handshaking.fetch_sub(1, Ordering::Relaxed);
            let quic = match handshake {
                Ok(quic) => quic,
                Err(error) => {
                    debug!(%remote, %error, "handshake failed");
                    return;
                }
            };
            let alpn = negotiated_alpn(&quic);
            if alpn.as_deref() != Some(ALPN_CALL) {
                match alpn_services
                    .iter()
                    .find(|s| Some(s.alpn()) == alpn.as_deref())
                {
                    Some(service) => {
                        debug!(%remote, "connection accepted for another ALPN");
                        let served = service.serve(
                            quic,
                            NodeHandle {
                                node: Arc::clone(&node),
                            },
                        );
                        node.tracker.spawn(served);
                    }
                    None => quic.close(CLOSE_BAD_ALPN.into(), b"unsupported ALPN"),
                }
                return;
            }
            debug!(%remote, "connection accepted");
            let id = quic.stable_id();
            let connection = Connection::start(quic, node, idle_connection_timeout);
            connections
                .lock()
                .expect("connections lock")
                .insert(id, connection.clone());
            connection.closed().await;
            connections.lock().expect("connections lock").remove(&id);
        });
    }
}

fn negotiated_alpn(quic: &quinn::Connection) -> Option<Vec<u8>> {
    quic.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// How a client dials and what it offers the server to call back.
#[derive(Clone)]
pub struct ClientOptions {
    /// How the server's certificate is checked.
    pub verification: ServerVerification,
    /// A client certificate to present, if any: the server resolves the connection's identity
    /// from its fingerprint.
    pub identity: Option<TlsIdentity>,
    /// A bearer token sent with every request (a call's own `auth_token` wins).
    pub auth_token: Option<String>,
    /// Protocol settings.
    pub protocol: ProtocolConfig,
    /// Resolves the server (by its certificate) and tokens when the server calls this client's
    /// registry; `None` treats it as anonymous.
    pub identities: Option<Arc<dyn IdentityProvider>>,
}

impl ClientOptions {
    /// Defaults with the given server verification.
    pub fn new(verification: ServerVerification) -> Self {
        Self {
            verification,
            identity: None,
            auth_token: None,
            protocol: ProtocolConfig::default(),
            identities: None,
        }
    }
}

/// A dialling endpoint. One client can open many connections; each can call the server, and the
/// server can call the operations in the client's registry.
pub struct Client {
    endpoint: quinn::Endpoint,
    node: Arc<Node>,
    config: quinn::ClientConfig,
    /// Kept for connections checked another way ([`Client::connect_verified`]).
    identity: Option<TlsIdentity>,
    protocol: ProtocolConfig,
}

impl Client {
    /// A client serving no operations of its own (besides discovery).
    pub fn new(options: ClientOptions) -> Result<Client, EndpointError> {
        Self::with_registry(Registry::new(), options)
    }

    /// A client whose `registry` the servers it connects to may call.
    pub fn with_registry(
        registry: Registry,
        options: ClientOptions,
    ) -> Result<Client, EndpointError> {
        let config = call_client_config(
            &options.verification,
            options.identity.as_ref(),
            &options.protocol,
        )?;
        let endpoint = bind_client_endpoint()?;
        Ok(Client {
            endpoint,
            node: Node::new(
                Arc::new(registry),
                options.protocol.clone(),
                options.identities,
                options.auth_token,
            ),
            config,
            identity: options.identity,
            protocol: options.protocol,
        })
    }

    /// Closes every connection of this client and waits up to `timeout` for the peers to hear
    /// about it, so servers release their state at once instead of at the idle timeout.
    pub async fn wait_idle(&self, timeout: Duration) {
        self.endpoint
            .close(QUIC_CLOSE_NORMAL.into(), b"client closed");
        let _ = tokio::time::timeout(timeout, self.endpoint.wait_idle()).await;
    }

    /// Connects to `addr`, checking the certificate for `server_name` (any name works when
    /// pinning a fingerprint).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, EndpointError> {
        self.connect_with_config(self.config.clone(), addr, server_name)
            .await
    }

    /// Connects to `addr` checking its certificate with `verification` instead of this
    /// client's own: one client for many servers with their own pins (a fleet's members).
    pub async fn connect_verified(
        &self,
        addr: SocketAddr,
        server_name: &str,
        verification: &ServerVerification,
    ) -> Result<Connection, EndpointError> {
        let config = call_client_config(verification, self.identity.as_ref(), &self.protocol)?;
        self.connect_with_config(config, addr, server_name).await
    }

    async fn connect_with_config(
        &self,
        config: quinn::ClientConfig,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, EndpointError> {
        let connect_error = |reason: String| EndpointError::Connect { addr, reason };
        let connecting = self
            .endpoint
            .connect_with(config, addr, server_name)
            .map_err(|e| connect_error(e.to_string()))?;
        let quic = connecting.await.map_err(|e| connect_error(e.to_string()))?;
        if negotiated_alpn(&quic).as_deref() != Some(ALPN_CALL) {
            quic.close(CLOSE_BAD_ALPN.into(), b"unsupported ALPN");
            return Err(connect_error(
                "the server did not agree on ALPN alknet/call".into(),
            ));
        }
        Ok(Connection::start(quic, Arc::clone(&self.node), None))
    }
}

/// The QUIC client configuration of the call protocol.
fn call_client_config(
    verification: &ServerVerification,
    identity: Option<&TlsIdentity>,
    protocol: &ProtocolConfig,
) -> Result<quinn::ClientConfig, EndpointError> {
    let crypto = tls::client_config(verification, identity, ALPN_CALL)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| EndpointError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(protocol)?));
    Ok(config)
}

/// Dials `addr` with `alpn` instead of the call protocol: the client side of an
/// [`AlpnService`] (the interactive sessions' `alknet/tty`). The endpoint must outlive the
/// connection.
pub async fn connect_alpn(
    options: &ClientOptions,
    addr: SocketAddr,
    server_name: &str,
    alpn: &[u8],
) -> Result<(quinn::Endpoint, quinn::Connection), EndpointError> {
    let connect_error = |reason: String| EndpointError::Connect { addr, reason };
    let crypto = tls::client_config(&options.verification, options.identity.as_ref(), alpn)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| EndpointError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(&options.protocol)?));
    let endpoint = bind_client_endpoint()?;
    let quic = endpoint
        .connect_with(config, addr, server_name)
        .map_err(|e| connect_error(e.to_string()))?
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    if negotiated_alpn(&quic).as_deref() != Some(alpn) {
        quic.close(CLOSE_BAD_ALPN.into(), b"unsupported ALPN");
        return Err(connect_error(format!(
            "the server did not agree on ALPN {}",
            String::from_utf8_lossy(alpn)
        )));
    }
    Ok((endpoint, quic))
}

fn bind_client_endpoint() -> Result<quinn::Endpoint, EndpointError> {
    let v6: SocketAddr = (std::net::Ipv6Addr::UNSPECIFIED, 0).into();
    let v4: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, 0).into();
    quinn::Endpoint::client(v6)
        .or_else(|_| quinn::Endpoint::client(v4))
        .map_err(|source| EndpointError::Bind { addr: v4, source })
}
