//! jsonrpsee over WebSocket: a method and a subscription.

use std::net::SocketAddr;

use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
use jsonrpsee::rpc_params;
use jsonrpsee::server::{RpcModule, Server, ServerConfig};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};

use super::{BoxFut, Conn};
use crate::messages::{Echo, Tick};

pub async fn serve() -> anyhow::Result<SocketAddr> {
    let config = ServerConfig::builder()
        .max_connections(4096)
        .max_subscriptions_per_connection(1024)
        .build();
    let server = Server::builder()
        .set_config(config)
        .build("127.0.0.1:0")
        .await?;
    let addr = server.local_addr()?;
    let mut module = RpcModule::new(());
    module.register_method("echo", |params, _, _| -> Result<Echo, ErrorObjectOwned> {
        params.one::<Echo>()
    })?;
    module.register_subscription(
        "subscribe_ticks",
        "tick",
        "unsubscribe_ticks",
        |params, pending, _, _| async move {
            let count: u64 = params.one()?;
            let sink = pending.accept().await?;
            for n in 1..=count {
                sink.send(serde_json::value::to_raw_value(&Tick { n })?)
                    .await?;
            }
            Ok(())
        },
    )?;
    let handle = server.start(module);
    std::mem::forget(handle);
    Ok(addr)
}

pub async fn connect(addr: SocketAddr) -> anyhow::Result<JsonrpseeConn> {
    let client = WsClientBuilder::default()
        .max_concurrent_requests(1024)
        // jsonrpsee drops items when a subscription's buffer is full (no backpressure to the
        // server), so the buffer holds the whole stream.
        .max_buffer_capacity_per_subscription(2 << 20)
        .build(format!("ws://{addr}"))
        .await?;
    Ok(JsonrpseeConn(client))
}

pub struct JsonrpseeConn(WsClient);

impl Conn for JsonrpseeConn {
    fn echo(&self, message: Echo) -> BoxFut<'_, anyhow::Result<Echo>> {
        Box::pin(async move { Ok(self.0.request("echo", rpc_params![message]).await?) })
    }

    fn ticks(&self, count: u64) -> BoxFut<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let mut items = self
                .0
                .subscribe::<Tick, _>("subscribe_ticks", rpc_params![count], "unsubscribe_ticks")
                .await?;
            let mut received = 0;
            // The server ends the subscription without a message the client turns into an end
            // of stream, so the reader stops at the count.
            while received < count {
                let Some(item) = items.next().await else {
                    break;
                };
                received += 1;
                let n = item?.n;
                anyhow::ensure!(
                    n == received,
                    "items out of order: {n} where {received} was due"
                );
            }
            Ok(received)
        })
    }
}
