//! The call protocol over WebSocket (design §7, `GET /alknet/call`): one binary message per
//! envelope, in both directions.
//!
//! A WebSocket session is a [`Connection`] like a QUIC one — the same requests, answers, aborts,
//! deadlines and identities — except that everything shares one ordered channel instead of
//! separate streams. Either side calls the other: a handler serving a WebSocket peer reaches it
//! through [`Context::peer`](crate::Context::peer) and calls the operations the peer registered.
//!
//! - The gateway side is served by [`Server::serve_http`](crate::Server::serve_http). The
//!   session's identity comes from the upgrade request's `Authorization: Bearer` token; a
//!   request's own `auth_token` replaces it for that request.
//! - [`WebSocketClient`] dials a gateway from Rust (`ws://` only: put a TLS terminator in front
//!   of the gateway, or use QUIC, for encryption).
//!
//! A text message, or a binary message that is not an envelope, closes the session with close
//! code 1002 (protocol error) and a reason; a request with a malformed payload is answered with
//! `INVALID_INPUT`, as on QUIC. Messages are limited to
//! [`HttpLimits::websocket_max_message`](crate::HttpLimits::websocket_max_message) (1 MiB) and
//! sessions to [`HttpLimits::max_websocket_sessions`](crate::HttpLimits::max_websocket_sessions).

use std::future::ready;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{self as axum_ws, WebSocket};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::CloseFrame};
use tracing::debug;

use crate::config::ProtocolConfig;
use crate::connection::{Connection, LinkMessage, MessageTransport};
use crate::identity::{Identity, IdentityProvider};
use crate::node::Node;
use crate::registry::Registry;
use crate::wire::split_frames;

/// WebSocket close code for a normal end.
const WS_CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code for a protocol violation.
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// A close frame's reason is at most 123 bytes.
const MAX_CLOSE_REASON: usize = 123;
/// The reason given when a peer sends a text message.
const TEXT_REFUSED: &str =
    "text messages are not part of the protocol: send one envelope per binary message";

/// How the reason of a close for an oversized message begins (close code 1009).
const TOO_LARGE: &str = "message too large";
/// WebSocket close code for a message over the size limit.
const CLOSE_TOO_LARGE: u16 = 1009;

/// Whether a read failed because a message was over the size limit (the axum error wraps the
/// tungstenite one).
fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tungstenite::Error::Capacity(_)) = error.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// What one WebSocket message means to the call protocol.
enum Step {
    Message(LinkMessage),
    /// Ping, pong: handled by the WebSocket library.
    Skip,
    /// A close frame or a read error: the session is over.
    End,
}

/// The peer's messages as the connection reads them: envelopes and violations, ending at the
/// first close frame or error.
fn incoming<S, M, E>(
    messages: S,
    classify: fn(M) -> Step,
) -> futures_util::stream::BoxStream<'static, LinkMessage>
where
    S: Stream<Item = Result<M, E>> + Send + 'static,
    M: 'static,
    E: std::error::Error + 'static,
{
    messages
        .map(move |message| match message {
            Ok(message) => classify(message),
            // The library refuses an oversized message before buffering it; tell the peer.
            Err(error) if is_too_large(&error) => {
                Step::Message(LinkMessage::Violation(format!("{TOO_LARGE}: {error}")))
            }
            Err(error) => {
                debug!(%error, "WebSocket read ended");
                Step::End
            }
        })
        .take_while(|step| ready(!matches!(step, Step::End)))
        .filter_map(|step| {
            ready(match step {
                Step::Message(incoming) => Some(incoming),
                Step::Skip | Step::End => None,
            })
        })
        .boxed()
}

/// Sends the connection's frames, one message each, until the connection closes; then sends
/// what is still queued and a close frame (1002 with the reason after a protocol violation).
async fn send_outgoing<S, M>(
    mut sink: S,
    mut transport: MessageTransport,
    binary: fn(Bytes) -> M,
    close: fn(u16, String) -> M,
) where
    S: Sink<M> + Unpin,
{
    while let Some(chunk) = transport.next_chunk().await {
        let mut sent = feed(&mut sink, chunk, binary).await;
        // Whatever else is queued goes out with this flush.
        while sent.is_ok() {
            match transport.queued_chunk() {
                Some(chunk) => sent = feed(&mut sink, chunk, binary).await,
                None => break,
            }
        }
        if sent.is_err() || sink.flush().await.is_err() {
            // The socket is gone: the connection is over.
            transport.closing.cancel();
            return;
        }
    }
    let frame = match transport.violation() {
        Some(problem) if problem.starts_with(TOO_LARGE) => {
            close(CLOSE_TOO_LARGE, close_reason(problem))
        }
        Some(problem) => close(CLOSE_PROTOCOL_ERROR, close_reason(problem)),
        None => close(WS_CLOSE_NORMAL, String::new()),
    };
    let _ = sink.send(frame).await;
    let _ = sink.close().await;
}

async fn feed<S, M>(sink: &mut S, chunk: Bytes, binary: fn(Bytes) -> M) -> Result<(), S::Error>
where
    S: Sink<M> + Unpin,
{
    for frame in split_frames(chunk) {
        sink.feed(binary(frame)).await?;
    }
    Ok(())
}

/// `problem`, cut at a character boundary to fit a close frame.
fn close_reason(problem: &str) -> String {
    let mut end = problem.len().min(MAX_CLOSE_REASON);
    while !problem.is_char_boundary(end) {
        end -= 1;
    }
    problem[..end].to_owned()
}

/// Serves one upgraded gateway session until it closes. `identity` is the caller of the upgrade
/// request.
pub(super) async fn serve_session(
    node: Arc<Node>,
    identity: Option<Arc<Identity>>,
    remote: SocketAddr,
    socket: WebSocket,
) {
    let (sink, stream) = socket.split();
    let messages = incoming(stream, |message| match message {
        axum_ws::Message::Binary(bytes) => Step::Message(LinkMessage::Envelope(bytes)),
        axum_ws::Message::Text(_) => Step::Message(LinkMessage::Violation(TEXT_REFUSED.into())),
        axum_ws::Message::Ping(_) | axum_ws::Message::Pong(_) => Step::Skip,
        axum_ws::Message::Close(_) => Step::End,
    });
    let (connection, transport) = Connection::start_messages(node, identity, remote, messages);
    send_outgoing(sink, transport, axum_ws::Message::Binary, |code, reason| {
        axum_ws::Message::Close(Some(axum_ws::CloseFrame {
            code,
            reason: reason.into(),
        }))
    })
    .await;
    // Holding the connection until here keeps it open for as long as the socket is.
    drop(connection);
}

/// How a [`WebSocketClient`] connects and what it offers the gateway to call back.
#[derive(Clone, Default)]
pub struct WebSocketOptions {
    /// A bearer token sent with the upgrade request: the session's identity on the gateway.
    pub auth_token: Option<String>,
    /// Protocol settings (deadlines, message size limit, …).
    pub protocol: ProtocolConfig,
    /// Resolves tokens on requests the gateway sends this client; `None` treats the gateway as
    /// anonymous.
    pub identities: Option<Arc<dyn IdentityProvider>>,
}

/// Why a WebSocket session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WebSocketError {
    /// The URL or a header was not acceptable.
    #[error("invalid WebSocket request: {0}")]
    Request(String),
    /// The connection or the upgrade failed.
    #[error("could not open a WebSocket session with {url}: {reason}")]
    Connect {
        /// The URL dialled.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Dials the gateway's `/alknet/call` over WebSocket. Each session is a [`Connection`]: calls
/// and subscriptions go to the gateway's node, and the gateway may call the operations in this
/// client's registry.
pub struct WebSocketClient {
    node: Arc<Node>,
    auth_token: Option<String>,
}

impl WebSocketClient {
    /// A client whose `registry` the gateways it connects to may call.
    pub fn new(registry: Registry, options: WebSocketOptions) -> WebSocketClient {
        WebSocketClient {
            node: Node::new(
                Arc::new(registry),
                options.protocol,
                options.identities,
                None,
            ),
            auth_token: options.auth_token,
        }
    }

    /// Opens a session with `url` (`ws://HOST:PORT/alknet/call`).
    pub async fn connect(&self, url: &str) -> Result<Connection, WebSocketError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| WebSocketError::Request(e.to_string()))?;
        if let Some(token) = &self.auth_token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| WebSocketError::Request("the token is not a valid header".into()))?;
            request
                .headers_mut()
                .insert(tungstenite::http::header::AUTHORIZATION, value);
        }
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(self.node.config.max_frame_len as usize))
            .max_frame_size(Some(self.node.config.max_frame_len as usize));
        let connect_error = |reason: String| WebSocketError::Connect {
            url: url.to_owned(),
            reason,
        };
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let remote = match socket.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.peer_addr(),
            _ => return Err(connect_error("only ws:// is supported".into())),
        }
        .map_err(|e| connect_error(e.to_string()))?;
        let (sink, stream) = socket.split();
        let messages = incoming(stream, |message| match message {
            tungstenite::Message::Binary(bytes) => Step::Message(LinkMessage::Envelope(bytes)),
            tungstenite::Message::Text(_) => {
                Step::Message(LinkMessage::Violation(TEXT_REFUSED.into()))
            }
            tungstenite::Message::Ping(_)
            | tungstenite::Message::Pong(_)
            | tungstenite::Message::Frame(_) => Step::Skip,
            tungstenite::Message::Close(_) => Step::End,
        });
        let (connection, transport) =
            Connection::start_messages(Arc::clone(&self.node), None, remote, messages);
        tokio::spawn(send_outgoing(
            sink,
            transport,
            tungstenite::Message::Binary,
            |code, reason| {
                tungstenite::Message::Close(Some(CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                }))
            },
        ));
        Ok(connection)
    }
}
