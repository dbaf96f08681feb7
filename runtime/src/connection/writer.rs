//! Writing frames to a stream.
//!
//! Every stream has one [`FrameQueue`]: the senders (callers, the stream's reader answering
//! requests, a subscription's item loop) put encoded frames in, and one consumer takes them
//! out — the stream's writer task for QUIC, the transport for a message link.
//!
//! Two things make it more than a channel:
//! - **Writing in place.** On QUIC, a sender that finds nothing queued writes its frame into
//!   the stream itself, without waking the writer task: a lone call or answer costs no task
//!   hop. Only what QUIC cannot take at once (flow control) is queued for the writer, which
//!   hands everything queued to QUIC in one write.
//! - **A bound in bytes.** Senders wait while the queue holds `stream_write_buffer` bytes, so
//!   a peer that stops reading holds at most that much per stream here: a slow subscriber
//!   throttles its subscription, a peer that pipelines requests without reading the answers
//!   stops this side reading its requests. A frame is always taken into an empty queue, so one
//!   frame up to `max_frame_len` may go over the bound.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::ConnInner;
use crate::error::CallError;
use crate::node::memory::Account;
use crate::wire::{
    Event, FrameError, JsonOutput, Message, encode_frame_into, encode_output_frame_into,
};

/// QUIC application error code for a stream ended because of a protocol violation.
pub(super) const STREAM_PROTOCOL_ERROR: u32 = 1;
/// QUIC application error code for a stream ended because a frame on it went over a resource
/// limit (no room in the frame budgets in time, or too slow to arrive). Retryable.
pub(super) const STREAM_RESOURCE_LIMIT: u32 = 2;

/// The consumer is gone (the stream failed or was reset, the transport closed): the frame was
/// not sent.
#[derive(Debug)]
pub(super) struct Closed;

/// The frames waiting to be written on one stream, shared by its senders and its consumer.
struct FrameQueue {
    state: Mutex<QueueState>,
    /// Signalled when queued bytes were taken out, or the queue closed.
    space: Notify,
    /// Bytes queued before senders wait.
    limit: usize,
    /// Live [`FrameSender`]s; at zero the consumer finishes once the queue is empty. Counted
    /// outside the lock: every call clones a sender for its abort guard.
    senders: AtomicUsize,
    /// Operations in flight on the connection, shared by all its streams.
    in_flight: InFlight,
    /// The peer ended the stream with [`STREAM_RESOURCE_LIMIT`]: it refused a frame this side
    /// sent. Set by the writer (its write was stopped) or the reader (its read was reset).
    refused_by_peer: std::sync::atomic::AtomicBool,
    /// The connection's account in the node's memory budget: queued bytes are charged to it.
    account: Arc<Account>,
}

/// The number of operations in flight on one connection (see [`FrameSender::for_operation`]).
pub(super) type InFlight = Arc<AtomicUsize>;

struct QueueState {
    frames: VecDeque<Bytes>,
    /// Bytes in `frames`.
    queued: usize,
    /// The QUIC stream, written in place by senders and by the writer task; `None` on a
    /// message link (its transport takes the frames) and once the writer task has let go.
    send: Option<quinn::SendStream>,
    /// The consumer, when it waits for frames.
    consumer: Option<Waker>,
    /// Nothing more will be taken: senders get [`Closed`].
    closed: bool,
}

impl FrameQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().expect("frame queue lock")
    }

    /// Marks the queue closed and drops what it holds; wakes everyone waiting.
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.frames.clear();
        self.account.release(std::mem::take(&mut state.queued));
        let consumer = state.consumer.take();
        drop(state);
        self.space.notify_waiters();
        if let Some(consumer) = consumer {
            consumer.wake();
        }
    }
}

impl QueueState {
    fn push(&mut self, frame: Bytes) -> Option<Waker> {
        self.queued += frame.len();
        self.frames.push_back(frame);
        self.consumer.take()
    }

    /// Writes `frame` into the QUIC stream now, if nothing is queued ahead of it and QUIC
    /// takes it without waiting; returns what is left to queue.
    fn write_in_place(&mut self, frame: Bytes, busy: bool) -> Option<Bytes> {
        if !self.frames.is_empty() || busy {
            return Some(frame);
        }
        let Some(send) = self.send.as_mut() else {
            return Some(frame);
        };
        let mut chunks = [frame];
        // `write_chunks` is cancel-safe and does its work on the first poll: polled once with
        // a waker that does nothing, it writes what flow control allows right now. When it
        // could not write everything the rest is queued and the writer task, woken, polls
        // again with its own waker, so QUIC's wake-up goes to the task that waits for it.
        let polled =
            pin!(send.write_chunks(&mut chunks)).poll(&mut Context::from_waker(Waker::noop()));
        match polled {
            Poll::Ready(Ok(_)) if chunks[0].is_empty() => None,
            // Part written (the chunk now holds the rest), blocked, or failed: the writer
            // task finds out which and acts on it.
            _ => Some(std::mem::take(&mut chunks[0])),
        }
    }
}

/// A handle for putting frames on a stream. The consumer finishes the stream once every
/// sender is gone and the queue is empty.
pub(super) struct FrameSender {
    queue: Arc<FrameQueue>,
    /// Counted in the connection's operations in flight.
    operation: bool,
}

impl FrameSender {
    /// Sends `frame`: written in place when nothing is ahead of it, else queued. Waits while
    /// the queue is full.
    pub async fn send(&self, frame: Bytes) -> Result<(), Closed> {
        if frame.is_empty() {
            return Ok(());
        }
        let mut frame = Some(frame);
        loop {
            let space = self.queue.space.notified();
            let mut space = pin!(space);
            {
                let state = self.queue.lock();
                if state.closed {
                    return Err(Closed);
                }
                let len = frame.as_ref().map_or(0, Bytes::len);
                if state.queued == 0 || state.queued + len <= self.queue.limit {
                    self.accept(state, frame.take().expect("a frame to send"));
                    return Ok(());
                }
                // Registered before the lock is released, so a wake-up in between is kept.
                space.as_mut().enable();
            }
            space.await;
        }
    }

    /// Sends `frame` if the queue has room now; gives it back if the sender would have to
    /// wait (or the queue is closed: [`FrameSender::send`] then says so).
    pub fn try_send(&self, frame: Bytes) -> Result<(), Bytes> {
        let state = self.queue.lock();
        if state.closed || !(state.queued == 0 || state.queued + frame.len() <= self.queue.limit) {
            return Err(frame);
        }
        self.accept(state, frame);
        Ok(())
    }

    /// Sends a small control frame (`call.aborted`) without waiting, past the bound if the
    /// queue is full: a destructor must not block, and what it sends is tiny.
    pub fn send_now(&self, frame: Bytes) -> Result<(), Closed> {
        let state = self.queue.lock();
        if state.closed {
            return Err(Closed);
        }
        self.accept(state, frame);
        Ok(())
    }

    /// Writes `frame` in place or queues it (see `QueueState::write_in_place`), then wakes the
    /// consumer, outside the lock, if it waits for what was queued.
    fn accept(&self, mut state: MutexGuard<'_, QueueState>, frame: Bytes) {
        let consumer = match state.write_in_place(frame, self.busy()) {
            None => None,
            Some(rest) => {
                self.queue.account.charge(rest.len());
                state.push(rest)
            }
        };
        drop(state);
        if let Some(consumer) = consumer {
            consumer.wake();
        }
    }

    /// Whether frames from other operations are likely to follow this one soon: more than one
    /// operation is in flight on the connection. Their frames are better queued and written
    /// together than each in place: one QUIC write and one wake-up of the connection for all
    /// of them, and fewer packets. A lone operation (sequential calls) writes in place.
    fn busy(&self) -> bool {
        self.queue.in_flight.load(Ordering::Relaxed) > 1
    }

    /// A sender that counts one operation in flight on the connection (a call waiting for its
    /// answer, a request running) while it lives; see [`FrameSender::busy`].
    pub fn for_operation(&self) -> FrameSender {
        self.queue.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut sender = self.clone();
        sender.operation = true;
        sender
    }

    /// Whether the consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }

    /// A reference that does not keep the stream open.
    pub fn downgrade(&self) -> WeakFrameSender {
        WeakFrameSender {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl Clone for FrameSender {
    fn clone(&self) -> Self {
        self.queue.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            queue: Arc::clone(&self.queue),
            operation: false,
        }
    }
}

impl Drop for FrameSender {
    fn drop(&mut self) {
        if self.operation {
            self.queue.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if self.queue.senders.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The last one: the consumer checks the count under the lock before it waits, so
        // taking its waker under the lock cannot miss it.
        let consumer = self.queue.lock().consumer.take();
        if let Some(consumer) = consumer {
            consumer.wake();
        }
    }
}

/// A [`FrameSender`] that does not count as one: it gives a sender only while another exists.
pub(super) struct WeakFrameSender {
    queue: Arc<FrameQueue>,
}

impl WeakFrameSender {
    pub fn upgrade(&self) -> Option<FrameSender> {
        let mut senders = self.queue.senders.load(Ordering::Acquire);
        loop {
            if senders == 0 {
                return None;
            }
            match self.queue.senders.compare_exchange_weak(
                senders,
                senders + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => senders = now,
            }
        }
        Some(FrameSender {
            queue: Arc::clone(&self.queue),
            operation: false,
        })
    }
}

/// The sending half of a stream, as callers see it.
#[derive(Clone)]
pub(super) struct StreamHandle {
    pub key: u64,
    pub tx: FrameSender,
    /// Cancelled when the reader ended: nothing more can arrive on this stream.
    pub reader_done: CancellationToken,
}

/// How a stream's reader reaches the stream's senders, to answer requests that arrive on it.
pub(super) enum WriterRef {
    /// For streams the peer opened: the reader keeps them open until the peer finishes.
    Strong(FrameSender),
    /// For streams this side opened: their owner keeps them open; once it lets go (a
    /// subscription ends, a call-stream slot is replaced) the writer finishes the stream.
    Weak(WeakFrameSender),
}

impl WriterRef {
    pub fn get(&self) -> Option<FrameSender> {
        match self {
            WriterRef::Strong(tx) => Some(tx.clone()),
            WriterRef::Weak(tx) => tx.upgrade(),
        }
    }

    fn queue(&self) -> &FrameQueue {
        match self {
            WriterRef::Strong(tx) => &tx.queue,
            WriterRef::Weak(tx) => &tx.queue,
        }
    }

    /// Records that the peer refused a frame this side sent on the stream (see
    /// [`STREAM_RESOURCE_LIMIT`]).
    pub fn set_refused_by_peer(&self) {
        self.queue().refused_by_peer.store(true, Ordering::Relaxed);
    }

    /// Whether the peer ended the stream because it refused a frame this side sent.
    pub fn refused_by_peer(&self) -> bool {
        self.queue().refused_by_peer.load(Ordering::Relaxed)
    }

    /// Ends the stream's sending side at once with `code`: nothing queued goes out.
    pub fn reset(&self, code: u32) {
        let queue = self.queue();
        let send = queue.lock().send.take();
        if let Some(mut send) = send {
            let _ = send.reset(code.into());
        }
        queue.close();
    }
}

/// The consumer's side of a queue: the QUIC writer task ([`write_frames`]), or a message
/// link's transport taking the frames out.
pub(super) struct FrameReceiver {
    queue: Arc<FrameQueue>,
}

/// A queue for a stream: the first sender and the consumer's side. `send` is the QUIC stream
/// the senders may write in place (see [`write_frames`]); `None` for a message link.
pub(super) fn frame_queue(
    limit: usize,
    send: Option<quinn::SendStream>,
    in_flight: InFlight,
    account: Arc<Account>,
) -> (FrameSender, FrameReceiver) {
    let queue = Arc::new(FrameQueue {
        state: Mutex::new(QueueState {
            frames: VecDeque::new(),
            queued: 0,
            send,
            consumer: None,
            closed: false,
        }),
        space: Notify::new(),
        limit: limit.max(1),
        senders: AtomicUsize::new(1),
        in_flight,
        refused_by_peer: std::sync::atomic::AtomicBool::new(false),
        account,
    });
    (
        FrameSender {
            queue: Arc::clone(&queue),
            operation: false,
        },
        FrameReceiver { queue },
    )
}

impl FrameReceiver {
    /// The next queued frame; waits for one; `None` once every sender is gone and the queue
    /// is empty (or it was closed).
    pub async fn recv(&mut self) -> Option<Bytes> {
        poll_fn(|cx| {
            let mut state = self.queue.lock();
            if let Some(frame) = self.take(&mut state) {
                return Poll::Ready(Some(frame));
            }
            if self.queue.senders.load(Ordering::Acquire) == 0 || state.closed {
                return Poll::Ready(None);
            }
            state.consumer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// A frame that is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let mut state = self.queue.lock();
        self.take(&mut state)
    }

    fn take(&self, state: &mut QueueState) -> Option<Bytes> {
        let frame = state.frames.pop_front()?;
        state.queued -= frame.len();
        self.queue.account.release(frame.len());
        self.queue.space.notify_waiters();
        Some(frame)
    }
}

impl Drop for FrameReceiver {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// What ended a stream's writer task.
enum WriterEnd {
    /// Every sender let go and everything queued was handed to QUIC.
    Finished,
    /// QUIC refused a write (the peer stopped the stream, the connection is gone).
    Failed,
}

/// The writer task of a QUIC stream: writes what senders could not write in place, coalescing
/// everything queued into one QUIC write. Ends when every sender is gone and all is written
/// (the stream is finished), or at once when the stream is cancelled (it is reset).
pub(super) async fn write_frames(queue: FrameReceiver, token: CancellationToken) {
    let shared = Arc::clone(&queue.queue);
    let end = tokio::select! {
        biased;
        _ = token.cancelled() => None,
        end = drain(&shared) => Some(end),
    };
    let send = shared.lock().send.take();
    // Senders waiting for room, or coming later, learn that nothing more goes out.
    drop(queue);
    let Some(mut send) = send else {
        return;
    };
    match end {
        Some(WriterEnd::Finished) => {
            let _ = send.finish();
            // Wait until the peer has the tail, so a graceful close does not cut it off.
            let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
        }
        Some(WriterEnd::Failed) => token.cancel(),
        None => {
            let _ = send.reset(STREAM_PROTOCOL_ERROR.into());
        }
    }
}

async fn drain(queue: &FrameQueue) -> WriterEnd {
    loop {
        if let Some(end) = poll_fn(|cx| poll_frames_queued(queue, cx)).await {
            return end;
        }
        // Frames are queued when the connection is busy (see `FrameSender::busy`): let the
        // tasks that are about to send run first, so one QUIC write (and one wake-up of the connection)
        // carries all their frames.
        tokio::task::yield_now().await;
        if let Err(end) = poll_fn(|cx| poll_write_queued(queue, cx)).await {
            return end;
        }
    }
}

/// Ready with `None` once frames are queued, with the end once every sender is gone and
/// nothing is queued.
fn poll_frames_queued(queue: &FrameQueue, cx: &mut Context<'_>) -> Poll<Option<WriterEnd>> {
    let mut state = queue.lock();
    if !state.frames.is_empty() {
        return Poll::Ready(None);
    }
    if state.closed || queue.senders.load(Ordering::Acquire) == 0 {
        return Poll::Ready(Some(WriterEnd::Finished));
    }
    state.consumer = Some(cx.waker().clone());
    Poll::Pending
}

/// Hands everything queued to QUIC, as fast as flow control allows; ready once the queue is
/// empty.
fn poll_write_queued(queue: &FrameQueue, cx: &mut Context<'_>) -> Poll<Result<(), WriterEnd>> {
    let mut state = queue.lock();
    loop {
        if state.frames.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let QueueState { frames, send, .. } = &mut *state;
        let Some(send) = send.as_mut() else {
            return Poll::Ready(Err(WriterEnd::Failed));
        };
        let chunks = frames.make_contiguous();
        let polled = pin!(send.write_chunks(chunks)).poll(cx);
        match polled {
            Poll::Ready(Ok(written)) => {
                frames.drain(..written.chunks);
                state.queued -= written.bytes;
                queue.account.release(written.bytes);
                queue.space.notify_waiters();
            }
            Poll::Ready(Err(error)) => {
                debug!(%error, "stream write failed");
                if matches!(error, quinn::WriteError::Stopped(code)
                    if code.into_inner() == u64::from(STREAM_RESOURCE_LIMIT))
                {
                    queue.refused_by_peer.store(true, Ordering::Relaxed);
                }
                return Poll::Ready(Err(WriterEnd::Failed));
            }
            // QUIC wakes this task when the stream can take more.
            Poll::Pending => return Poll::Pending,
        }
    }
}

impl ConnInner {
    /// Appends `message` to `out` as a frame; an answer that cannot be sent becomes an
    /// `INTERNAL` error for its id instead.
    pub(super) fn encode_answer(&self, out: &mut BytesMut, message: Message) {
        if let Err(error) = encode_frame_into(&message, out, self.config().max_frame_len) {
            encode_unsendable(out, &message.id, &error);
        }
    }

    /// Appends the answer to request `id` to `out`: its output or its error, as
    /// [`ConnInner::encode_answer`] does.
    pub(super) fn encode_outcome(
        &self,
        out: &mut BytesMut,
        id: &str,
        outcome: Result<JsonOutput, CallError>,
    ) {
        match outcome {
            Ok(output) => {
                let max = self.config().max_frame_len;
                if let Err(error) = encode_output_frame_into(id, &output, out, max) {
                    encode_unsendable(out, id, &error);
                }
            }
            Err(error) => self.encode_answer(out, Message::new(id, Event::Error(error))),
        }
    }

    /// Sends the answer to request `id`; `Err` when the stream is gone.
    pub(super) async fn send_outcome(
        &self,
        tx: &FrameSender,
        id: &str,
        outcome: Result<JsonOutput, CallError>,
    ) -> Result<(), ()> {
        let mut out = BytesMut::new();
        self.encode_outcome(&mut out, id, outcome);
        tx.send(out.freeze()).await.map_err(|_| ())
    }
}

/// Appends, instead of an answer that cannot be sent (over the frame limit, or an output that
/// cannot be serialized), an `INTERNAL` error for its id.
pub(super) fn encode_unsendable(out: &mut BytesMut, id: &str, error: &FrameError) {
    let error = match error {
        FrameError::Unserializable(_) => CallError::internal(error.to_string()),
        _ => CallError::internal(format!("the answer is too large to send: {error}")),
    };
    encode_frame_into(&Message::new(id, Event::Error(error)), out, u32::MAX)
        .expect("an error frame is small");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::{InFlight, frame_queue};
    use crate::node::memory::{Account, MemoryBudget};

    fn unbounded() -> std::sync::Arc<Account> {
        MemoryBudget::new(usize::MAX).open()
    }

    #[tokio::test]
    async fn senders_wait_for_room_and_the_last_one_ends_the_queue() {
        let (tx, mut rx) = frame_queue(10, None, InFlight::default(), unbounded());
        // An empty queue takes any frame; a full one makes the next sender wait.
        tx.send(Bytes::from_static(b"0123456789ab")).await.unwrap();
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), tx.send(Bytes::from_static(b"x")));
        assert!(waiting.await.is_err(), "a full queue makes senders wait");
        let second = tx.clone();
        let sent = tokio::spawn(async move { second.send(Bytes::from_static(b"cd")).await });
        assert_eq!(
            rx.recv().await.unwrap(),
            Bytes::from_static(b"0123456789ab")
        );
        sent.await.unwrap().unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"cd"));

        // A weak reference gives a sender only while one exists.
        let weak = tx.downgrade();
        assert!(weak.upgrade().is_some());
        drop(tx);
        assert!(weak.upgrade().is_none());
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_frames_and_wakes_waiting_senders() {
        let (tx, rx) = frame_queue(4, None, InFlight::default(), unbounded());
        tx.send(Bytes::from_static(b"full")).await.unwrap();
        let waiting = tx.clone();
        let blocked = tokio::spawn(async move { waiting.send(Bytes::from_static(b"more")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert!(blocked.await.unwrap().is_err());
        assert!(tx.is_closed());
        assert!(tx.send_now(Bytes::from_static(b"abort")).is_err());
    }
}
