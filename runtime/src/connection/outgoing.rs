//! The calling side of a connection: this side's requests to the peer.
//!
//! Queries and mutations share a small pool of long-lived streams (pipelined, round-robin);
//! each subscription gets a stream of its own. Requests are tracked by numeric id in a pending
//! table until their answer arrives; a caller that goes away sends `call.aborted`.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, ready};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::link::Link;
use super::writer::{FrameSender, StreamHandle};
use super::{ConnInner, Connection};
use crate::config::ProtocolConfig;
use crate::error::CallError;
use crate::peer::CallOptions;
use crate::typed::{OpError, Operation, decode_output_text};
use crate::wire::{
    DecodeError, Event, FrameError, Message, Received, ReceivedEvent, RequestOut, encode_frame,
    encode_request_frame,
};

/// This side's requests to the peer and the streams they go out on.
pub(super) struct OutgoingCalls {
    /// Requests this side sent, by numeric id.
    pub pending: Mutex<HashMap<u64, Pending>>,
    /// Long-lived streams for this side's query/mutation calls.
    pub call_streams: Vec<Mutex<Option<StreamHandle>>>,
    /// Serializes opening replacement call streams (rare), so the per-call path stays a
    /// plain lock-and-clone.
    pub opening_call_stream: tokio::sync::Mutex<()>,
    pub next_call_stream: AtomicUsize,
    pub next_id: AtomicU64,
}

impl OutgoingCalls {
    pub fn new(config: &ProtocolConfig) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            call_streams: (0..config.call_streams.max(1))
                .map(|_| Mutex::new(None))
                .collect(),
            opening_call_stream: tokio::sync::Mutex::new(()),
            next_call_stream: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }
}

/// A request of this side waiting for its answer.
pub(super) struct Pending {
    sink: PendingSink,
    /// The stream the request went out on: if it dies, the request cannot be answered.
    pub stream_key: u64,
}

enum PendingSink {
    /// Gets the output's JSON text, for the caller to parse into the type it expects.
    Unary(oneshot::Sender<Result<Bytes, CallError>>),
    Stream(mpsc::Sender<StreamEvent>),
}

/// What the reader hands a subscription. A closed channel without `Completed` or `Failed` means
/// the stream or connection was lost.
enum StreamEvent {
    /// One item's JSON text.
    Item(Bytes),
    Completed,
    Failed(CallError),
}

/// What [`ConnInner::deliver`] does with an answer once the lock is released.
enum Sink {
    Item(mpsc::Sender<StreamEvent>),
    Final(PendingSink),
}

impl PendingSink {
    async fn fail(self, error: CallError) {
        match self {
            PendingSink::Unary(tx) => {
                let _ = tx.send(Err(error));
            }
            PendingSink::Stream(tx) => {
                let _ = tx.send(StreamEvent::Failed(error)).await;
            }
        }
    }
}

impl Connection {
    /// Calls an operation declared with `#[operation]`: typed input, typed output, and its
    /// declared errors as their enum in [`OpError::Domain`].
    pub async fn call<O: Operation>(
        &self,
        input: &O::Input,
    ) -> Result<O::Output, OpError<O::Error>> {
        self.call_with::<O>(input, CallOptions::default()).await
    }

    /// [`Connection::call`] with options.
    pub async fn call_with<O: Operation>(
        &self,
        input: &O::Input,
        options: CallOptions,
    ) -> Result<O::Output, OpError<O::Error>> {
        // Straight from the typed input to the frame and from the answer's text to the typed
        // output: no `serde_json::Value` in between.
        let output = self
            .call_raw(O::NAME, input, options)
            .await
            .map_err(OpError::from_call_error)?;
        Ok(decode_output_text(&output)?)
    }

    /// Calls a query or mutation on the peer by name, with JSON values. `op` may carry the
    /// wire's leading `/`.
    pub async fn call_json(&self, op: &str, input: Value) -> Result<Value, CallError> {
        self.call_json_with(op, input, CallOptions::default()).await
    }

    /// [`Connection::call_json`] with options. Dropping the future before it completes sends
    /// `call.aborted`, so the peer stops working on it.
    pub async fn call_json_with(
        &self,
        op: &str,
        input: Value,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let output = self.call_raw(op, &input, options).await?;
        decode_output_text(&output)
    }

    /// A query or mutation with any serializable input; the answer is the output's JSON text.
    async fn call_raw<I: serde::Serialize + ?Sized>(
        &self,
        op: &str,
        input: &I,
        options: CallOptions,
    ) -> Result<Bytes, CallError> {
        let inner = self.inner();
        let timeout = options.timeout.unwrap_or(inner.node.config.default_timeout);
        let stream = inner.call_stream().await?;
        let id = inner.outgoing.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = inner.request_frame(id, op, input, &options, Some(timeout), false)?;
        let (tx, rx) = oneshot::channel();
        let mut guard = inner
            .send_request(&stream, id, frame, PendingSink::Unary(tx))
            .await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => {
                guard.disarm();
                result
            }
            Ok(Err(_)) => {
                guard.disarm();
                Err(inner.lost_error("stream closed"))
            }
            // The guard removes the pending entry and tells the peer to stop.
            Err(_) => Err(CallError::timeout(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Subscribes to an operation declared with `#[operation]`: a stream of typed items.
    pub async fn subscribe<O: Operation>(
        &self,
        input: &O::Input,
    ) -> Result<TypedSubscription<O>, OpError<O::Error>> {
        self.subscribe_with::<O>(input, CallOptions::default())
            .await
    }

    /// [`Connection::subscribe`] with options.
    pub async fn subscribe_with<O: Operation>(
        &self,
        input: &O::Input,
        options: CallOptions,
    ) -> Result<TypedSubscription<O>, OpError<O::Error>> {
        let inner = self.subscribe_raw(O::NAME, input, options).await?;
        Ok(TypedSubscription {
            inner,
            _op: std::marker::PhantomData,
        })
    }

    /// Subscribes to a subscription on the peer by name, with JSON values. The stream yields
    /// items until the subscription completes (the stream ends) or fails (one `Err`, then the
    /// end). Dropping it early sends `call.aborted`.
    pub async fn subscribe_json(&self, op: &str, input: Value) -> Result<Subscription, CallError> {
        self.subscribe_json_with(op, input, CallOptions::default())
            .await
    }

    /// [`Connection::subscribe_json`] with options (a deadline for the whole subscription, a
    /// token).
    pub async fn subscribe_json_with(
        &self,
        op: &str,
        input: Value,
        options: CallOptions,
    ) -> Result<Subscription, CallError> {
        self.subscribe_raw(op, &input, options).await
    }

    async fn subscribe_raw<I: serde::Serialize + ?Sized>(
        &self,
        op: &str,
        input: &I,
        options: CallOptions,
    ) -> Result<Subscription, CallError> {
        let inner = self.inner();
        let id = inner.outgoing.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = inner.request_frame(id, op, input, &options, options.timeout, true)?;
        let deadline = options.timeout.map(|t| Box::pin(tokio::time::sleep(t)));
        if let Link::Quic(quic) = &inner.link {
            // The subscription reads its own stream: no reader task, table or channel between
            // the stream and the subscriber, and QUIC flow control is the only buffer.
            let (send, recv) = quic.open_bi().await.map_err(|_| inner.closed_error())?;
            let tx = inner.start_writer(send);
            if tx.send(frame).await.is_err() {
                return Err(inner.lost_error("stream closed"));
            }
            let reader = inner.frame_reader(recv, false);
            let frames = futures_util::stream::unfold(reader, |mut reader| async move {
                let frame = reader.next_frame().await;
                Some((frame, reader))
            })
            .boxed();
            return Ok(Subscription {
                source: Source::Stream {
                    frames,
                    id: id.to_string(),
                    queued: VecDeque::new(),
                },
                guard: AbortOnDrop {
                    inner: Arc::clone(inner),
                    id,
                    tx: Some(tx),
                    tracked: false,
                },
                deadline,
                finished: false,
            });
        }
        let stream = inner.open_stream().await?;
        let (tx, rx) = mpsc::channel(inner.node.config.subscription_buffer.max(1));
        let guard = inner
            .send_request(&stream, id, frame, PendingSink::Stream(tx))
            .await?;
        Ok(Subscription {
            source: Source::Channel(rx),
            guard,
            deadline,
            finished: false,
        })
    }

    /// Drops this side's pooled call streams so their writers can finish (graceful shutdown).
    pub(crate) async fn release_call_streams(&self) {
        let calls = &self.inner().outgoing;
        let _opening = calls.opening_call_stream.lock().await;
        for slot in &calls.call_streams {
            slot.lock().expect("call stream lock").take();
        }
    }
}

impl ConnInner {
    fn request_frame<I: serde::Serialize + ?Sized>(
        &self,
        id: u64,
        op: &str,
        input: &I,
        options: &CallOptions,
        timeout: Option<Duration>,
        stream: bool,
    ) -> Result<Bytes, CallError> {
        let slashed;
        let operation_id = if op.starts_with('/') {
            op
        } else {
            slashed = format!("/{op}");
            &slashed
        };
        let request = RequestOut {
            operation_id,
            input,
            auth_token: options
                .auth_token
                .as_deref()
                .or(self.node.default_token.as_deref()),
            timeout_ms: timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            stream: Some(stream),
            // Every subscription of this client takes several items per frame.
            item_batches: stream,
            resume_after: options.resume_after,
        };
        encode_request_frame(id, &request, self.config().max_frame_len)
    }

    /// Registers `sink` as the waiter for request `id` and sends the request on `stream`. The
    /// returned guard aborts the request if it is dropped before being disarmed.
    async fn send_request(
        self: &Arc<Self>,
        stream: &StreamHandle,
        id: u64,
        frame: Bytes,
        sink: PendingSink,
    ) -> Result<AbortOnDrop, CallError> {
        let pending = Pending {
            sink,
            stream_key: stream.key,
        };
        self.outgoing
            .pending
            .lock()
            .expect("pending lock")
            .insert(id, pending);
        let mut guard = AbortOnDrop {
            inner: Arc::clone(self),
            id,
            tx: Some(stream.tx.for_operation()),
            tracked: true,
        };
        if stream.tx.send(frame).await.is_err() {
            self.outgoing
                .pending
                .lock()
                .expect("pending lock")
                .remove(&id);
            guard.disarm();
            return Err(self.lost_error("stream closed"));
        }
        Ok(guard)
    }

    /// A pooled stream for a query/mutation, opening or replacing it as needed.
    async fn call_stream(self: &Arc<Self>) -> Result<StreamHandle, CallError> {
        if let Link::Messages(_) = self.link {
            return self.open_stream().await;
        }
        let calls = &self.outgoing;
        let slot = &calls.call_streams
            [calls.next_call_stream.fetch_add(1, Ordering::Relaxed) % calls.call_streams.len()];
        let alive = |slot: &Mutex<Option<StreamHandle>>| {
            slot.lock()
                .expect("call stream lock")
                .as_ref()
                .filter(|s| !s.reader_done.is_cancelled() && !s.tx.is_closed())
                .cloned()
        };
        if let Some(stream) = alive(slot) {
            return Ok(stream);
        }
        let _opening = calls.opening_call_stream.lock().await;
        if let Some(stream) = alive(slot) {
            return Ok(stream);
        }
        let stream = self.open_stream().await?;
        *slot.lock().expect("call stream lock") = Some(stream.clone());
        Ok(stream)
    }

    /// Routes an answer to the caller waiting for it. Unknown ids (answers that raced an abort)
    /// are dropped.
    pub(super) async fn deliver(
        &self,
        id: &str,
        key: u64,
        item: Result<Bytes, CallError>,
        terminal: bool,
    ) {
        let Ok(numeric) = id.parse::<u64>() else {
            return;
        };
        let sink = {
            let mut pending = self.outgoing.pending.lock().expect("pending lock");
            match pending.get(&numeric) {
                None => return,
                Some(entry) if entry.stream_key != key => {
                    debug!(%id, "answer arrived on another stream than its request");
                }
                Some(_) => {}
            }
            match &pending[&numeric].sink {
                PendingSink::Stream(tx) if !terminal => Sink::Item(tx.clone()),
                _ => Sink::Final(pending.remove(&numeric).expect("entry present").sink),
            }
        };
        match (sink, item) {
            // Waiting here throttles the stream when the subscriber reads slowly.
            (Sink::Item(tx), Ok(output)) => {
                let _ = tx.send(StreamEvent::Item(output)).await;
            }
            (Sink::Item(tx), Err(error)) => {
                let _ = tx.send(StreamEvent::Failed(error)).await;
            }
            (Sink::Final(sink), Ok(output)) => match sink {
                PendingSink::Unary(tx) => {
                    let _ = tx.send(Ok(output));
                }
                PendingSink::Stream(tx) => {
                    let _ = tx.send(StreamEvent::Item(output)).await;
                }
            },
            (Sink::Final(sink), Err(error)) => sink.fail(error).await,
        }
    }

    /// Takes the pending request with wire id `id` out of the table; `None` for ids this side
    /// never sent or no longer waits for (answers that raced an abort).
    fn take_pending(&self, id: &str) -> Option<Pending> {
        let numeric = id.parse::<u64>().ok()?;
        self.outgoing
            .pending
            .lock()
            .expect("pending lock")
            .remove(&numeric)
    }

    /// Fails the pending request `id` (its answer was malformed). Unknown ids are ignored.
    pub(super) async fn fail_one(&self, id: &str, error: CallError) {
        if let Some(entry) = self.take_pending(id) {
            entry.sink.fail(error).await;
        }
    }

    /// `call.completed`: the subscription `id` ended naturally.
    pub(super) async fn complete(&self, id: &str) {
        match self.take_pending(id).map(|p| p.sink) {
            Some(PendingSink::Unary(tx)) => {
                let _ = tx.send(Err(CallError::internal(
                    "protocol violation: call.completed answered a query/mutation",
                )));
            }
            Some(PendingSink::Stream(tx)) => {
                let _ = tx.send(StreamEvent::Completed).await;
            }
            None => {}
        }
    }

    /// Fails every pending request matching `which` with the connection/stream loss error.
    pub(super) fn fail_pending(&self, which: impl Fn(&Pending) -> bool) {
        let error = self.lost_error("stream closed before the answer arrived");
        self.fail_pending_because(which, &error);
    }

    /// Fails the pending calls `which` selects with `error`.
    pub(super) fn fail_pending_because(&self, which: impl Fn(&Pending) -> bool, error: &CallError) {
        let lost: Vec<Pending> = {
            let mut pending = self.outgoing.pending.lock().expect("pending lock");
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| which(p))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for entry in lost {
            // A subscription notices the dropped sender itself (see `Subscription::poll_next`).
            if let PendingSink::Unary(tx) = entry.sink {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }
}

/// Sends `call.aborted` for a request whose caller went away before its answer.
struct AbortOnDrop {
    inner: Arc<ConnInner>,
    id: u64,
    tx: Option<FrameSender>,
    /// Whether the request waits in the pending table (a subscription reading its own stream
    /// does not): then only a request still in the table is aborted.
    tracked: bool,
}

impl AbortOnDrop {
    /// The answer arrived: nothing to abort.
    fn disarm(&mut self) {
        self.tx = None;
    }

    /// Forgets the request and, if it was still pending, tells the peer to stop.
    fn abort(&mut self) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let was_pending = !self.tracked
            || self
                .inner
                .outgoing
                .pending
                .lock()
                .expect("pending lock")
                .remove(&self.id)
                .is_some();
        if !was_pending {
            return;
        }
        let frame = encode_frame(&Message::new(self.id.to_string(), Event::Aborted), u32::MAX)
            .expect("an abort frame is small");
        // Past the queue's bound if need be: a destructor must not wait, and the frame is tiny.
        let _ = tx.send_now(frame);
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The items of a subscription. Ends after `call.completed`, or after yielding one `Err`.
/// Dropping it before the end aborts the subscription on the peer.
pub struct Subscription {
    source: Source,
    guard: AbortOnDrop,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    finished: bool,
}

/// Where a subscription's answers come from.
enum Source {
    /// QUIC: the subscription's own stream, read as the subscriber polls.
    Stream {
        frames: BoxStream<'static, Result<Option<Bytes>, FrameError>>,
        /// The request's wire id.
        id: String,
        /// The rest of an item batch whose first item was handed out.
        queued: VecDeque<Bytes>,
    },
    /// A message link: the connection's reader hands over the answers.
    Channel(mpsc::Receiver<StreamEvent>),
}

/// What a subscription's source yields next.
enum Next {
    Item(Bytes),
    Completed,
    Failed(CallError),
}

impl Subscription {
    /// The next item's JSON text, the error that ended the subscription, or the end.
    fn poll_raw(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes, CallError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(next) = self.poll_source(cx) {
            if let Next::Item(output) = next {
                return Poll::Ready(Some(Ok(output)));
            }
            self.finished = true;
            self.guard.disarm();
            return Poll::Ready(match next {
                Next::Failed(error) => Some(Err(error)),
                _ => None,
            });
        }
        if let Some(deadline) = &mut self.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.finished = true;
            self.guard.abort();
            return Poll::Ready(Some(Err(CallError::timeout(
                "the subscription deadline expired",
            ))));
        }
        Poll::Pending
    }

    fn poll_source(&mut self, cx: &mut TaskContext<'_>) -> Poll<Next> {
        let lost = |inner: &ConnInner| {
            Next::Failed(inner.lost_error("stream closed before the subscription ended"))
        };
        match &mut self.source {
            Source::Channel(rx) => rx.poll_recv(cx).map(|event| match event {
                Some(StreamEvent::Item(output)) => Next::Item(output),
                Some(StreamEvent::Completed) => Next::Completed,
                Some(StreamEvent::Failed(error)) => Next::Failed(error),
                None => lost(&self.guard.inner),
            }),
            Source::Stream { frames, id, queued } => loop {
                if let Some(item) = queued.pop_front() {
                    return Poll::Ready(Next::Item(item));
                }
                let body = match ready!(frames.poll_next_unpin(cx)) {
                    Some(Ok(Some(body))) => body,
                    Some(Err(FrameError::Io(error))) => {
                        debug!(%error, "subscription stream read ended");
                        return Poll::Ready(lost(&self.guard.inner));
                    }
                    Some(Err(
                        error @ (FrameError::BudgetExhausted { .. } | FrameError::TooSlow { .. }),
                    )) => {
                        return Poll::Ready(Next::Failed(
                            CallError::internal(format!("the subscription's stream: {error}"))
                                .with_retryable(true),
                        ));
                    }
                    Some(Err(error)) => {
                        return Poll::Ready(Next::Failed(CallError::internal(format!(
                            "malformed frame from the peer: {error}"
                        ))));
                    }
                    Some(Ok(None)) | None => return Poll::Ready(lost(&self.guard.inner)),
                };
                let event = match Received::decode(&body) {
                    Ok(received) if received.id == *id => received.event,
                    Err(DecodeError::BadPayload {
                        id: answered,
                        event_type,
                        reason,
                    }) if answered == *id => {
                        return Poll::Ready(Next::Failed(CallError::internal(format!(
                            "malformed `{event_type}` payload: {reason}"
                        ))));
                    }
                    Err(DecodeError::NotEnvelope(error)) => {
                        return Poll::Ready(Next::Failed(CallError::internal(format!(
                            "protocol violation: not an envelope: {error}"
                        ))));
                    }
                    // Nothing else belongs on this stream (other ids, requests, event types
                    // this version does not know): skipped, as the shared reader would.
                    _ => continue,
                };
                return Poll::Ready(match event {
                    ReceivedEvent::Output(output) => Next::Item(output),
                    ReceivedEvent::Outputs(items) => {
                        let mut items = items.into_iter();
                        let Some(first) = items.next() else { continue };
                        queued.extend(items);
                        Next::Item(first)
                    }
                    ReceivedEvent::Completed => Next::Completed,
                    ReceivedEvent::Error(error) => Next::Failed(error),
                    ReceivedEvent::Requested(_) | ReceivedEvent::Aborted => continue,
                });
            },
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Value, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.poll_raw(cx)
            .map(|item| item.map(|r| r.and_then(|text| decode_output_text(&text))))
    }
}

/// The items of a subscription to an `#[operation]`: typed, with its declared errors as their
/// enum. Dropping it early aborts the subscription.
pub struct TypedSubscription<O: Operation> {
    inner: Subscription,
    _op: std::marker::PhantomData<fn() -> O>,
}

impl<O: Operation> Stream for TypedSubscription<O> {
    type Item = Result<O::Output, OpError<O::Error>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        // Each item is parsed once, from its text into the operation's output type.
        self.inner.poll_raw(cx).map(|item| {
            item.map(|r| match r {
                Ok(output) => decode_output_text(&output).map_err(OpError::Call),
                Err(error) => Err(OpError::from_call_error(error)),
            })
        })
    }
}
