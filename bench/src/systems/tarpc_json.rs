//! tarpc with its JSON transport over TCP. tarpc has no server streaming.

use std::net::SocketAddr;

use futures::prelude::*;
use tarpc::server::{self, Channel};
use tarpc::tokio_serde::formats::Json;
use tarpc::{client, context};

use super::{BoxFut, Conn};
use crate::messages::Echo;

#[tarpc::service]
pub trait Bench {
    async fn echo(message: Echo) -> Echo;
}

#[derive(Clone)]
struct BenchServer;

impl Bench for BenchServer {
    async fn echo(self, _: context::Context, message: Echo) -> Echo {
        message
    }
}

pub async fn serve() -> anyhow::Result<SocketAddr> {
    let mut listener = tarpc::serde_transport::tcp::listen("127.0.0.1:0", Json::default).await?;
    listener.config_mut().max_frame_length(16 * 1024 * 1024);
    let addr = listener.local_addr();
    tokio::spawn(async move {
        while let Some(Ok(transport)) = listener.next().await {
            let _ = transport.get_ref().set_nodelay(true);
            let channel = server::BaseChannel::with_defaults(transport);
            tokio::spawn(
                channel
                    .execute(BenchServer.serve())
                    .for_each(|call| async move {
                        tokio::spawn(call);
                    }),
            );
        }
    });
    Ok(addr)
}

pub async fn connect(addr: SocketAddr) -> anyhow::Result<TarpcConn> {
    let transport = tarpc::serde_transport::tcp::connect(addr, Json::default).await?;
    transport.get_ref().set_nodelay(true)?;
    Ok(TarpcConn(
        BenchClient::new(client::Config::default(), transport).spawn(),
    ))
}

pub struct TarpcConn(BenchClient);

impl Conn for TarpcConn {
    fn echo(&self, message: Echo) -> BoxFut<'_, anyhow::Result<Echo>> {
        Box::pin(async move { Ok(self.0.echo(context::current(), message).await?) })
    }

    fn ticks(&self, _: u64) -> BoxFut<'_, anyhow::Result<u64>> {
        Box::pin(async { anyhow::bail!("tarpc has no server streaming") })
    }
}
