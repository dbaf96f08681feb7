//! Reading envelopes: from each QUIC stream, or from a message link, and handling each —
//! requests go to the serving side, answers to the calling side.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::ConnInner;
use super::incoming::ITEM_BATCH_BYTES;
use super::link::{Link, LinkMessage, MESSAGE_STREAM_KEY};
use super::writer::{FrameSender, STREAM_PROTOCOL_ERROR, STREAM_RESOURCE_LIMIT, WriterRef};
use crate::error::CallError;
use crate::wire::{
    DecodeError, Event, FrameError, FrameReader, Message, Received, ReceivedEvent, event_type,
};

impl ConnInner {
    /// Reads the peer's messages on a message link until it ends, handling each as
    /// [`ConnInner::read_frames`] does for a QUIC stream.
    pub(super) async fn read_messages(
        self: Arc<Self>,
        mut incoming: BoxStream<'static, LinkMessage>,
        tx: FrameSender,
    ) {
        let Link::Messages(link) = &self.link else {
            return;
        };
        let writer = WriterRef::Strong(tx);
        let token = self.cancel.child_token();
        let mut out = BytesMut::new();
        let mut shutting_down = false;
        let violation = loop {
            let next = tokio::select! {
                biased;
                next = incoming.next() => next,
                _ = link.closing.cancelled() => break None,
                _ = self.account.evicted().cancelled() => {
                    break Some("over the node's memory budget".to_owned());
                }
                _ = self.shutdown.cancelled() => {
                    shutting_down = true;
                    break None;
                }
            };
            let body = match next {
                None => break None,
                Some(LinkMessage::Violation(problem)) => break Some(problem),
                Some(LinkMessage::Envelope(body)) => body,
            };
            if let Err(problem) = self
                .handle_body(&body, MESSAGE_STREAM_KEY, &writer, &token, &mut out)
                .await
            {
                break Some(format!("not an envelope: {problem}"));
            }
            if !out.is_empty() {
                if let Some(tx) = writer.get() {
                    let _ = tx.send(out.split().freeze()).await;
                }
            }
        };
        if shutting_down {
            // Stop reading, but let what is running answer (subscriptions end at once with
            // "server shutting down"), until the grace period is over.
            let hard_stop = self.hard_stop.cancelled();
            tokio::pin!(hard_stop);
            while !self.incoming.is_idle() {
                tokio::select! {
                    _ = &mut hard_stop => break,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        }
        if let Some(problem) = violation {
            warn!(%problem, "protocol violation: closing the session");
            let _ = link.violation.set(problem);
        }
        link.closing.cancel();
        debug!("connection closed");
        self.connection_ended();
    }

    /// Reads envelopes from one stream until it ends, handling each.
    pub(super) async fn read_frames(
        self: Arc<Self>,
        recv: quinn::RecvStream,
        key: u64,
        writer: WriterRef,
        token: CancellationToken,
        reader_done: CancellationToken,
    ) {
        // Streams the peer opens exist to carry a request at once.
        let opened_by_peer = matches!(writer, WriterRef::Strong(_));
        let mut reader = self.frame_reader(recv, opened_by_peer);
        let mut shutting_down = false;
        // Answers produced while reading: sent as one chunk once no whole frame is buffered.
        let mut out = BytesMut::new();
        let stream_gone = token.cancelled();
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(stream_gone, shutdown);
        let malformed = loop {
            // Reading first: while frames are buffered, the cancellation futures are not polled.
            let frame = tokio::select! {
                biased;
                frame = reader.next_frame() => frame,
                _ = &mut stream_gone => break None,
                _ = &mut shutdown => {
                    shutting_down = true;
                    break None;
                }
            };
            let body = match frame {
                Ok(Some(body)) => body,
                Ok(None) => break None,
                Err(FrameError::Io(error)) => {
                    debug!(%error, "stream read ended");
                    if ended_for_resources(&error) {
                        writer.set_refused_by_peer();
                    }
                    break None;
                }
                Err(
                    error @ (FrameError::BudgetExhausted { .. }
                    | FrameError::TooSlow { .. }
                    | FrameError::Silent),
                ) => {
                    break Some((error.to_string(), STREAM_RESOURCE_LIMIT));
                }
                Err(error) => break Some((error.to_string(), STREAM_PROTOCOL_ERROR)),
            };
            if let Err(problem) = self
                .handle_body(&body, key, &writer, &token, &mut out)
                .await
            {
                break Some((problem, STREAM_PROTOCOL_ERROR));
            }
            if !out.is_empty() && (!reader.has_buffered_frame() || out.len() >= ITEM_BATCH_BYTES) {
                let chunk = out.split().freeze();
                // No writer left: the stream's owner let go, and nothing can be answered.
                if let Some(tx) = writer.get()
                    && let Err(chunk) = tx.try_send(chunk)
                {
                    // While the answers wait for room they are held here, and this stream
                    // is not read.
                    let _held = self.account.hold(self.unread_cost() + chunk.len());
                    let _ = tx.send(chunk).await;
                }
            }
        };
        reader_done.cancel();
        if let Some((problem, code)) = malformed {
            if code == STREAM_RESOURCE_LIMIT {
                warn!(%problem, "ending the stream: over a resource limit");
            } else {
                warn!(%problem, "malformed frame: ending the stream");
            }
            let mut recv = reader.into_inner();
            let _ = recv.stop(code.into());
            // Both directions end with the same code, so the peer's calls on the stream learn
            // why whichever side it notices first.
            writer.reset(code);
            // Resets the send side and aborts every handler started from this stream.
            token.cancel();
        } else if shutting_down {
            // Dropping an unfinished receive stream tells the peer to stop sending, and its
            // writes would fail, failing calls we are still about to answer. Keep the stream
            // open, unread, until the connection closes.
            let recv = reader.into_inner();
            let closed = self.cancel.clone();
            tokio::spawn(async move {
                closed.cancelled().await;
                drop(recv);
            });
        }
        if writer.refused_by_peer() {
            self.fail_pending_because(
                |p| p.stream_key == key,
                &CallError::internal(
                    "the peer ended the stream: a frame on it was over the peer's memory budget \
                     or arrived too slowly",
                )
                .with_retryable(true),
            );
        } else {
            self.fail_pending(|p| p.stream_key == key);
        }
    }

    /// A QUIC stream reader for this connection: large frames draw on the connection's and the
    /// node's budgets, within the configured wait and arrival time; its buffer is charged to
    /// the connection's account. A stream the peer opened must bring its first frame within
    /// `first_frame_timeout`.
    pub(super) fn frame_reader(
        &self,
        recv: quinn::RecvStream,
        opened_by_peer: bool,
    ) -> FrameReader<quinn::RecvStream> {
        let config = self.config();
        let reader = FrameReader::new(recv, config.max_frame_len)
            .with_budget(Arc::clone(&self.frame_budget))
            .with_budget(Arc::clone(&self.node.frame_budget))
            .with_frame_limits(config.frame_budget_wait, config.frame_timeout)
            .with_account(self.account.clone(), self.unread_cost());
        if opened_by_peer {
            reader.with_first_frame_timeout(config.first_frame_timeout)
        } else {
            reader
        }
    }

    /// Decodes one envelope and handles it. `Err` is a message that is not an envelope at all:
    /// the stream (or session) must end.
    async fn handle_body(
        self: &Arc<Self>,
        body: &Bytes,
        key: u64,
        writer: &WriterRef,
        token: &CancellationToken,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        match Received::decode_request_limited(body, self.config().max_request_values) {
            Ok(message) => self.handle_message(message, key, writer, token, out).await,
            Err(DecodeError::NotEnvelope(error)) => return Err(error.to_string()),
            Err(DecodeError::UnknownType { id, event_type }) => {
                debug!(%id, %event_type, "ignoring unknown event type");
            }
            Err(DecodeError::BadPayload {
                id,
                event_type,
                reason,
            }) => self.handle_bad_payload(id, event_type, reason, out).await,
        }
        Ok(())
    }

    async fn handle_message(
        self: &Arc<Self>,
        message: Received,
        key: u64,
        writer: &WriterRef,
        token: &CancellationToken,
        out: &mut BytesMut,
    ) {
        let Received { id, event } = message;
        match event {
            ReceivedEvent::Requested(request) => {
                // Requests on a stream whose writer is gone cannot be answered: drop them.
                if let Some(tx) = writer.get() {
                    self.start_request(id, request, &tx, token, out).await;
                }
            }
            ReceivedEvent::Aborted => self.incoming.abort(&id),
            ReceivedEvent::Output(output) => self.deliver(&id, key, Ok(output), false).await,
            ReceivedEvent::Outputs(items) => {
                for item in items {
                    self.deliver(&id, key, Ok(item), false).await;
                }
            }
            ReceivedEvent::Error(error) => self.deliver(&id, key, Err(error), true).await,
            ReceivedEvent::Completed => self.complete(&id).await,
        }
    }

    /// A request with a malformed payload is answered; a malformed answer fails its call.
    async fn handle_bad_payload(
        self: &Arc<Self>,
        id: String,
        event: &'static str,
        reason: String,
        out: &mut BytesMut,
    ) {
        let problem = format!("malformed `{event}` payload: {reason}");
        if event == event_type::REQUESTED {
            let error = CallError::invalid_input(problem, "");
            self.encode_answer(out, Message::new(id, Event::Error(error)));
        } else {
            self.fail_one(&id, CallError::internal(problem)).await;
        }
    }
}

/// Whether a read failed because the peer reset the stream with the resource-limit code: it
/// refused a frame this side sent (over its budget, or too slow).
pub(super) fn ended_for_resources(error: &std::io::Error) -> bool {
    matches!(
        error.get_ref().and_then(|e| e.downcast_ref::<quinn::ReadError>()),
        Some(quinn::ReadError::Reset(code)) if code.into_inner() == u64::from(STREAM_RESOURCE_LIMIT)
    )
}
