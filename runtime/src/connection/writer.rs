//! Writing frames to a stream: one writer task per stream drains a bounded queue of encoded
//! frames and hands everything queued to QUIC in one write, so answers that pile up (a busy
//! subscription, many pipelined calls) are coalesced instead of paying a write each.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::ConnInner;
use crate::error::CallError;
use crate::wire::{Event, Message, encode_frame_into};

/// Frames queued per stream before writers wait.
pub(super) const WRITE_QUEUE: usize = 1024;
/// Frames handed to QUIC in one write at most.
const WRITE_BATCH: usize = 256;
/// QUIC application error code for a stream ended because of a protocol violation.
pub(super) const STREAM_PROTOCOL_ERROR: u32 = 1;

/// The sending half of a stream, as callers see it.
#[derive(Clone)]
pub(super) struct StreamHandle {
    pub key: u64,
    pub tx: mpsc::Sender<Bytes>,
    /// Cancelled when the reader ended: nothing more can arrive on this stream.
    pub reader_done: CancellationToken,
}

/// How a stream's reader reaches the stream's writer, to answer requests that arrive on it.
pub(super) enum WriterRef {
    /// For streams the peer opened: the reader keeps them open until the peer finishes.
    Strong(mpsc::Sender<Bytes>),
    /// For streams this side opened: their owner keeps them open; once it lets go (a
    /// subscription ends, a call-stream slot is replaced) the writer finishes the stream.
    Weak(mpsc::WeakSender<Bytes>),
}

impl WriterRef {
    pub fn get(&self) -> Option<mpsc::Sender<Bytes>> {
        match self {
            WriterRef::Strong(tx) => Some(tx.clone()),
            WriterRef::Weak(tx) => tx.upgrade(),
        }
    }
}

/// Writes queued frames to a stream, coalescing whatever is queued into one QUIC write. Ends
/// when every sender is gone (all answers written), or at once when the stream is cancelled.
pub(super) async fn write_frames(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Bytes>,
    token: CancellationToken,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    loop {
        if token.is_cancelled() {
            let _ = send.reset(STREAM_PROTOCOL_ERROR.into());
            return;
        }
        let received = tokio::select! {
            biased;
            received = rx.recv_many(&mut batch, WRITE_BATCH) => received,
            _ = &mut cancelled => {
                let _ = send.reset(STREAM_PROTOCOL_ERROR.into());
                return;
            }
        };
        if received == 0 {
            break;
        }
        if batch.len() < WRITE_BATCH {
            // Let tasks that are already runnable (other callers, other handlers) queue their
            // frames first, so one QUIC write — and one datagram — carries many of them. When
            // nothing else is runnable this returns at once.
            tokio::task::yield_now().await;
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(frame) => batch.push(frame),
                    Err(_) => break,
                }
            }
        }
        if let Err(error) = send.write_all_chunks(&mut batch).await {
            debug!(%error, "stream write failed");
            token.cancel();
            return;
        }
        batch.clear();
    }
    let _ = send.finish();
    // Wait until the peer has the tail, so a graceful close does not cut it off.
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
}

impl ConnInner {
    /// Appends `message` to `out` as a frame; an answer over the frame limit becomes an
    /// `INTERNAL` error for its id instead.
    pub(super) fn encode_answer(&self, out: &mut BytesMut, message: Message) {
        if let Err(error) = encode_frame_into(&message, out, self.config().max_frame_len) {
            let error = CallError::internal(format!("the answer is too large to send: {error}"));
            encode_frame_into(
                &Message::new(message.id, Event::Error(error)),
                out,
                u32::MAX,
            )
            .expect("an error frame is small");
        }
    }

    pub(super) async fn send_message(
        &self,
        tx: &mpsc::Sender<Bytes>,
        message: Message,
    ) -> Result<(), ()> {
        let mut out = BytesMut::new();
        self.encode_answer(&mut out, message);
        tx.send(out.freeze()).await.map_err(|_| ())
    }
}
