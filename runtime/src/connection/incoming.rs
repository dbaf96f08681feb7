//! The serving side of a connection: the peer's requests, from arrival to the last answer.
//!
//! Requests are tracked by wire id in a running table so `call.aborted` can drop the handler;
//! a permit per running request bounds what one peer can start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

use super::ConnInner;
use super::writer::{FrameSender, encode_unsendable};
use crate::config::ProtocolConfig;
use crate::error::CallError;
use crate::node::dispatch::GuardedStream;
use crate::node::request::Request;
use crate::wire::{
    CallRequested, Event, FrameError, JsonOutput, Message, OutputFrames, encode_frame_into,
};

/// Bytes of subscription items gathered into one batch: once reached, the batch goes out (an
/// item may take it a little over). Under `SMALL_FRAME_LEN`, so an item-batch frame stays a
/// small frame the caller reads without drawing on its frame budgets.
pub(super) const ITEM_BATCH_BYTES: usize = 60 * 1024;

/// The peer's requests that are still running.
pub(super) struct IncomingRequests {
    /// Requests the peer sent that are still running, by wire id.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// One permit per running request from the peer (`max_concurrent_requests`).
    slots: Arc<Semaphore>,
}

impl IncomingRequests {
    pub fn new(config: &ProtocolConfig) -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
        }
    }

    /// `call.aborted` from the peer: stops the request if it is still running. Unknown ids
    /// (already answered, never sent) are ignored.
    pub fn abort(&self, id: &str) {
        let cancel = self.running.lock().expect("running lock").remove(id);
        if let Some(cancel) = cancel {
            debug!(%id, "request aborted by the caller");
            cancel.cancel();
        }
    }

    /// Whether any request of the peer is still running.
    pub fn is_idle(&self) -> bool {
        self.running.lock().expect("running lock").is_empty()
    }

    /// The connection is gone: nothing can be aborted any more.
    pub fn forget_all(&self) {
        self.running.lock().expect("running lock").clear();
    }
}

/// What a request of the peer comes to: one answer (a query/mutation's, or the one error of a
/// subscription that could not start), or a running subscription.
enum Outcome {
    Unary(Result<JsonOutput, CallError>),
    Stream(GuardedStream),
}

impl ConnInner {
    /// Serves a request from the peer.
    ///
    /// Fast path: a query/mutation whose dispatch finishes on its first poll (most do: no IO,
    /// or IO that is already ready) is answered right here, without a task, a table entry or a
    /// cancellation link. Anything else gets a task of its own, registered for `call.aborted`.
    pub(super) async fn start_request(
        self: &Arc<Self>,
        id: String,
        request: CallRequested,
        tx: &FrameSender,
        stream_token: &CancellationToken,
        out: &mut BytesMut,
    ) {
        self.requests_seen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self
            .incoming
            .running
            .lock()
            .expect("running lock")
            .contains_key(&id)
        {
            let error =
                CallError::invalid_input(format!("request id `{id}` is already in use"), "");
            self.encode_answer(out, Message::new(id, Event::Error(error)));
            return;
        }
        let span = debug_span!("call", id = %id, operation = %request.operation_id);
        // A token that resolves replaces the connection's identity for this request only; one
        // that does not resolve changes nothing (and reveals nothing).
        let identity = request
            .auth_token
            .as_deref()
            .and_then(|token| self.node.identities.as_ref()?.by_token(token))
            .map(Arc::new)
            .or_else(|| self.identity.clone());
        let cancel = CancellationToken::new();
        let item_batches = request.item_batches;
        // A caller that does not say which shape it expects gets the operation's.
        let wants_stream = request.stream.unwrap_or_else(|| {
            crate::node::dispatch::is_subscription(&self.node.registry, &request.operation_id)
        });
        let mut dispatch_request = Request::new(
            id.clone(),
            request.operation_id,
            request.input,
            identity,
            cancel.clone(),
        );
        dispatch_request.meta.peer = self.as_peer();
        dispatch_request.timeout_ms = request.timeout_ms;
        dispatch_request.meta.resume_after = request.resume_after;
        let dispatched: BoxFuture<'static, Outcome> = if wants_stream {
            let started = self.node.stream(dispatch_request);
            async move {
                match started.await {
                    Ok(items) => Outcome::Stream(items),
                    Err(error) => Outcome::Unary(Err(error)),
                }
            }
            .instrument(span.clone())
            .boxed()
        } else {
            self.node
                .unary(dispatch_request)
                .map(Outcome::Unary)
                .instrument(span.clone())
                .boxed()
        };
        let mut dispatched = dispatched;
        let work = match (&mut dispatched).now_or_never() {
            Some(Outcome::Unary(outcome)) => {
                self.encode_outcome(out, &id, outcome);
                return;
            }
            Some(Outcome::Stream(items)) => Work::Stream(Box::new(items)),
            None => Work::Pending(dispatched),
        };
        // Waiting here stops this stream's reader: backpressure on a peer with too much running.
        let slot = match Arc::clone(&self.incoming.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Meanwhile the stream is not read.
                let _unread = self.account.hold(self.unread_cost());
                let Ok(slot) = Arc::clone(&self.incoming.slots).acquire_owned().await else {
                    return;
                };
                slot
            }
        };
        self.incoming
            .running
            .lock()
            .expect("running lock")
            .insert(id.clone(), cancel.clone());
        let reply = Reply {
            id,
            tx: tx.for_operation(),
            item_batches,
        };
        let task = Arc::clone(self).run_request(reply, work, cancel, stream_token.clone(), slot);
        self.node.tracker.spawn(task.instrument(span));
    }

    async fn run_request(
        self: Arc<Self>,
        reply: Reply,
        work: Work,
        cancel: CancellationToken,
        stream_token: CancellationToken,
        _slot: OwnedSemaphorePermit,
    ) {
        let _running = RunningGuard {
            inner: &self,
            id: reply.id.clone(),
        };
        let items = match work {
            Work::Stream(items) => *items,
            Work::Pending(dispatched) => {
                let answer = tokio::select! {
                    biased;
                    answer = dispatched => answer,
                    _ = cancel.cancelled() => return,
                    // The stream or connection went away: cancel the request, so whatever
                    // it started stops too.
                    _ = stream_token.cancelled() => {
                        cancel.cancel();
                        return;
                    }
                    _ = self.hard_stop.cancelled() => {
                        cancel.cancel();
                        Outcome::Unary(Err(CallError::internal("server shutting down")))
                    }
                };
                match answer {
                    Outcome::Unary(outcome) => {
                        let _ = self.send_outcome(&reply.tx, &reply.id, outcome).await;
                        return;
                    }
                    Outcome::Stream(items) => items,
                }
            }
        };
        self.stream_items(reply, items, cancel, stream_token).await;
    }

    /// Sends a subscription's items, gathering those that are ready at once into one batch.
    async fn stream_items(
        &self,
        reply: Reply,
        mut items: impl Stream<Item = Result<JsonOutput, CallError>> + Unpin,
        cancel: CancellationToken,
        stream_token: CancellationToken,
    ) {
        let Reply {
            id,
            tx,
            item_batches,
        } = reply;
        let max_len = self.config().max_frame_len;
        let frames = OutputFrames::new(&id);
        let mut batch = BytesMut::new();
        let mut last_batch_len = 0;
        let cancelled = cancel.cancelled();
        let stream_gone = stream_token.cancelled();
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(cancelled, stream_gone, shutdown);
        loop {
            let first = tokio::select! {
                biased;
                _ = &mut cancelled => return,
                _ = &mut stream_gone => {
                    cancel.cancel();
                    return;
                }
                _ = &mut shutdown => Some(Err(CallError::internal("server shutting down"))),
                item = items.next() => item,
            };
            let mut next = Some(first);
            let mut finished = false;
            // Room for a batch like the last one: growing it item by item would copy it each
            // time. (Not a full batch's worth each time: a trickle of small items would each
            // pin a large allocation while queued.)
            batch.reserve(last_batch_len);
            // With `item_batches`, ready items share frames (`payload.outputs`).
            let mut open = None;
            while let Some(item) = next.take() {
                let encoded = match item {
                    Some(Ok(output)) if item_batches => {
                        match frames.push_item(&mut open, &output, &mut batch, max_len) {
                            // Too large to join the batch: it closes, the item goes alone.
                            Err(FrameError::TooLarge { .. }) if open.is_some() => {
                                frames.finish_items(&mut open, &mut batch);
                                frames.encode_into(&output, &mut batch, max_len)
                            }
                            pushed => pushed,
                        }
                    }
                    Some(Ok(output)) => frames.encode_into(&output, &mut batch, max_len),
                    Some(Err(error)) => {
                        finished = true;
                        frames.finish_items(&mut open, &mut batch);
                        let error = Message::new(id.as_str(), Event::Error(error));
                        encode_frame_into(&error, &mut batch, max_len)
                    }
                    None => {
                        finished = true;
                        frames.finish_items(&mut open, &mut batch);
                        let completed = Message::new(id.as_str(), Event::Completed);
                        encode_frame_into(&completed, &mut batch, max_len)
                    }
                };
                if let Err(error) = encoded {
                    finished = true;
                    frames.finish_items(&mut open, &mut batch);
                    encode_unsendable(&mut batch, &id, &error);
                }
                if finished || batch.len() >= ITEM_BATCH_BYTES {
                    break;
                }
                next = items.next().now_or_never();
            }
            frames.finish_items(&mut open, &mut batch);
            last_batch_len = batch.len();
            if tx.send(batch.split().freeze()).await.is_err() || finished {
                return;
            }
        }
    }
}

/// Where and how a request running in a task is answered.
struct Reply {
    /// The request's wire id.
    id: String,
    /// The stream it came on (counting the request as an operation in flight).
    tx: FrameSender,
    /// The caller accepts several subscription items per frame.
    item_batches: bool,
}

/// A request that did not finish on its first poll.
enum Work {
    /// Still being dispatched or running (a query/mutation, or a subscription's setup).
    Pending(BoxFuture<'static, Outcome>),
    /// A subscription, ready to stream.
    Stream(Box<GuardedStream>),
}

/// Removes a request from the running table when its task ends, however it ends.
struct RunningGuard<'a> {
    inner: &'a ConnInner,
    id: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .incoming
            .running
            .lock()
            .expect("running lock")
            .remove(&self.id);
    }
}
