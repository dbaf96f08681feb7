//! The alknet call protocol on the wire (design §4.1–§4.2).
//!
//! Every message is one [`EventEnvelope`] — `{"type", "id", "payload"}` — framed as a 4-byte
//! big-endian length followed by that many bytes of UTF-8 JSON. [`Message`] is the typed form the
//! runtime works with; [`FrameReader`] and [`encode_frame`] move it on and off a byte stream.
//!
//! Limits are enforced before allocation: a zero length or a length above the configured maximum
//! ([`DEFAULT_MAX_FRAME_LEN`] unless configured) is refused after reading only the 4-byte prefix.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::CallError;

/// Default largest frame body accepted or sent: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// The `type` strings of the five events.
pub mod event_type {
    /// A caller asks for an operation.
    pub const REQUESTED: &str = "call.requested";
    /// One output (the only one for query/mutation; one item for a subscription).
    pub const RESPONDED: &str = "call.responded";
    /// A subscription ended naturally.
    pub const COMPLETED: &str = "call.completed";
    /// Cancel the request with this id.
    pub const ABORTED: &str = "call.aborted";
    /// The request failed; nothing follows.
    pub const ERROR: &str = "call.error";
}

/// The untyped envelope exactly as it appears on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// One of [`event_type`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// Correlates a request with its answers.
    pub id: String,
    /// Event-specific content.
    #[serde(default)]
    pub payload: Value,
}

/// The payload of `call.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRequested {
    /// The operation, with a leading `/` (`/math/add`); the bare registry form is accepted too.
    #[serde(rename = "operationId")]
    pub operation_id: String,
    /// The input; `null` when absent.
    #[serde(default)]
    pub input: Value,
    /// A token that, when it resolves, replaces the connection's identity for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Relative deadline; the callee uses `min(timeout_ms, its own default)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// alknet extension: whether the caller expects a stream (`true`: subscription) or a single
    /// answer (`false`: query/mutation). Absent: the operation's own kind decides. A mismatch is
    /// answered with `INVALID_OPERATION_TYPE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// alknet extension: the caller of a subscription accepts several items in one
    /// `call.responded` (`payload.outputs`, an array) besides one (`payload.output`). Absent or
    /// `false`: one item per frame, as every peer understands.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub item_batches: bool,
    /// alknet extension: resume a resumable subscription after this item (items are numbered
    /// from 1 in the order the stream sent them). Older peers ignore it; an operation that is
    /// not resumable answers `INVALID_INPUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<u64>,
}

/// A typed event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `call.requested`.
    Requested(CallRequested),
    /// `call.responded` with its output.
    Responded(Value),
    /// `call.responded` carrying several subscription items (`payload.outputs`), sent only to
    /// callers that asked with [`CallRequested::item_batches`].
    RespondedItems(Vec<Value>),
    /// `call.completed`.
    Completed,
    /// `call.aborted`.
    Aborted,
    /// `call.error`.
    Error(CallError),
}

impl Event {
    /// The wire `type` of this event.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Requested(_) => event_type::REQUESTED,
            Event::Responded(_) | Event::RespondedItems(_) => event_type::RESPONDED,
            Event::Completed => event_type::COMPLETED,
            Event::Aborted => event_type::ABORTED,
            Event::Error(_) => event_type::ERROR,
        }
    }
}

/// One typed envelope: an id and its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The request id this message belongs to.
    pub id: String,
    /// What happened.
    pub event: Event,
}

/// Why a frame could not be read. Every variant ends the stream it happened on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A length prefix of zero.
    #[error("zero-length frame")]
    ZeroLength,
    /// A length prefix above the limit; the body was not read.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The configured limit.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The underlying stream failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// An output to send could not be serialized as JSON.
    #[error("the output could not be serialized: {0}")]
    Unserializable(String),
    /// A large frame could not get room in the memory budget for frames being read in time.
    #[error("a frame of {len} bytes found no room in the memory budget for large frames")]
    BudgetExhausted {
        /// The announced length.
        len: u32,
    },
    /// A frame did not arrive in time once it began (a large one: once its budget was
    /// granted).
    #[error("a frame of {len} bytes arrived too slowly")]
    TooSlow {
        /// The announced length.
        len: u32,
    },
    /// A stream that had to bring its first frame soon brought none in time.
    #[error("no frame arrived on the stream in time")]
    Silent,
}

/// Why a frame body is not a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON that is not an envelope (`type` and `id` strings).
    #[error("not an event envelope: {0}")]
    NotEnvelope(#[from] serde_json::Error),
    /// A known event type whose payload has the wrong shape. The id is known, so the request
    /// can be answered with an error instead of ending the stream.
    #[error("malformed `{event_type}` payload: {reason}")]
    BadPayload {
        /// The envelope id.
        id: String,
        /// The event type.
        event_type: &'static str,
        /// What serde said.
        reason: String,
    },
    /// A well-formed envelope of an event type this runtime does not know.
    #[error("unknown event type `{event_type}`")]
    UnknownType {
        /// The envelope id.
        id: String,
        /// The type it carried.
        event_type: String,
    },
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RespondedPayload {
    #[serde(default)]
    output: Value,
    #[serde(default)]
    outputs: Option<Vec<Value>>,
}

#[derive(Serialize)]
struct EnvelopeOut<'a, P> {
    #[serde(rename = "type")]
    event_type: &'static str,
    id: &'a str,
    payload: P,
}

#[derive(Serialize)]
struct OutputPayload<'a> {
    output: &'a Value,
}

#[derive(Serialize)]
struct OutputsPayload<'a> {
    outputs: &'a [Value],
}

#[derive(Serialize)]
struct EmptyPayload {}

/// An operation's output, ready to be written as JSON: a [`Value`], or a typed handler's output
/// itself, serialized straight into the frame that carries it — so a typed output is never
/// built as a `Value` only to be written out again.
pub enum JsonOutput {
    /// A JSON value (handlers over `Value`, and outputs that were parsed).
    Value(Value),
    /// A typed output, serialized when it is written.
    Typed(Box<dyn WriteJson>),
}

impl JsonOutput {
    /// A typed output, serialized when it is written.
    pub fn typed<T: Serialize + Send + 'static>(output: T) -> JsonOutput {
        JsonOutput::Typed(Box::new(output))
    }

    /// Appends the output's JSON to `out`. Fails only for a typed output serde cannot
    /// represent as JSON (a map with non-string keys, a failing `Serialize` impl).
    pub fn write_to(&self, out: &mut impl std::io::Write) -> serde_json::Result<()> {
        match self {
            JsonOutput::Value(value) => serde_json::to_writer(out, value),
            JsonOutput::Typed(output) => output.write_json(out),
        }
    }

    /// The output as a [`Value`]; an `INTERNAL` error when a typed output cannot be
    /// serialized.
    pub fn into_value(self) -> Result<Value, CallError> {
        match self {
            JsonOutput::Value(value) => Ok(value),
            JsonOutput::Typed(output) => {
                let mut text = Vec::with_capacity(64);
                output
                    .write_json(&mut text)
                    .and_then(|()| serde_json::from_slice(&text))
                    .map_err(|e| unserializable(&e))
            }
        }
    }

    /// The output's JSON text; an `INTERNAL` error when a typed output cannot be serialized.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, CallError> {
        let mut text = Vec::with_capacity(64);
        self.write_to(&mut text).map_err(|e| unserializable(&e))?;
        Ok(text)
    }
}

fn unserializable(error: &serde_json::Error) -> CallError {
    CallError::internal(format!("the output could not be serialized: {error}"))
}

impl From<Value> for JsonOutput {
    fn from(value: Value) -> Self {
        JsonOutput::Value(value)
    }
}

impl std::fmt::Debug for JsonOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonOutput::Value(value) => f.debug_tuple("Value").field(value).finish(),
            JsonOutput::Typed(_) => f.write_str("Typed(..)"),
        }
    }
}

/// A value that writes itself as JSON: what [`JsonOutput::Typed`] holds. Implemented for every
/// `Serialize` type; object safe, so the output's type can be erased without losing the
/// ability to serialize it straight into a buffer.
pub trait WriteJson: Send {
    /// Appends the value's JSON to `out`.
    fn write_json(&self, out: &mut dyn std::io::Write) -> serde_json::Result<()>;
}

impl<T: Serialize + Send> WriteJson for T {
    fn write_json(&self, out: &mut dyn std::io::Write) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

/// Writes the `call.responded` frames of one request id: the envelope up to the output is
/// built once, so a subscription's items cost only their own JSON.
pub struct OutputFrames {
    /// `{"type":"call.responded","id":<id>,"payload":{"output":`
    prefix: Vec<u8>,
    /// Where `prefix` ends its `id`: up to here it is shared with the batch prefix.
    payload_at: usize,
}

/// An item batch being written by [`OutputFrames::push_item`]: one `call.responded` frame
/// whose payload is `{"outputs": [...]}`.
#[derive(Debug)]
pub struct ItemBatch {
    /// Where the frame's length prefix is in the buffer.
    start: usize,
    /// Items written so far.
    items: usize,
}

impl ItemBatch {
    /// Items in the batch so far.
    pub fn len(&self) -> usize {
        self.items
    }

    /// Whether no item was written yet.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }
}

impl OutputFrames {
    /// The frames of request `id`.
    pub fn new(id: &str) -> Self {
        let mut prefix = Vec::with_capacity(48 + id.len());
        prefix.extend_from_slice(b"{\"type\":\"");
        prefix.extend_from_slice(event_type::RESPONDED.as_bytes());
        prefix.extend_from_slice(b"\",\"id\":");
        serde_json::to_writer(&mut prefix, id).expect("a string serializes");
        let payload_at = prefix.len();
        prefix.extend_from_slice(b",\"payload\":{\"output\":");
        Self { prefix, payload_at }
    }

    /// Appends the frame carrying `output` to `buf`; leaves `buf` as it was when the output
    /// cannot be serialized or its frame would be over `max_len`.
    pub fn encode_into(
        &self,
        output: &JsonOutput,
        buf: &mut BytesMut,
        max_len: u32,
    ) -> Result<(), FrameError> {
        encode_body_into(buf, max_len, |out| {
            out.get_mut().put_slice(&self.prefix);
            output.write_to(out)?;
            out.get_mut().put_slice(b"}}");
            Ok(())
        })
    }

    /// Adds `output` to the item batch being written at the end of `buf`, starting one when
    /// `batch` is `None` (see protocol.md, "Item batches"). Leaves `buf` as it was when the
    /// output cannot be serialized, or when adding it would take the frame over `max_len`
    /// (then finish the batch and put the item in a frame of its own).
    pub fn push_item(
        &self,
        batch: &mut Option<ItemBatch>,
        output: &JsonOutput,
        buf: &mut BytesMut,
        max_len: u32,
    ) -> Result<(), FrameError> {
        let mark = buf.len();
        let open = batch.get_or_insert_with(|| {
            let start = buf.len();
            buf.put_u32(0);
            buf.put_slice(&self.prefix[..self.payload_at]);
            buf.put_slice(b",\"payload\":{\"outputs\":[");
            ItemBatch { start, items: 0 }
        });
        if open.items > 0 {
            buf.put_u8(b',');
        }
        let written = output.write_to(&mut (&mut *buf).writer());
        // The body once closed with `]}}`.
        let body_len = buf.len() + 3 - open.start - 4;
        let refused = match written {
            Err(error) => Some(FrameError::Unserializable(error.to_string())),
            Ok(()) if body_len > max_len as usize => Some(FrameError::TooLarge {
                len: u32::try_from(body_len).unwrap_or(u32::MAX),
                max: max_len,
            }),
            Ok(()) => None,
        };
        match refused {
            None => {
                open.items += 1;
                Ok(())
            }
            Some(error) => {
                if open.items == 0 {
                    buf.truncate(open.start);
                    *batch = None;
                } else {
                    buf.truncate(mark);
                }
                Err(error)
            }
        }
    }

    /// Closes the item batch at the end of `buf`, if one is open.
    pub fn finish_items(&self, batch: &mut Option<ItemBatch>, buf: &mut BytesMut) {
        let Some(open) = batch.take() else {
            return;
        };
        buf.put_slice(b"]}}");
        let body_len = (buf.len() - open.start - 4) as u32;
        buf[open.start..open.start + 4].copy_from_slice(&body_len.to_be_bytes());
    }
}

impl Message {
    /// A message.
    pub fn new(id: impl Into<String>, event: Event) -> Self {
        Self {
            id: id.into(),
            event,
        }
    }

    /// Parses one frame body (the JSON, without its length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let raw: RawEnvelope<'_> = serde_json::from_slice(body)?;
        let payload = raw.payload.map(RawValue::get).unwrap_or("null");
        let id = raw.id.into_owned();
        fn parse<T: for<'de> Deserialize<'de>>(
            id: &str,
            event_type: &'static str,
            payload: &str,
        ) -> Result<T, DecodeError> {
            serde_json::from_str(payload).map_err(|e| DecodeError::BadPayload {
                id: id.to_owned(),
                event_type,
                reason: e.to_string(),
            })
        }
        let event = match raw.event_type.as_ref() {
            event_type::REQUESTED => Event::Requested(parse(&id, event_type::REQUESTED, payload)?),
            event_type::RESPONDED => {
                let p: RespondedPayload = parse(&id, event_type::RESPONDED, payload)?;
                match p.outputs {
                    Some(items) => Event::RespondedItems(items),
                    None => Event::Responded(p.output),
                }
            }
            event_type::COMPLETED => Event::Completed,
            event_type::ABORTED => Event::Aborted,
            event_type::ERROR => Event::Error(parse(&id, event_type::ERROR, payload)?),
            other => {
                return Err(DecodeError::UnknownType {
                    id,
                    event_type: other.to_owned(),
                });
            }
        };
        Ok(Message { id, event })
    }

    /// Writes the JSON body (no length prefix) into `out`.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> serde_json::Result<()> {
        let id = self.id.as_str();
        let event_type = self.event.event_type();
        match &self.event {
            Event::Requested(p) => serde_json::to_writer(
                out,
                &EnvelopeOut {
                    event_type,
                    id,
                    payload: p,
                },
            ),
            Event::Responded(output) => serde_json::to_writer(
                out,
                &EnvelopeOut {
                    event_type,
                    id,
                    payload: OutputPayload { output },
                },
            ),
            Event::RespondedItems(outputs) => serde_json::to_writer(
                out,
                &EnvelopeOut {
                    event_type,
                    id,
                    payload: OutputsPayload { outputs },
                },
            ),
            Event::Completed | Event::Aborted => serde_json::to_writer(
                out,
                &EnvelopeOut {
                    event_type,
                    id,
                    payload: EmptyPayload {},
                },
            ),
            Event::Error(e) => serde_json::to_writer(
                out,
                &EnvelopeOut {
                    event_type,
                    id,
                    payload: e,
                },
            ),
        }
    }

    /// The JSON body as bytes (one WebSocket message, no length prefix).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_json(&mut out)
            .expect("serializing JSON values into memory cannot fail");
        out
    }

    /// The untyped envelope.
    pub fn to_envelope(&self) -> EventEnvelope {
        serde_json::from_slice(&self.to_json_bytes()).expect("a message is always an envelope")
    }
}

/// A message as a connection reads it: like [`Message`], but an answer's output stays JSON text
/// (a slice of the frame, not a copy), so the caller that knows its type parses it once.
#[derive(Debug)]
pub(crate) struct Received {
    /// The request id.
    pub id: String,
    /// What happened.
    pub event: ReceivedEvent,
}

/// The event of a [`Received`] message.
#[derive(Debug)]
pub(crate) enum ReceivedEvent {
    /// `call.requested`.
    Requested(CallRequested),
    /// `call.responded`: the output's JSON text.
    Output(Bytes),
    /// `call.responded` with several items (`outputs`): each item's JSON text.
    Outputs(Vec<Bytes>),
    /// `call.completed`.
    Completed,
    /// `call.aborted`.
    Aborted,
    /// `call.error`.
    Error(CallError),
}

/// About how many JSON values `text` holds: one more than its commas and opening brackets
/// outside strings (exact for arrays and objects that are not empty). Reads the bytes once,
/// without parsing: how a frame's parsed size is bounded before it is parsed.
pub fn json_value_count(text: &[u8]) -> usize {
    let mut count = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// How many JSON values `body` holds when that is over `max_values`; `None` when it is not, or
/// when the body is small enough (at most [`SMALL_FRAME_LEN`]) that parsing it cannot cost much
/// whatever it holds, so small bodies are not scanned at all.
pub fn too_many_json_values(body: &[u8], max_values: usize) -> Option<usize> {
    if body.len() <= SMALL_FRAME_LEN as usize {
        return None;
    }
    let values = json_value_count(body);
    (values > max_values).then_some(values)
}

impl Received {
    /// [`Received::decode`] for a serving side: a large `call.requested` holding more than
    /// `max_request_values` JSON values is refused before its input is parsed (a
    /// [`DecodeError::BadPayload`] for its id), since a `Value` takes many times the bytes it
    /// was parsed from (`[0,0,…]`: 16 bytes per 2).
    pub(crate) fn decode_request_limited(
        body: &Bytes,
        max_request_values: usize,
    ) -> Result<Received, DecodeError> {
        if let Some(values) = too_many_json_values(body, max_request_values)
            && let Ok(raw) = serde_json::from_slice::<RawEnvelope<'_>>(body)
            && raw.event_type == event_type::REQUESTED
        {
            return Err(DecodeError::BadPayload {
                id: raw.id.into_owned(),
                event_type: event_type::REQUESTED,
                reason: format!(
                    "the request holds about {values} JSON values, over this node's limit of \
                     {max_request_values}"
                ),
            });
        }
        Self::decode(body)
    }

    /// Parses one frame body in a single pass when the envelope is in the order this runtime
    /// writes it (`type` before `payload`, no escapes in `type` and `id`); anything else takes
    /// the general path of [`Message::decode`], which also classifies what is wrong.
    pub(crate) fn decode(body: &Bytes) -> Result<Received, DecodeError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let fast = serde::de::DeserializeSeed::deserialize(SinglePass { body }, &mut deserializer)
            .ok()
            .filter(|_| deserializer.end().is_ok());
        if let Some(received) = fast {
            return Ok(received);
        }
        let Message { id, event } = Message::decode(body)?;
        let event = match event {
            Event::Requested(request) => ReceivedEvent::Requested(request),
            Event::Responded(output) => ReceivedEvent::Output(Bytes::from(
                serde_json::to_vec(&output).expect("a JSON value serializes"),
            )),
            Event::RespondedItems(items) => ReceivedEvent::Outputs(
                items
                    .iter()
                    .map(|item| {
                        Bytes::from(serde_json::to_vec(item).expect("a JSON value serializes"))
                    })
                    .collect(),
            ),
            Event::Completed => ReceivedEvent::Completed,
            Event::Aborted => ReceivedEvent::Aborted,
            Event::Error(error) => ReceivedEvent::Error(error),
        };
        Ok(Received { id, event })
    }
}

/// The single-pass envelope parser behind [`Received::decode`]: once `type` is known, the
/// payload is parsed straight into its type; an output is kept as a slice of `body`.
struct SinglePass<'b> {
    body: &'b Bytes,
}

#[derive(Deserialize)]
struct RawOutput<'a> {
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    outputs: Option<Vec<&'a RawValue>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for SinglePass<'_> {
    type Value = Received;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Received, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for SinglePass<'_> {
    type Value = Received;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event envelope")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Received, A::Error> {
        use serde::de::{Error, IgnoredAny};
        let mut event_type: Option<&'de str> = None;
        let mut id: Option<&'de str> = None;
        let mut event = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "type" => event_type = Some(map.next_value()?),
                "id" => id = Some(map.next_value()?),
                "payload" => {
                    let kind = event_type.ok_or_else(|| A::Error::custom("payload before type"))?;
                    event = Some(match kind {
                        event_type::REQUESTED => ReceivedEvent::Requested(map.next_value()?),
                        event_type::RESPONDED => {
                            let raw: RawOutput<'de> = map.next_value()?;
                            let slice = |raw: &RawValue| {
                                slice_of(self.body, raw.get())
                                    .ok_or_else(|| A::Error::custom("output not borrowed"))
                            };
                            match (raw.outputs, raw.output) {
                                (Some(items), _) => ReceivedEvent::Outputs(
                                    items.into_iter().map(slice).collect::<Result<_, _>>()?,
                                ),
                                (None, Some(output)) => ReceivedEvent::Output(slice(output)?),
                                (None, None) => ReceivedEvent::Output(Bytes::from_static(b"null")),
                            }
                        }
                        event_type::COMPLETED => {
                            map.next_value::<IgnoredAny>()?;
                            ReceivedEvent::Completed
                        }
                        event_type::ABORTED => {
                            map.next_value::<IgnoredAny>()?;
                            ReceivedEvent::Aborted
                        }
                        event_type::ERROR => ReceivedEvent::Error(map.next_value()?),
                        _ => return Err(A::Error::custom("unknown event type")),
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (Some(event_type), Some(id)) = (event_type, id) else {
            return Err(A::Error::custom("not an envelope"));
        };
        let event = match (event, event_type) {
            (Some(event), _) => event,
            (None, event_type::COMPLETED) => ReceivedEvent::Completed,
            (None, event_type::ABORTED) => ReceivedEvent::Aborted,
            (None, event_type::RESPONDED) => ReceivedEvent::Output(Bytes::from_static(b"null")),
            // Missing payloads and unknown types: the general path says what is wrong.
            (None, _) => return Err(A::Error::custom("no payload")),
        };
        Ok(Received {
            id: id.to_owned(),
            event,
        })
    }
}

/// `text` as a slice of `body`, which it must lie in (borrowed by the parser).
fn slice_of(body: &Bytes, text: &str) -> Option<Bytes> {
    let start = (text.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    (start + text.len() <= body.len()).then(|| body.slice(start..start + text.len()))
}

/// A `call.requested` payload with a typed input, serialized straight into the frame.
#[derive(Serialize)]
pub(crate) struct RequestOut<'a, I: ?Sized> {
    #[serde(rename = "operationId")]
    pub operation_id: &'a str,
    pub input: &'a I,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub item_batches: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<u64>,
}

/// Encodes a `call.requested` frame for request `id` without going through [`Message`]: the
/// input is serialized where it lies. Fails when the input does not serialize or the frame
/// would exceed `max_len`.
pub(crate) fn encode_request_frame<I: Serialize + ?Sized>(
    id: u64,
    request: &RequestOut<'_, I>,
    max_len: u32,
) -> Result<Bytes, CallError> {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_u32(0);
    serde_json::to_writer(
        (&mut buf).writer(),
        &EnvelopeOut {
            event_type: event_type::REQUESTED,
            id: itoa::Buffer::new().format(id),
            payload: request,
        },
    )
    .map_err(|e| CallError::invalid_input(format!("input not serializable: {e}"), ""))?;
    let body_len = buf.len() - 4;
    if body_len > max_len as usize {
        return Err(CallError::invalid_input(
            format!(
                "request too large to send: {}",
                FrameError::TooLarge {
                    len: u32::try_from(body_len).unwrap_or(u32::MAX),
                    max: max_len,
                }
            ),
            "",
        ));
    }
    buf[..4].copy_from_slice(&(body_len as u32).to_be_bytes());
    Ok(buf.freeze())
}

/// Encodes `message` as one frame (length prefix + JSON) appended to `buf`.
///
/// Fails without touching `buf` when the body would exceed `max_len`, so the caller can send an
/// error instead of a frame the peer would refuse.
pub fn encode_frame_into(
    message: &Message,
    buf: &mut BytesMut,
    max_len: u32,
) -> Result<(), FrameError> {
    encode_body_into(buf, max_len, |out| message.write_json(out))
}

/// Appends the frame of a `call.responded` for `id` carrying `output` to `buf`, as
/// [`encode_frame_into`] does for a [`Message`], without building one (see [`OutputFrames`]).
pub fn encode_output_frame_into(
    id: &str,
    output: &JsonOutput,
    buf: &mut BytesMut,
    max_len: u32,
) -> Result<(), FrameError> {
    OutputFrames::new(id).encode_into(output, buf, max_len)
}

/// Appends a length prefix and the body `write` writes; leaves `buf` as it was when writing
/// fails or the body is over `max_len`.
fn encode_body_into(
    buf: &mut BytesMut,
    max_len: u32,
    write: impl FnOnce(&mut bytes::buf::Writer<&mut BytesMut>) -> serde_json::Result<()>,
) -> Result<(), FrameError> {
    let start = buf.len();
    buf.put_u32(0);
    if let Err(error) = write(&mut (&mut *buf).writer()) {
        buf.truncate(start);
        return Err(FrameError::Unserializable(error.to_string()));
    }
    let body_len = buf.len() - start - 4;
    if body_len > max_len as usize {
        buf.truncate(start);
        return Err(FrameError::TooLarge {
            len: u32::try_from(body_len).unwrap_or(u32::MAX),
            max: max_len,
        });
    }
    buf[start..start + 4].copy_from_slice(&(body_len as u32).to_be_bytes());
    Ok(())
}

/// Encodes `message` as one frame.
pub fn encode_frame(message: &Message, max_len: u32) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::with_capacity(128);
    encode_frame_into(message, &mut buf, max_len)?;
    Ok(buf.freeze())
}

/// The bodies of the whole frames in `chunk` (frames as [`encode_frame_into`] appends them), without
/// copying: how a message transport (a WebSocket) turns the frame stream into one message per
/// envelope. A truncated tail is not a frame and is not returned.
pub fn split_frames(mut chunk: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || {
        let len = u32::from_be_bytes(chunk.get(..4)?.try_into().ok()?) as usize;
        if chunk.len() < 4 + len {
            return None;
        }
        let mut frame = chunk.split_to(4 + len);
        frame.advance(4);
        Some(frame)
    })
}

/// Frames up to this size are read without drawing on a [`FrameReader`]'s shared budget.
pub const SMALL_FRAME_LEN: u32 = 64 * 1024;

/// Told how many bytes [`FrameReader`]s hold, so that their owner can bound many readers
/// together (the runtime charges them to the connection's share of the node's memory).
pub trait ReadAccount: Send + Sync {
    /// `bytes` more are held.
    fn charge(&self, bytes: usize);
    /// `bytes` are no longer held.
    fn release(&self, bytes: usize);
}

/// What a reader has charged to its [`ReadAccount`]; given back when the reader goes.
struct Charged {
    account: Option<Arc<dyn ReadAccount>>,
    /// The buffer's capacity, as last charged.
    buffer: usize,
    /// Charged while the reader waits for frame budget and so leaves the stream unread: what
    /// the transport may buffer for it meanwhile (a QUIC stream's receive window).
    unread: usize,
}

impl Charged {
    /// Charges or releases the difference to `capacity`.
    fn set_buffer(&mut self, capacity: usize) {
        let Some(account) = &self.account else {
            return;
        };
        if capacity > self.buffer {
            account.charge(capacity - self.buffer);
        } else if capacity < self.buffer {
            account.release(self.buffer - capacity);
        }
        self.buffer = capacity;
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        if let Some(account) = &self.account {
            account.release(self.buffer);
        }
    }
}

/// Reads length-prefixed frames from a byte stream.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_len: u32,
    /// Budgets a large frame draws on before its body is buffered (one permit per byte): the
    /// connection's, then the node's.
    budgets: Vec<Arc<Semaphore>>,
    /// The budget drawn for the frame being read or returned last; released on the next read.
    held: Vec<OwnedSemaphorePermit>,
    /// How long a large frame waits for budget before it is refused; `None`: as long as it
    /// takes.
    budget_wait: Option<std::time::Duration>,
    /// How long a frame may take to arrive once its first bytes are here (a large frame: once
    /// its budget is granted); `None`: no limit.
    frame_timeout: Option<std::time::Duration>,
    /// When the first frame must be complete, if the stream must bring one soon.
    first_frame_deadline: Option<tokio::time::Instant>,
    /// When the frame being read must be complete.
    deadline: Option<tokio::time::Instant>,
    charged: Charged,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader refusing frames above `max_len` bytes.
    pub fn new(inner: R, max_len: u32) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
            max_len,
            budgets: Vec::new(),
            held: Vec::new(),
            budget_wait: None,
            frame_timeout: None,
            first_frame_deadline: None,
            deadline: None,
            charged: Charged {
                account: None,
                buffer: 0,
                unread: 0,
            },
        }
    }

    /// Makes frames above [`SMALL_FRAME_LEN`] wait for room in `budget` (one permit per byte)
    /// before their body is buffered; called again, they draw on each budget in turn. A budget
    /// must hold at least `max_len` permits.
    pub fn with_budget(mut self, budget: Arc<Semaphore>) -> Self {
        self.budgets.push(budget);
        self
    }

    /// Charges `account` with the capacity of the reader's buffer as it changes, and with
    /// `unread` while the reader waits for frame budget (what the transport may buffer for the
    /// stream meanwhile); all of it is released when the reader goes.
    pub fn with_account(mut self, account: Arc<dyn ReadAccount>, unread: usize) -> Self {
        self.charged.account = Some(account);
        self.charged.unread = unread;
        self.charged.set_buffer(self.buf.capacity());
        self
    }

    /// Refuses a large frame ([`FrameError::BudgetExhausted`]) that could not get its budget
    /// within `wait`, and any frame that did not arrive within `timeout` of its first bytes (a
    /// large one: of getting its budget) with [`FrameError::TooSlow`]: a peer that starts
    /// frames and sends them slowly, or not at all, holds buffers and budgets for a bounded
    /// time only.
    pub fn with_frame_limits(
        mut self,
        wait: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Self {
        self.budget_wait = Some(wait);
        self.frame_timeout = Some(timeout);
        self
    }

    /// Requires a whole first frame within `timeout` from now, else [`FrameError::Silent`]: for
    /// streams the peer opens, which exist to carry a request at once.
    pub fn with_first_frame_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.first_frame_deadline = Some(tokio::time::Instant::now() + timeout);
        self
    }

    /// Gives back the underlying stream.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Whether a whole frame (or a frame error) is already buffered, so the next
    /// [`FrameReader::next_frame`] returns without waiting for input.
    pub fn has_buffered_frame(&self) -> bool {
        if self.buf.len() < 4 {
            return false;
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        len == 0 || len > self.max_len || self.buf.len() >= 4 + len as usize
    }

    /// The next frame body, or `None` when the stream ends cleanly between frames.
    ///
    /// The length prefix is checked before the body is buffered, so a hostile prefix costs four
    /// bytes, never an allocation of its size.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        self.held.clear();
        self.deadline = None;
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if len == 0 {
                    return Err(FrameError::ZeroLength);
                }
                if len > self.max_len {
                    return Err(FrameError::TooLarge {
                        len,
                        max: self.max_len,
                    });
                }
                let total = 4 + len as usize;
                if self.buf.len() >= total {
                    self.buf.advance(4);
                    let frame = self.buf.split_to(len as usize).freeze();
                    if len > SMALL_FRAME_LEN {
                        // Do not keep a large allocation around for the small frames to come.
                        self.buf = BytesMut::from(&self.buf[..]);
                    }
                    self.charged.set_buffer(self.buf.capacity());
                    self.deadline = None;
                    self.first_frame_deadline = None;
                    return Ok(Some(frame));
                }
                if len > SMALL_FRAME_LEN && self.held.is_empty() && !self.budgets.is_empty() {
                    self.acquire_budget(len).await?;
                    self.deadline = self
                        .frame_timeout
                        .map(|timeout| tokio::time::Instant::now() + timeout);
                }
                // Reserve exactly what the announced (and already bounded) frame still needs.
                self.buf.reserve(total - self.buf.len());
            } else if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(8 * 1024);
            }
            self.charged.set_buffer(self.buf.capacity());
            if self.deadline.is_none() && !self.buf.is_empty() {
                self.deadline = self
                    .frame_timeout
                    .map(|timeout| tokio::time::Instant::now() + timeout);
            }
            let deadline = match (self.deadline, self.first_frame_deadline) {
                (Some(frame), Some(first)) => Some(frame.min(first)),
                (frame, first) => frame.or(first),
            };
            // What is already there is read without arming a timer: a deadline only matters
            // when the read has to wait.
            let ready = match deadline {
                None => None,
                Some(_) => self.inner.read_buf(&mut self.buf).now_or_never(),
            };
            let read = match (ready, deadline) {
                (Some(read), _) => read?,
                (None, None) => self.inner.read_buf(&mut self.buf).await?,
                (None, Some(deadline)) => {
                    match tokio::time::timeout_at(deadline, self.inner.read_buf(&mut self.buf))
                        .await
                    {
                        Ok(read) => read?,
                        Err(_) if self.buf.is_empty() => return Err(FrameError::Silent),
                        Err(_) => {
                            return Err(FrameError::TooSlow {
                                len: self.announced_len(),
                            });
                        }
                    }
                }
            };
            if read == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// The length the buffered prefix announces (0 while the prefix is incomplete).
    fn announced_len(&self) -> u32 {
        match self.buf.get(..4) {
            Some(prefix) => u32::from_be_bytes(prefix.try_into().expect("four bytes")),
            None => 0,
        }
    }

    /// Draws `len` permits from every budget, each within the budget wait. Meanwhile the
    /// stream is not read: what the transport buffers for it is charged to the account.
    async fn acquire_budget(&mut self, len: u32) -> Result<(), FrameError> {
        let unread = self.charged.unread;
        if let Some(account) = &self.charged.account {
            account.charge(unread);
        }
        let acquired = self.acquire_budget_unaccounted(len).await;
        if let Some(account) = &self.charged.account {
            account.release(unread);
        }
        acquired
    }

    async fn acquire_budget_unaccounted(&mut self, len: u32) -> Result<(), FrameError> {
        for budget in &self.budgets {
            let acquire = Arc::clone(budget).acquire_many_owned(len);
            let permit = match self.budget_wait {
                None => acquire.await,
                Some(wait) => match tokio::time::timeout(wait, acquire).await {
                    Ok(permit) => permit,
                    Err(_) => {
                        self.held.clear();
                        return Err(FrameError::BudgetExhausted { len });
                    }
                },
            };
            let permit = permit.map_err(|_| std::io::Error::other("frame budget closed"))?;
            self.held.push(permit);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn an_output_frame_is_the_frame_of_its_message() {
        let output = json!({"n": 1, "text": "a \"quoted\" line\n"});
        let mut expected = BytesMut::new();
        let message = Message::new("7", Event::Responded(output.clone()));
        encode_frame_into(&message, &mut expected, u32::MAX).unwrap();
        for output in [
            JsonOutput::from(output.clone()),
            JsonOutput::typed(output.clone()),
        ] {
            let mut frame = BytesMut::new();
            encode_output_frame_into("7", &output, &mut frame, u32::MAX).unwrap();
            assert_eq!(frame, expected);
            let body = Message::decode(&frame[4..]).unwrap();
            assert_eq!(body, message);
            // Over the limit, nothing is written.
            let mut small = BytesMut::from(&b"kept"[..]);
            assert!(encode_output_frame_into("7", &output, &mut small, 8).is_err());
            assert_eq!(&small[..], b"kept");
        }
        // An output serde cannot write as JSON is an error, and leaves nothing behind.
        let unwritable = JsonOutput::typed(std::collections::HashMap::from([((1, 2), 3)]));
        let mut buf = BytesMut::from(&b"kept"[..]);
        let error = encode_output_frame_into("7", &unwritable, &mut buf, u32::MAX).unwrap_err();
        assert!(matches!(error, FrameError::Unserializable(_)), "{error}");
        assert_eq!(&buf[..], b"kept");
    }

    #[test]
    fn value_counts_bound_what_parsing_makes_of_a_frame() {
        assert_eq!(json_value_count(b"0"), 1);
        assert_eq!(json_value_count(b"[0,0,0]"), 4);
        assert_eq!(json_value_count(br#"{"a":[1,2],"b":{"c":3}}"#), 6);
        // Commas, brackets and escaped quotes inside strings are not values.
        assert_eq!(json_value_count(br#"["a,[{b", "c\",d"]"#), 3);
        // A large request over the limit is refused for its id, before its input is parsed.
        let input = format!("[{}0]", "0,".repeat(40_000));
        let frame = format!(
            r#"{{"type":"call.requested","id":"big","payload":{{"operationId":"/x","input":{input}}}}}"#
        );
        let body = Bytes::from(frame);
        match Received::decode_request_limited(&body, 10_000) {
            Err(DecodeError::BadPayload { id, reason, .. }) => {
                assert_eq!(id, "big");
                assert!(reason.contains("JSON values"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(Received::decode_request_limited(&body, 100_000).is_ok());
    }

    #[test]
    fn item_batches_hold_what_fits_and_refuse_the_rest_cleanly() {
        let frames = OutputFrames::new("s");
        let (mut buf, mut batch) = (BytesMut::new(), None);
        for n in 1..=3 {
            let item = JsonOutput::typed(json!({"n": n}));
            frames.push_item(&mut batch, &item, &mut buf, 200).unwrap();
        }
        assert_eq!(batch.as_ref().map(ItemBatch::len), Some(3));
        // An item that would take the frame over the limit, or that cannot be written, is
        // refused and leaves the batch as it was.
        let big = JsonOutput::from(json!("x".repeat(300)));
        let too_large = frames.push_item(&mut batch, &big, &mut buf, 200);
        assert!(matches!(too_large, Err(FrameError::TooLarge { .. })));
        let unwritable = JsonOutput::typed(std::collections::HashMap::from([((1, 2), 3)]));
        let refused = frames.push_item(&mut batch, &unwritable, &mut buf, 200);
        assert!(matches!(refused, Err(FrameError::Unserializable(_))));
        frames.finish_items(&mut batch, &mut buf);
        assert!(batch.is_none());
        let message = Message::decode(&buf[4..]).unwrap();
        let expected: Vec<Value> = (1..=3).map(|n| json!({"n": n})).collect();
        assert_eq!(
            message,
            Message::new("s", Event::RespondedItems(expected.clone()))
        );
        // The single-pass reader sees the same items.
        match Received::decode(&buf.clone().freeze().slice(4..))
            .unwrap()
            .event
        {
            ReceivedEvent::Outputs(items) => {
                let items: Vec<Value> = items
                    .iter()
                    .map(|i| serde_json::from_slice(i).unwrap())
                    .collect();
                assert_eq!(items, expected);
            }
            other => panic!("{other:?}"),
        }
        // A first item that does not fit leaves nothing behind.
        let mut empty = BytesMut::new();
        let mut none = None;
        assert!(frames.push_item(&mut none, &big, &mut empty, 200).is_err());
        assert!(none.is_none() && empty.is_empty());
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::new(
                "1",
                Event::Requested(CallRequested {
                    operation_id: "/demo/add".into(),
                    input: json!({"a": 1, "b": 2}),
                    auth_token: Some("t".into()),
                    timeout_ms: Some(5),
                    stream: Some(false),
                    item_batches: false,
                    resume_after: None,
                }),
            ),
            Message::new("2", Event::Responded(json!({"sum": 3}))),
            Message::new("3", Event::Completed),
            Message::new("4", Event::Aborted),
            Message::new("5", Event::Error(CallError::invalid_input("bad", "/a"))),
        ]
    }

    #[test]
    fn envelopes_round_trip() {
        for message in all_messages() {
            let bytes = message.to_json_bytes();
            assert_eq!(Message::decode(&bytes).unwrap(), message);
            let envelope = message.to_envelope();
            assert_eq!(envelope.event_type, message.event.event_type());
        }
        let requested = all_messages()[0].to_envelope();
        assert_eq!(requested.payload["operationId"], "/demo/add");
        assert_eq!(all_messages()[2].to_envelope().payload, json!({}));
    }

    #[test]
    fn decode_errors_are_classified() {
        assert!(matches!(
            Message::decode(b"not json"),
            Err(DecodeError::NotEnvelope(_))
        ));
        assert!(matches!(
            Message::decode(br#"[1, 2]"#),
            Err(DecodeError::NotEnvelope(_))
        ));
        assert!(matches!(
            Message::decode(br#"{"type": "call.requested", "id": "9", "payload": {"input": 1}}"#),
            Err(DecodeError::BadPayload { id, .. }) if id == "9"
        ));
        assert!(matches!(
            Message::decode(br#"{"type": "call.weird", "id": "9", "payload": {}}"#),
            Err(DecodeError::UnknownType { .. })
        ));
        // Escaped strings still decode (Cow falls back to owned).
        let m = Message::decode(br#"{"type": "call.completed", "id": "a\"b"}"#).unwrap();
        assert_eq!(m.id, "a\"b");
    }

    #[test]
    fn received_decodes_in_one_pass_or_falls_back() {
        for message in all_messages() {
            let body = Bytes::from(message.to_json_bytes());
            let received = Received::decode(&body).unwrap();
            assert_eq!(received.id, message.id);
            match (received.event, message.event) {
                (ReceivedEvent::Requested(a), Event::Requested(b)) => assert_eq!(a, b),
                (ReceivedEvent::Output(text), Event::Responded(value)) => {
                    assert_eq!(serde_json::from_slice::<Value>(&text).unwrap(), value);
                    // A slice of the frame, not a copy.
                    let offset = text.as_ptr() as usize - body.as_ptr() as usize;
                    assert!(offset < body.len());
                }
                (ReceivedEvent::Completed, Event::Completed) => {}
                (ReceivedEvent::Aborted, Event::Aborted) => {}
                (ReceivedEvent::Error(a), Event::Error(b)) => assert_eq!(a, b),
                (a, b) => panic!("{a:?} decoded from {b:?}"),
            }
        }
        // Payload before type, escapes, missing payloads: the general path.
        let reordered = Bytes::from_static(
            br#"{"payload": {"output": {"n": 1}}, "id": "7", "type": "call.responded"}"#,
        );
        let received = Received::decode(&reordered).unwrap();
        assert!(matches!(received.event, ReceivedEvent::Output(t) if &t[..] == br#"{"n":1}"#));
        let escaped = Bytes::from_static(br#"{"type": "call.completed", "id": "a\"b"}"#);
        assert_eq!(Received::decode(&escaped).unwrap().id, "a\"b");
        let absent = Bytes::from_static(br#"{"type": "call.responded", "id": "1"}"#);
        assert!(matches!(
            Received::decode(&absent).unwrap().event,
            ReceivedEvent::Output(t) if &t[..] == b"null"
        ));
        // What is wrong is classified as before.
        let bad = Bytes::from_static(
            br#"{"type": "call.requested", "id": "9", "payload": {"input": 1}}"#,
        );
        assert!(matches!(
            Received::decode(&bad),
            Err(DecodeError::BadPayload { id, .. }) if id == "9"
        ));
        let unknown = Bytes::from_static(br#"{"type": "call.weird", "id": "9", "payload": {}}"#);
        assert!(matches!(
            Received::decode(&unknown),
            Err(DecodeError::UnknownType { .. })
        ));
        let trailing = Bytes::from_static(br#"{"type": "call.completed", "id": "1"} x"#);
        assert!(Received::decode(&trailing).is_err());
    }

    #[test]
    fn typed_requests_encode_like_messages() {
        let input = json!({"a": 1, "b": 2});
        let frame = encode_request_frame(
            1,
            &RequestOut {
                operation_id: "/demo/add",
                input: &input,
                auth_token: Some("t"),
                timeout_ms: Some(5),
                stream: Some(false),
                item_batches: false,
                resume_after: None,
            },
            DEFAULT_MAX_FRAME_LEN,
        )
        .unwrap();
        assert_eq!(
            Message::decode(&frame[4..]).unwrap(),
            all_messages().remove(0)
        );
        assert!(
            encode_request_frame(
                1,
                &RequestOut {
                    operation_id: "/x",
                    input: &"y".repeat(200),
                    auth_token: None,
                    timeout_ms: None,
                    stream: None,
                    item_batches: false,
                    resume_after: None,
                },
                100
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn frames_round_trip_and_limits() {
        let mut wire = BytesMut::new();
        for message in all_messages() {
            encode_frame_into(&message, &mut wire, DEFAULT_MAX_FRAME_LEN).unwrap();
        }
        let mut reader = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME_LEN);
        for message in all_messages() {
            let body = reader.next_frame().await.unwrap().unwrap();
            assert_eq!(Message::decode(&body).unwrap(), message);
        }
        assert!(reader.next_frame().await.unwrap().is_none());

        let zero = [0u8, 0, 0, 0, b'x'];
        let mut reader = FrameReader::new(&zero[..], 100);
        assert!(matches!(
            reader.next_frame().await,
            Err(FrameError::ZeroLength)
        ));

        let huge = [0x80u8, 0, 0, 0];
        let mut reader = FrameReader::new(&huge[..], DEFAULT_MAX_FRAME_LEN);
        assert!(
            matches!(reader.next_frame().await, Err(FrameError::TooLarge { len, .. }) if len == 0x8000_0000)
        );
        assert!(
            reader.buf.capacity() < 64 * 1024,
            "no allocation of the announced size"
        );

        // Large frames draw on the shared budget until the next read.
        let budget = Arc::new(Semaphore::new(DEFAULT_MAX_FRAME_LEN as usize));
        let large = Message::new("l", Event::Responded(json!("z".repeat(100_000))));
        let mut wire = BytesMut::new();
        encode_frame_into(&large, &mut wire, DEFAULT_MAX_FRAME_LEN).unwrap();
        encode_frame_into(&all_messages()[2], &mut wire, DEFAULT_MAX_FRAME_LEN).unwrap();
        let mut reader =
            FrameReader::new(&wire[..], DEFAULT_MAX_FRAME_LEN).with_budget(Arc::clone(&budget));
        let body = reader.next_frame().await.unwrap().unwrap();
        assert_eq!(Message::decode(&body).unwrap(), large);
        assert_eq!(
            budget.available_permits(),
            DEFAULT_MAX_FRAME_LEN as usize - (body.len())
        );
        reader.next_frame().await.unwrap().unwrap();
        assert_eq!(budget.available_permits(), DEFAULT_MAX_FRAME_LEN as usize);

        let truncated = [0u8, 0, 0, 10, b'{'];
        let mut reader = FrameReader::new(&truncated[..], 100);
        assert!(matches!(
            reader.next_frame().await,
            Err(FrameError::Truncated)
        ));

        let big = Message::new("x", Event::Responded(json!("y".repeat(200))));
        assert!(matches!(
            encode_frame(&big, 100),
            Err(FrameError::TooLarge { .. })
        ));
    }

    /// Counts what readers charge it.
    #[derive(Default)]
    struct Counted(std::sync::atomic::AtomicUsize);

    impl ReadAccount for Counted {
        fn charge(&self, bytes: usize) {
            self.0
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
        fn release(&self, bytes: usize) {
            self.0
                .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    impl Counted {
        fn get(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    #[tokio::test]
    async fn readers_charge_their_buffers_and_unread_waits_to_an_account() {
        let account = Arc::new(Counted::default());
        let large = Message::new("l", Event::Responded(json!("z".repeat(100_000))));
        let mut wire = BytesMut::new();
        encode_frame_into(&large, &mut wire, DEFAULT_MAX_FRAME_LEN).unwrap();
        encode_frame_into(&all_messages()[2], &mut wire, DEFAULT_MAX_FRAME_LEN).unwrap();
        let mut reader =
            FrameReader::new(&wire[..], DEFAULT_MAX_FRAME_LEN).with_account(account.clone(), 1000);
        assert_eq!(account.get(), reader.buf.capacity());
        reader.next_frame().await.unwrap().unwrap();
        // The large frame's buffer went with it: what is charged is what is kept.
        assert_eq!(account.get(), reader.buf.capacity());
        assert!(account.get() < 64 * 1024);
        reader.next_frame().await.unwrap().unwrap();
        drop(reader);
        assert_eq!(account.get(), 0);

        // Waiting for frame budget, the reader leaves its stream unread: charged meanwhile.
        let budget = Arc::new(Semaphore::new(0));
        let (mut peer, stream) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(stream, DEFAULT_MAX_FRAME_LEN)
            .with_budget(Arc::clone(&budget))
            .with_account(account.clone(), 1000);
        tokio::io::AsyncWriteExt::write_all(&mut peer, &(100_000u32).to_be_bytes())
            .await
            .unwrap();
        let base = account.get();
        let waiting = tokio::time::timeout(Duration::from_millis(50), reader.next_frame()).await;
        assert!(waiting.is_err(), "no budget: the reader waits");
        // The timed-out wait was dropped mid-way; a fresh reader's wait is observed live.
        let mut reader = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME_LEN)
            .with_budget(Arc::clone(&budget))
            .with_account(account.clone(), 1000);
        let observed = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let charged = account.get();
            budget.add_permits(DEFAULT_MAX_FRAME_LEN as usize);
            charged
        };
        let (read, charged) = tokio::join!(reader.next_frame(), observed);
        read.unwrap().unwrap();
        assert!(charged >= base + 1000, "{charged} vs {base}");
    }

    #[tokio::test]
    async fn silent_and_stalled_streams_hit_their_deadlines() {
        // Nothing at all within the first-frame deadline.
        let (_peer, stream) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(stream, DEFAULT_MAX_FRAME_LEN)
            .with_first_frame_timeout(Duration::from_millis(100));
        assert!(matches!(reader.next_frame().await, Err(FrameError::Silent)));

        // A frame begun and never finished, after a first one.
        let (mut peer, stream) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(stream, DEFAULT_MAX_FRAME_LEN)
            .with_frame_limits(Duration::from_secs(5), Duration::from_millis(200));
        let mut wire = BytesMut::new();
        encode_frame_into(&all_messages()[2], &mut wire, DEFAULT_MAX_FRAME_LEN).unwrap();
        wire.extend_from_slice(&[0, 0, 0, 50, b'{']);
        tokio::io::AsyncWriteExt::write_all(&mut peer, &wire)
            .await
            .unwrap();
        reader.next_frame().await.unwrap().unwrap();
        let started = tokio::time::Instant::now();
        assert!(matches!(
            reader.next_frame().await,
            Err(FrameError::TooSlow { len: 50 })
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
