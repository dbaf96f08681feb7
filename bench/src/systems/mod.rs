//! The systems under test. Each has a server (run in a process of its own by `peers serve`) and
//! a client connection the driver calls through [`Conn`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::messages::Echo;

pub mod alknet_quic;
pub mod floor;
pub mod http;
pub mod jsonrpsee_ws;
pub mod tarpc_json;
pub mod tonic_tls;

/// A boxed future, so the driver can hold every system's connection the same way.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One client connection to a system's server.
pub trait Conn: Send + Sync {
    /// One unary call: the echo.
    fn echo(&self, message: Echo) -> BoxFut<'_, anyhow::Result<Echo>>;
    /// A server stream of `count` items, read to the end; returns how many arrived.
    fn ticks(&self, count: u64) -> BoxFut<'_, anyhow::Result<u64>>;
}

/// Where a server's certificate lives (every TLS system uses the same self-signed one).
#[derive(Clone, Debug)]
pub struct Certs {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).expect("the certificate file")
    }
    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).expect("the key file")
    }
    /// The identity as alknet loads it (the floor uses the same TLS setup).
    pub fn identity(&self) -> alknet::TlsIdentity {
        alknet::TlsIdentity::from_pem_files(&self.cert, &self.key).expect("the certificate and key")
    }
}

/// The systems, by the name `peers serve NAME` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Bare quinn with alknet's framing and typed serde messages: the floor.
    Floor,
    /// alknet over QUIC, typed calls through `#[operation]`.
    Alknet,
    /// tarpc, JSON over TCP.
    Tarpc,
    /// jsonrpsee over WebSocket.
    Jsonrpsee,
    /// tonic (gRPC over HTTP/2 with TLS), a JSON codec.
    Tonic,
    /// Bare axum: a JSON echo route.
    Axum,
    /// alknet's HTTP gateway: `POST /ops/bench/echo`, SSE on `/ops/bench/ticks`.
    AlknetHttp,
}

impl System {
    pub const ALL: [System; 7] = [
        System::Floor,
        System::Alknet,
        System::Tarpc,
        System::Jsonrpsee,
        System::Tonic,
        System::Axum,
        System::AlknetHttp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Floor => "quinn-floor",
            System::Alknet => "alknet",
            System::Tarpc => "tarpc-json",
            System::Jsonrpsee => "jsonrpsee-ws",
            System::Tonic => "tonic-tls",
            System::Axum => "axum",
            System::AlknetHttp => "alknet-http",
        }
    }

    pub fn from_name(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether it can stream items from the server.
    pub fn streams(self) -> bool {
        !matches!(self, System::Tarpc | System::Axum)
    }

    /// Runs the server until the process is killed, printing `LISTENING <addr>` once ready.
    pub async fn serve(self, certs: Certs) -> anyhow::Result<()> {
        let addr = match self {
            System::Floor => floor::serve(&certs).await?,
            System::Alknet => alknet_quic::serve(&certs).await?,
            System::Tarpc => tarpc_json::serve().await?,
            System::Jsonrpsee => jsonrpsee_ws::serve().await?,
            System::Tonic => tonic_tls::serve(&certs).await?,
            System::Axum => http::serve_axum().await?,
            System::AlknetHttp => http::serve_alknet().await?,
        };
        println!("LISTENING {addr}");
        std::future::pending::<()>().await;
        Ok(())
    }

    /// A new client connection to the server at `addr`.
    pub async fn connect(
        self,
        addr: SocketAddr,
        certs: &Certs,
        client: &Clients,
    ) -> anyhow::Result<Arc<dyn Conn>> {
        Ok(match self {
            System::Floor => Arc::new(floor::connect(&client.floor, addr).await?),
            System::Alknet => Arc::new(alknet_quic::connect(&client.alknet, addr).await?),
            System::Tarpc => Arc::new(tarpc_json::connect(addr).await?),
            System::Jsonrpsee => Arc::new(jsonrpsee_ws::connect(addr).await?),
            System::Tonic => Arc::new(tonic_tls::connect(addr, certs).await?),
            System::Axum | System::AlknetHttp => Arc::new(http::connect(addr)),
        })
    }
}

/// Client endpoints shared by every connection of a run (QUIC endpoints are per process).
pub struct Clients {
    pub floor: quinn::Endpoint,
    pub alknet: alknet::Client,
}

impl Clients {
    pub fn new(certs: &Certs) -> anyhow::Result<Clients> {
        Ok(Clients {
            floor: floor::client_endpoint(certs)?,
            alknet: alknet_quic::client(certs)?,
        })
    }
}
