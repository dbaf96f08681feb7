//! HTTP: alknet's gateway (`POST /ops/bench/echo`; the subscription as SSE) against bare axum
//! doing the same JSON echo. The client is hyper's pooled HTTP/1.1 client with TCP_NODELAY.

use std::net::SocketAddr;

use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{BoxFut, Conn};
use crate::messages::{Count, Echo};

pub async fn serve_axum() -> anyhow::Result<SocketAddr> {
    let app = Router::new().route(
        "/ops/bench/echo",
        post(|Json(echo): Json<Echo>| async move { Json(echo) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // As alknet's gateway does: without TCP_NODELAY small answers wait for delayed ACKs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

pub async fn serve_alknet() -> anyhow::Result<SocketAddr> {
    let server = alknet::Server::bind(
        super::alknet_quic::registry(),
        alknet::ServerOptions::new("127.0.0.1:0".parse()?),
    )?;
    let addr = server.serve_http("127.0.0.1:0".parse()?).await?;
    std::mem::forget(server);
    Ok(addr)
}

pub fn connect(addr: SocketAddr) -> HttpConn {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    HttpConn { client, addr }
}

pub struct HttpConn {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

impl HttpConn {
    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let request = hyper::Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = self.client.request(request).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "status {}",
            response.status()
        );
        Ok(response)
    }
}

impl Conn for HttpConn {
    fn echo(&self, message: Echo) -> BoxFut<'_, anyhow::Result<Echo>> {
        Box::pin(async move {
            let response = self
                .post("/ops/bench/echo", serde_json::to_vec(&message)?)
                .await?;
            let body = response.into_body().collect().await?.to_bytes();
            Ok(serde_json::from_slice(&body)?)
        })
    }

    /// The subscription as server-sent events: counts `data:` lines until the end event.
    fn ticks(&self, count: u64) -> BoxFut<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let response = self
                .post("/ops/bench/ticks", serde_json::to_vec(&Count { count })?)
                .await?;
            let mut body = response.into_body();
            let (mut received, mut has_data, mut named) = (0, false, false);
            let mut pending = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                let mut start = 0;
                while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                    let line = &pending[start..start + end];
                    if line.is_empty() {
                        // An event without a name is an item; `completed` and `error` are named.
                        if has_data && !named {
                            received += 1;
                        }
                        (has_data, named) = (false, false);
                    } else if line.starts_with(b"data:") {
                        has_data = true;
                    } else if line.starts_with(b"event:") {
                        named = true;
                    }
                    start += end + 1;
                }
                pending.drain(..start);
            }
            Ok(received)
        })
    }
}
