//! Interactive sessions (design §11): a terminal on a container's main process (`attach`) or on
//! a new command (`exec`), over QUIC with ALPN `alknet/tty`.
//!
//! On each bidirectional stream, one session:
//! 1. the client sends one length-prefixed JSON [`TtyRequest`] (4-byte big-endian length);
//! 2. the server answers one length-prefixed JSON frame: `{"ok": true, "tty": bool}`, or
//!    `{"error": <call.error>}` and the end of the stream;
//! 3. then raw chunks both ways, `[stream u8][len u32 BE][bytes]`: 0 stdin (client → server;
//!    a zero-length stdin chunk is EOF), 1 stdout and 2 stderr (server → client; a TTY merges
//!    them into stdout), 3 control JSON ([`Control`]): `resize` and `signal` from the client,
//!    `exit` from the server, always the last chunk.
//!
//! Identity and access are the call protocol's: the connection's client certificate, or a
//! `token` in the request; scope `docker` and resource `container` with action `attach` or
//! `exec` (the owner, or a static grant). If the client goes away before the exit — the stream
//! is reset, the connection drops — the process is killed.
//!
//! One module per part: `frames` (the negotiation frames, chunks and their limits), `server`
//! ([`TtyService`], the sessions it runs), `client` ([`TtySession`] and its halves).

mod client;
mod frames;
mod server;

pub use client::{TtyEvent, TtyReader, TtySession, TtyWriter};
pub use frames::{
    ALPN_TTY, Control, MAX_CHUNK, MAX_NEGOTIATION, TtyError, TtyMode, TtyRequest, stream_id,
};
pub use server::TtyService;
