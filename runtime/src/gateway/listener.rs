//! The gateway's TCP side: accepting connections within a cap, the time a connection may wait
//! for its next request, and graceful shutdown.
//!
//! axum's own `serve` keeps a connection for as long as the client likes, accepts as many as the
//! process has file descriptors, and once those run out refuses everyone. Here:
//!
//! - **A request head in time.** A connection has [`HttpLimits::request_head_timeout`] to send
//!   each request's line and headers, counted from when it starts waiting for them: a client
//!   that trickles its headers, and a keep-alive connection that stays idle, are closed after it.
//!   (hyper runs one timer for both, so the keep-alive idle time is the same bound.)
//! - **A cap, with room kept for new clients.** At most [`HttpLimits::max_connections`] are
//!   open. A client that arrives when all are taken gets the place of the connection that has
//!   been idle longest (no request or response body, SSE stream or WebSocket session in
//!   progress), which is closed gracefully; when every connection is busy, the newcomer is
//!   answered `503` and closed. Idle sockets held open by someone else therefore never lock
//!   new clients out, and the node never runs out of file descriptors.
//! - HTTP/1.1 only (with upgrades, for the WebSocket): the gateway has no TLS, and browsers
//!   speak HTTP/2 only over TLS.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::debug;

use crate::error::CallError;

/// The most a connection buffers while reading a request head.
const HEAD_BUFFER: usize = 64 * 1024;

/// Limits on the gateway's connections.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections open at once (default 1024). When all are taken, the one idle longest makes
    /// room for a newcomer; when none is idle, the newcomer gets `503`.
    pub max_connections: usize,
    /// Time a connection has to send a request's head, counted from when it starts waiting for
    /// it: after the previous response on a keep-alive connection, or from connecting (default
    /// 20 s). Bounds idle keep-alive connections and clients that trickle their headers.
    pub request_head_timeout: Duration,
    /// WebSocket sessions (`/alknet/call`) open at once (default 64); a further upgrade gets
    /// `503`. With `websocket_max_message` it bounds what sessions can make the node buffer:
    /// a message being received is held whole before alknet sees it.
    pub max_websocket_sessions: usize,
    /// The largest WebSocket message (one envelope) a session accepts (default 1 MiB, at most
    /// `max_frame_len`); larger ones close the session with 1009. Larger requests go over QUIC
    /// or `POST`, whose large bodies draw on the node's frame budget.
    pub websocket_max_message: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            request_head_timeout: Duration::from_secs(20),
            max_websocket_sessions: 64,
            websocket_max_message: 1024 * 1024,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled; then stops
/// accepting, lets each connection finish what it is doing, and returns when all are closed.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let table = Arc::new(Table::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or similar: wait instead of spinning.
                    debug!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = table.admit() else {
            refuse(tcp);
            continue;
        };
        if let Err(error) = tcp.set_nodelay(true) {
            // Answers are small and written whole: without TCP_NODELAY, Nagle holds a
            // response back until the client's delayed ACK.
            debug!(%error, "TCP_NODELAY could not be set");
        }
        tracker.spawn(serve_connection(
            tcp,
            remote,
            slot,
            router.clone(),
            limits.request_head_timeout,
            shutdown.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
}

/// Answers a client that cannot be admitted, without waiting for it.
fn refuse(tcp: TcpStream) {
    let error = CallError::internal("the gateway has no free connection: try again shortly");
    let body = serde_json::to_string(&error).expect("errors serialize");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         connection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // The socket is new, so its send buffer has room; if not, the client just sees a close.
    let _ = tcp.try_write(response.as_bytes());
}

async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    slot: Slot,
    router: Router,
    request_head_timeout: Duration,
    shutdown: CancellationToken,
) {
    let activity = slot.activity();
    let close = slot.close.clone();
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        let busy = activity.enter();
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(activity.clone());
        let response = router.clone().oneshot(request.map(Body::new));
        async move {
            let response: Response = match response.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            // The connection stays busy until the body (an SSE stream, say) is done.
            Ok::<_, Infallible>(response.map(|body| Body::new(TrackedBody { body, _busy: busy })))
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // A request head may take up to 64 KiB (hyper's default buffer is ~400 KiB): with the
    // connection cap, what heads being read can hold (docs/protocol.md, "Bounds").
    http.timer(TokioTimer::new())
        .header_read_timeout(request_head_timeout)
        .max_buf_size(HEAD_BUFFER);
    let io = TokioIo::new(SlotIo { tcp, _slot: slot });
    let connection = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(%error, "HTTP connection ended");
            }
        }
        _ = async { tokio::select! { _ = close.cancelled() => {}, _ = shutdown.cancelled() => {} } } => {
            // Finishes the request in progress, if any, then closes.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// The open connections, for the cap and for finding the one idle longest.
struct Table {
    connections: Mutex<HashMap<u64, Entry>>,
    next_key: AtomicU64,
    max: usize,
    /// When the table was made: idle times are kept as milliseconds since.
    epoch: Instant,
}

struct Entry {
    activity: Activity,
    /// Cancelled to ask the connection to close (it was idle longest when the table was full).
    close: CancellationToken,
}

impl Table {
    fn new(max: usize) -> Self {
        Self {
            connections: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            max,
            epoch: Instant::now(),
        }
    }

    /// A place for a new connection, asking the one idle longest to close when the table is
    /// full; `None` when every connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut connections = self.connections.lock().expect("connection table lock");
        if connections.len() >= self.max {
            let (&key, _) = connections
                .iter()
                .filter(|(_, entry)| entry.activity.is_idle())
                .min_by_key(|(_, entry)| entry.activity.idle_since())?;
            // Out of the table at once, so the newcomer's place is real; the socket closes
            // as soon as hyper has let go of it.
            let evicted = connections.remove(&key).expect("a listed key");
            evicted.close.cancel();
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let activity = Activity(Arc::new(ActivityState {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now()),
            epoch: self.epoch,
        }));
        let close = CancellationToken::new();
        connections.insert(
            key,
            Entry {
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        Some(Slot {
            table: Arc::clone(self),
            key,
            activity,
            close,
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// A connection's place in the [`Table`], held by its socket: an upgraded connection (a
/// WebSocket) keeps it for as long as the session lasts.
struct Slot {
    table: Arc<Table>,
    key: u64,
    activity: Activity,
    close: CancellationToken,
}

impl Slot {
    fn activity(&self) -> Activity {
        self.activity.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table
            .connections
            .lock()
            .expect("connection table lock")
            .remove(&self.key);
    }
}

/// What one connection is doing: requests and response bodies in progress, and since when it
/// has been idle. Handlers that keep a connection busy past their response (the WebSocket
/// session) take it from the request's extensions and hold [`Activity::enter`].
#[derive(Clone)]
pub(super) struct Activity(Arc<ActivityState>);

struct ActivityState {
    busy: AtomicUsize,
    /// Milliseconds since `epoch` when `busy` last fell to zero.
    idle_since: AtomicU64,
    epoch: Instant,
}

impl Activity {
    /// Marks the connection busy until the guard is dropped.
    pub fn enter(&self) -> Busy {
        self.0.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.0.busy.load(Ordering::Acquire) == 0
    }

    fn idle_since(&self) -> u64 {
        self.0.idle_since.load(Ordering::Relaxed)
    }
}

/// Keeps a connection counted as busy while it lives.
pub(super) struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        let state = &self.0.0;
        state
            .idle_since
            .store(state.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        state.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection busy until it is done or dropped.
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, holding its place in the table.
struct SlotIo {
    tcp: TcpStream,
    _slot: Slot,
}

impl AsyncRead for SlotIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlotIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
