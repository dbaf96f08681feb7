//! A subscription as a Server-Sent Events body.
//!
//! Items become `data:` events with increasing `id:`s. The end is an event too, so a browser can
//! tell it from a dropped connection: `event: completed` after the last item, or `event: error`
//! with the `call.error`; both carry `id: end`, and an `EventSource` that reconnects after them
//! is answered 204 and stops (see `routes`). An `EventSource` whose connection dropped sends the
//! last numeric id it saw: a resumable subscription goes on after it, numbering on from there.
//!
//! Written here rather than with axum's `Sse` so that items that are ready together go out as
//! one body chunk (up to [`BATCH_BYTES`]): one write and one wake-up of the client per batch
//! instead of per item. An idle stream sends a comment line every [`KEEP_ALIVE`] so proxies do
//! not time it out.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::DropGuard;

use crate::error::CallError;
use crate::node::dispatch::GuardedStream;
use crate::wire::JsonOutput;

/// The `id:` of the last event of a stream that ended (`completed` or `error`).
pub(super) const END_ID: &str = "end";

/// Events gathered into one body chunk at most (one more event may go over).
const BATCH_BYTES: usize = 64 * 1024;

/// Quiet time after which a comment line is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The response for a running subscription, its first item numbered `first_id` (1, or one past
/// the resume point). Dropping it (the client went away) cancels the subscription through
/// `guard`.
pub(super) fn response(items: GuardedStream, guard: DropGuard, first_id: u64) -> Response {
    let events = SseEvents {
        items,
        next_id: first_id,
        ended: false,
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        _guard: guard,
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

struct SseEvents {
    items: GuardedStream,
    next_id: u64,
    /// The end event was written: nothing more follows.
    ended: bool,
    keep_alive: Pin<Box<Sleep>>,
    _guard: DropGuard,
}

impl SseEvents {
    /// Appends the event for one item, or for the end (`None`). JSON is written compact, so it
    /// never holds a newline and fits on one `data:` line.
    fn write_event(&mut self, out: &mut BytesMut, item: Option<Result<JsonOutput, CallError>>) {
        let error = match item {
            Some(Ok(output)) => {
                let start = out.len();
                out.put_slice(b"id: ");
                out.put_slice(itoa::Buffer::new().format(self.next_id).as_bytes());
                out.put_slice(b"\ndata: ");
                match output.write_to(&mut out.writer()) {
                    Ok(()) => {
                        self.next_id += 1;
                        out.put_slice(b"\n\n");
                        return;
                    }
                    Err(error) => {
                        // Nothing of it is sent: the subscription ends with the error instead.
                        out.truncate(start);
                        CallError::internal(format!("the output could not be serialized: {error}"))
                    }
                }
            }
            Some(Err(error)) => error,
            None => {
                self.ended = true;
                out.put_slice(b"event: completed\nid: ");
                out.put_slice(END_ID.as_bytes());
                out.put_slice(b"\ndata: {}\n\n");
                return;
            }
        };
        self.ended = true;
        out.put_slice(b"event: error\nid: ");
        out.put_slice(END_ID.as_bytes());
        out.put_slice(b"\ndata: ");
        // A `CallError` is strings and JSON values: writing it into memory cannot fail.
        let _ = serde_json::to_writer(out.writer(), &error);
        out.put_slice(b"\n\n");
    }
}

impl Stream for SseEvents {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let mut out = BytesMut::new();
        while !this.ended && out.len() < BATCH_BYTES {
            match this.items.poll_next_unpin(cx) {
                Poll::Ready(item) => this.write_event(&mut out, item),
                Poll::Pending => break,
            }
        }
        if !out.is_empty() {
            this.keep_alive.as_mut().reset(Instant::now() + KEEP_ALIVE);
            return Poll::Ready(Some(Ok(out.freeze())));
        }
        if this.keep_alive.as_mut().poll(cx).is_ready() {
            this.keep_alive.as_mut().reset(Instant::now() + KEEP_ALIVE);
            return Poll::Ready(Some(Ok(Bytes::from_static(b":\n\n"))));
        }
        Poll::Pending
    }
}
