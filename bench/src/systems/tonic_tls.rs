//! tonic: gRPC over HTTP/2 with TLS, a unary method and a server stream. The messages go through
//! a serde JSON codec, so every system carries the same JSON (protobuf would be smaller).
//! No code generation: the service and client glue below is what `tonic-build` would write.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::{BoxFut, Certs, Conn};
use crate::messages::{Count, Echo, Tick};

const ECHO_PATH: &str = "/bench.Bench/Echo";
const TICKS_PATH: &str = "/bench.Bench/Ticks";

/// JSON in, JSON out.
pub struct JsonCodec<E, D>(PhantomData<(E, D)>);

impl<E, D> Default for JsonCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<E, D> Codec for JsonCodec<E, D>
where
    E: Serialize + Send + 'static,
    D: DeserializeOwned + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = JsonEncoder<E>;
    type Decoder = JsonDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        JsonEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        JsonDecoder(PhantomData)
    }
}

pub struct JsonEncoder<T>(PhantomData<T>);

impl<T: Serialize> Encoder for JsonEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        serde_json::to_writer(dst.writer(), &item).map_err(|e| Status::internal(e.to_string()))
    }
}

pub struct JsonDecoder<T>(PhantomData<T>);

impl<T: DeserializeOwned> Decoder for JsonDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        if !src.has_remaining() {
            return Ok(None);
        }
        let bytes = src.copy_to_bytes(src.remaining());
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

#[derive(Clone)]
struct BenchService;

impl tonic::server::NamedService for BenchService {
    const NAME: &'static str = "bench.Bench";
}

struct EchoMethod;

impl tonic::server::UnaryService<Echo> for EchoMethod {
    type Response = Echo;
    type Future = std::future::Ready<Result<Response<Echo>, Status>>;

    fn call(&mut self, request: Request<Echo>) -> Self::Future {
        std::future::ready(Ok(Response::new(request.into_inner())))
    }
}

struct TicksMethod;

type TickStream = Pin<Box<dyn futures::Stream<Item = Result<Tick, Status>> + Send>>;

impl tonic::server::ServerStreamingService<Count> for TicksMethod {
    type Response = Tick;
    type ResponseStream = TickStream;
    type Future = std::future::Ready<Result<Response<TickStream>, Status>>;

    fn call(&mut self, request: Request<Count>) -> Self::Future {
        let count = request.into_inner().count;
        let items: TickStream =
            Box::pin(futures::stream::iter((1..=count).map(|n| Ok(Tick { n }))));
        std::future::ready(Ok(Response::new(items)))
    }
}

impl<B> tower_service::Service<http::Request<B>> for BenchService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match request.uri().path() {
            ECHO_PATH => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(JsonCodec::<Echo, Echo>::default());
                Ok(grpc.unary(EchoMethod, request).await)
            }),
            TICKS_PATH => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(JsonCodec::<Tick, Count>::default());
                Ok(grpc.server_streaming(TicksMethod, request).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

pub async fn serve(certs: &Certs) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let identity = Identity::from_pem(certs.cert_pem(), certs.key_pem());
    let router = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))?
        .tcp_nodelay(true)
        .add_service(BenchService);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(router.serve_with_incoming(incoming));
    Ok(addr)
}

pub async fn connect(addr: SocketAddr, certs: &Certs) -> anyhow::Result<TonicConn> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(certs.cert_pem()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))?
        .tls_config(tls)?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(TonicConn(channel))
}

pub struct TonicConn(Channel);

impl Conn for TonicConn {
    fn echo(&self, message: Echo) -> BoxFut<'_, anyhow::Result<Echo>> {
        Box::pin(async move {
            let mut grpc = tonic::client::Grpc::new(self.0.clone());
            grpc.ready().await?;
            let response = grpc
                .unary(
                    Request::new(message),
                    http::uri::PathAndQuery::from_static(ECHO_PATH),
                    JsonCodec::<Echo, Echo>::default(),
                )
                .await?;
            Ok(response.into_inner())
        })
    }

    fn ticks(&self, count: u64) -> BoxFut<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let mut grpc = tonic::client::Grpc::new(self.0.clone());
            grpc.ready().await?;
            let response = grpc
                .server_streaming(
                    Request::new(Count { count }),
                    http::uri::PathAndQuery::from_static(TICKS_PATH),
                    JsonCodec::<Count, Tick>::default(),
                )
                .await?;
            let mut items = response.into_inner();
            let mut received = 0;
            while let Some(item) = items.next().await {
                received += 1;
                anyhow::ensure!(item?.n == received, "items out of order");
            }
            Ok(received)
        })
    }
}
