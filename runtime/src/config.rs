//! [`ProtocolConfig`]: the tunables of the call protocol, the same on both sides.

use std::time::Duration;

use crate::wire::DEFAULT_MAX_FRAME_LEN;

/// Settings for connections of the call protocol. The defaults follow the design.
#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    /// Largest frame body sent or accepted (default 16 MiB). Larger incoming frames end their
    /// stream; larger outgoing answers become an `INTERNAL` error.
    pub max_frame_len: u32,
    /// Deadline for query/mutation, both as callee default and as the caller's local timeout
    /// when a call sets none (default 30 s).
    pub default_timeout: Duration,
    /// How many long-lived streams carry this side's query/mutation calls (default 2). Calls are
    /// pipelined on them round-robin; subscriptions get a stream each. More streams mean less
    /// waiting behind a large answer, fewer mean more frames per QUIC write (docs/protocol.md).
    pub call_streams: usize,
    /// Items a subscription over a message link (WebSocket, in-memory pair) buffers on the
    /// caller's side before the link is throttled (default 256). Over QUIC a subscription reads
    /// its own stream as its items are taken, so QUIC's stream window bounds what waits.
    pub subscription_buffer: usize,
    /// Bytes queued for writing on one stream before whatever writes to it waits (default
    /// 1 MiB): a peer that stops reading (withholds flow control) holds at most this much per
    /// stream here. A subscription then stops producing items, and a stream carrying requests
    /// stops being read until its answers drain. One frame is always accepted into an empty
    /// queue, so a single frame up to `max_frame_len` may exceed it.
    pub stream_write_buffer: usize,
    /// Concurrent bidirectional streams the peer may open (default 256): two carry its calls,
    /// each subscription takes one. quinn keeps a slot for each stream the peer may open, so
    /// this decides much of what an idle connection costs (about 45 KB at 1024); and each
    /// stream may hold up to `stream_write_buffer` of unread answers.
    pub max_concurrent_streams: u32,
    /// Requests from the peer running at once on one connection (default 4096). When all are
    /// busy, this side stops reading new requests until one finishes, so a peer cannot make it
    /// spawn work without bound; QUIC flow control then slows the peer down.
    pub max_concurrent_requests: usize,
    /// Bytes of large frames (over 64 KiB) one connection may hold while they are being read
    /// (default 64 MiB, at least `max_frame_len`). Bounds the memory a peer can pin by starting
    /// big frames on many streams at once.
    pub frame_buffer_budget: usize,
    /// Bytes of large frames all connections of a node may hold together while they are being
    /// read (default 96 MiB, at least `max_frame_len`): many connections cannot add their
    /// `frame_buffer_budget`s up.
    pub node_frame_budget: usize,
    /// How long a large frame waits for room in those budgets (default 5 s). Then its stream is
    /// ended with the resource-limit code (protocol.md) and the peer's calls on it fail with a
    /// retryable error, instead of the stream holding what QUIC buffered for it.
    pub frame_budget_wait: Duration,
    /// How long a frame may take to arrive once its first bytes are here (a large frame: once
    /// it has its budget), default 30 s: a peer that starts a frame and trickles it, or stops,
    /// does not hold its buffer or budget longer. The stream is then ended with the
    /// resource-limit code.
    pub frame_timeout: Duration,
    /// How long a stream the peer opens may go without bringing a whole first frame (default
    /// 10 s). Streams exist to carry a request at once; one that carries nothing is ended with
    /// the resource-limit code instead of being kept.
    pub first_frame_timeout: Duration,
    /// Bytes all connections of a node together may make it hold (default 128 MiB): answers
    /// queued for writing, read buffers, data QUIC buffers on streams this side is not reading,
    /// and a fixed cost per connection and per stream (docs/protocol.md, "Bounds"). Going over
    /// it ends the connection holding the most, with a retryable error for its calls. Large
    /// frames being read have their own budget (`node_frame_budget`).
    pub node_memory_budget: usize,
    /// JSON values a request may hold (default 200,000), checked on requests over 64 KiB
    /// before they are parsed: a parsed `Value` takes many times the bytes it came from, so
    /// this, not `max_frame_len`, bounds what parsing one request can cost (about 20 MB at the
    /// default). Over it, the request is answered `INVALID_INPUT`. Applies to the HTTP
    /// gateway's bodies too.
    pub max_request_values: usize,
    /// Bytes QUIC buffers for one stream that this side has not read yet (default 1 MiB): the
    /// stream's flow-control window.
    pub stream_receive_window: u32,
    /// Bytes QUIC buffers for a whole connection that this side has not read yet (default
    /// 16 MiB): streams that are not being read cannot make quinn hold more than this.
    pub connection_receive_window: u32,
    /// Bytes QUIC keeps of what this side wrote until the peer acknowledges them, across a
    /// connection (default 2 MiB; quinn's default is 10 MB). Bounds what a peer that grants
    /// credit but never acknowledges can make this side hold; it also caps the bytes in flight
    /// to one peer, so raise it for fast links with long round trips.
    pub connection_send_window: u64,
    /// QUIC keep-alive interval (default 5 s), so idle subscriptions survive.
    pub keep_alive: Duration,
    /// A connection silent for this long is closed (default 30 s).
    pub idle_timeout: Duration,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            default_timeout: Duration::from_secs(30),
            call_streams: 2,
            subscription_buffer: 256,
            stream_write_buffer: 1024 * 1024,
            max_concurrent_streams: 256,
            max_concurrent_requests: 4096,
            frame_buffer_budget: 64 * 1024 * 1024,
            node_frame_budget: 96 * 1024 * 1024,
            frame_budget_wait: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(30),
            first_frame_timeout: Duration::from_secs(10),
            node_memory_budget: 128 * 1024 * 1024,
            max_request_values: 200_000,
            stream_receive_window: 1024 * 1024,
            connection_receive_window: 16 * 1024 * 1024,
            connection_send_window: 2 * 1024 * 1024,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}
