//! The floor: bare quinn carrying alknet's framing (4-byte length + JSON envelope) with typed
//! serde messages, and nothing else — no registry, validation, access control, deadlines,
//! aborts or task per request. The server answers each request inline on the stream it came on
//! and writes what it has answered once no whole frame is left to read; a client connection is
//! one pipelined stream with a pending table, plus a stream per subscription.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alknet::tls::{self, ALPN_CALL};
use alknet::wire::FrameReader;
use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{BoxFut, Certs, Conn};
use crate::messages::{Count, Echo, Tick};

#[derive(Serialize)]
struct Out<'a, P> {
    #[serde(rename = "type")]
    event_type: &'static str,
    id: &'a str,
    payload: P,
}

#[derive(Serialize)]
struct RequestOut<'a, I> {
    #[serde(rename = "operationId")]
    operation_id: &'a str,
    input: &'a I,
}

#[derive(Serialize)]
struct OutputOut<'a, O> {
    output: &'a O,
}

#[derive(Deserialize)]
struct In<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    id: &'a str,
    #[serde(borrow)]
    payload: &'a RawValue,
}

#[derive(Deserialize)]
struct RequestIn<'a> {
    #[serde(rename = "operationId")]
    operation_id: &'a str,
    #[serde(borrow)]
    input: &'a RawValue,
}

#[derive(Deserialize)]
struct OutputIn<O> {
    output: O,
}

/// Appends one frame carrying `event` with `payload` to `out`.
fn frame<P: Serialize>(out: &mut BytesMut, event_type: &'static str, id: &str, payload: P) {
    let start = out.len();
    out.put_u32(0);
    serde_json::to_writer(
        (&mut *out).writer(),
        &Out {
            event_type,
            id,
            payload,
        },
    )
    .expect("serializable");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

pub async fn serve(certs: &Certs) -> anyhow::Result<SocketAddr> {
    let crypto = tls::server_config(&certs.identity(), &[ALPN_CALL])?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    // The stream limits alknet's server uses (ProtocolConfig's defaults): quinn keeps state for
    // every stream the peer may open, so they decide much of a connection's memory.
    let defaults = alknet::ProtocolConfig::default();
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(defaults.max_concurrent_streams.into())
        .max_concurrent_uni_streams(0u8.into());
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
    let addr = endpoint.local_addr()?;
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(serve_stream(send, recv));
                }
            });
        }
    });
    Ok(addr)
}

async fn serve_stream(mut send: quinn::SendStream, recv: quinn::RecvStream) {
    let mut reader = FrameReader::new(recv, u32::MAX);
    let mut out = BytesMut::new();
    while let Ok(Some(body)) = reader.next_frame().await {
        let Ok(envelope) = serde_json::from_slice::<In<'_>>(&body) else {
            return;
        };
        let Ok(request) = serde_json::from_str::<RequestIn<'_>>(envelope.payload.get()) else {
            return;
        };
        if request.operation_id == "/bench/ticks" {
            let Ok(count) = serde_json::from_str::<Count>(request.input.get()) else {
                return;
            };
            for n in 1..=count.count {
                frame(
                    &mut out,
                    "call.responded",
                    envelope.id,
                    OutputOut {
                        output: &Tick { n },
                    },
                );
                if out.len() >= 64 * 1024 && send.write_all(&out.split()).await.is_err() {
                    return;
                }
            }
            frame(
                &mut out,
                "call.completed",
                envelope.id,
                serde_json::json!({}),
            );
        } else {
            let Ok(echo) = serde_json::from_str::<Echo>(request.input.get()) else {
                return;
            };
            frame(
                &mut out,
                "call.responded",
                envelope.id,
                OutputOut { output: &echo },
            );
        }
        if !reader.has_buffered_frame() && send.write_all(&out.split()).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

pub fn client_endpoint(certs: &Certs) -> anyhow::Result<quinn::Endpoint> {
    let verification = alknet::ServerVerification::pin(certs.identity().fingerprint());
    let crypto = tls::client_config(&verification, None, ALPN_CALL)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    Ok(endpoint)
}

type PendingTable = Arc<Mutex<HashMap<u64, oneshot::Sender<Echo>>>>;

/// One connection: a pipelined call stream and its reader task.
pub struct FloorConn {
    conn: quinn::Connection,
    send: tokio::sync::Mutex<quinn::SendStream>,
    pending: PendingTable,
    next_id: std::sync::atomic::AtomicU64,
}

pub async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> anyhow::Result<FloorConn> {
    let conn = endpoint.connect(addr, "localhost")?.await?;
    let (send, recv) = conn.open_bi().await?;
    let pending: PendingTable = Arc::default();
    let table = Arc::clone(&pending);
    tokio::spawn(async move {
        let mut reader = FrameReader::new(recv, u32::MAX);
        while let Ok(Some(body)) = reader.next_frame().await {
            let Ok(envelope) = serde_json::from_slice::<In<'_>>(&body) else {
                return;
            };
            let Ok(answer) = serde_json::from_str::<OutputIn<Echo>>(envelope.payload.get()) else {
                return;
            };
            let id: u64 = envelope.id.parse().unwrap_or(0);
            let waiter = table.lock().unwrap().remove(&id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(answer.output);
            }
        }
    });
    Ok(FloorConn {
        conn,
        send: tokio::sync::Mutex::new(send),
        pending,
        next_id: std::sync::atomic::AtomicU64::new(1),
    })
}

impl Conn for FloorConn {
    fn echo(&self, message: Echo) -> BoxFut<'_, anyhow::Result<Echo>> {
        Box::pin(async move {
            let id = self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.pending.lock().unwrap().insert(id, tx);
            let mut out = BytesMut::with_capacity(128);
            frame(
                &mut out,
                "call.requested",
                itoa::Buffer::new().format(id),
                RequestOut {
                    operation_id: "/bench/echo",
                    input: &message,
                },
            );
            self.send.lock().await.write_all(&out).await?;
            Ok(rx.await?)
        })
    }

    fn ticks(&self, count: u64) -> BoxFut<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let (mut send, recv) = self.conn.open_bi().await?;
            let mut out = BytesMut::new();
            frame(
                &mut out,
                "call.requested",
                "1",
                RequestOut {
                    operation_id: "/bench/ticks",
                    input: &Count { count },
                },
            );
            send.write_all(&out).await?;
            let mut reader = FrameReader::new(recv, u32::MAX);
            let mut received = 0;
            while let Some(body) = reader.next_frame().await? {
                let envelope = serde_json::from_slice::<In<'_>>(&body)?;
                if envelope.event_type == "call.completed" {
                    break;
                }
                let item: OutputIn<Tick> = serde_json::from_str(envelope.payload.get())?;
                received += 1;
                anyhow::ensure!(item.output.n == received, "items out of order");
            }
            let _ = send.finish();
            Ok(received)
        })
    }
}
