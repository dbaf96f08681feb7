//! alknet over QUIC as a user writes it: `#[operation]` functions on the server, typed
//! `call::<EchoOp>` and `subscribe::<TicksOp>` on the client. Validation, access control,
//! deadlines and aborts are on, as they always are.

use std::net::SocketAddr;

use alknet::{
    CallError, Client, ClientOptions, Connection, Server, ServerOptions, ServerVerification,
};
use futures_util::StreamExt;

use super::{BoxFut, Certs, Conn};
use crate::messages::{Count, Echo, Tick};

/// Echoes its input.
#[alknet::operation(query, name = "bench/echo")]
pub async fn echo(input: Echo) -> Result<Echo, CallError> {
    Ok(input)
}

/// Streams `count` small items as fast as they can be sent.
#[alknet::operation(subscription, name = "bench/ticks")]
pub async fn ticks(input: Count) -> impl futures_util::Stream<Item = Result<Tick, CallError>> {
    futures_util::stream::iter((1..=input.count).map(|n| Ok(Tick { n })))
}

/// The benchmark's operations.
pub fn registry() -> alknet::Registry {
    let mut registry = alknet::Registry::new();
    registry.register::<EchoOp>().expect("a valid operation");
    registry.register::<TicksOp>().expect("a valid operation");
    registry
}

pub async fn serve(certs: &Certs) -> anyhow::Result<SocketAddr> {
    let mut options = ServerOptions::new("127.0.0.1:0".parse()?);
    options.identity = Some(certs.identity());
    options.max_connections = 4096;
    let server = Server::bind(registry(), options)?;
    let addr = server.local_addr();
    // The server lives as long as the process.
    std::mem::forget(server);
    Ok(addr)
}

pub fn client(certs: &Certs) -> anyhow::Result<Client> {
    let verification = ServerVerification::pin(certs.identity().fingerprint());
    Ok(Client::new(ClientOptions::new(verification))?)
}

pub async fn connect(client: &Client, addr: SocketAddr) -> anyhow::Result<AlknetConn> {
    Ok(AlknetConn(client.connect(addr, "localhost").await?))
}

pub struct AlknetConn(Connection);

impl Conn for AlknetConn {
    fn echo(&self, message: Echo) -> BoxFut<'_, anyhow::Result<Echo>> {
        Box::pin(async move {
            self.0
                .call::<EchoOp>(&message)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
    }

    fn ticks(&self, count: u64) -> BoxFut<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let mut items = self
                .0
                .subscribe::<TicksOp>(&Count { count })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut received = 0;
            while let Some(item) = items.next().await {
                let item = item.map_err(|e| anyhow::anyhow!("{e}"))?;
                received += 1;
                anyhow::ensure!(item.n == received, "items out of order");
            }
            Ok(received)
        })
    }
}
