//! The session's framing: the length-prefixed JSON request and answer, then raw chunks
//! `[stream u8][len u32 BE][bytes]`, with the limits that keep a peer from making either side
//! hold much.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::error::CallError;

/// The ALPN of interactive sessions.
pub const ALPN_TTY: &[u8] = b"alknet/tty";

/// Chunk stream ids.
pub mod stream_id {
    /// Client → server: input. Zero length: end of input.
    pub const STDIN: u8 = 0;
    /// Server → client: output (everything, with a TTY).
    pub const STDOUT: u8 = 1;
    /// Server → client: error output (without a TTY).
    pub const STDERR: u8 = 2;
    /// Both ways: a [`Control`](super::Control) as JSON.
    pub const CONTROL: u8 = 3;
}

/// The largest chunk either side accepts.
pub const MAX_CHUNK: u32 = 1024 * 1024;
/// The largest negotiation frame.
pub const MAX_NEGOTIATION: u32 = 64 * 1024;
/// How long a new stream may take to send its session request.
pub(super) const NEGOTIATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a session runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtyMode {
    /// A terminal on a new command in a running container.
    #[default]
    Exec,
    /// The container's main process (its stdin, stdout, stderr).
    Attach,
}

/// The negotiation frame a client opens a session with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtyRequest {
    /// Container id or name.
    pub container: String,
    /// `exec` (default) or `attach`.
    #[serde(default)]
    pub mode: TtyMode,
    /// For `exec`: the command (default `/bin/sh`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// For `exec`: environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// For `exec`: the user to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// For `exec`: the working directory.
    #[serde(
        default,
        rename = "workingDir",
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    /// Terminal width in columns.
    #[serde(default = "default_cols")]
    pub cols: u16,
    /// Terminal height in rows.
    #[serde(default = "default_rows")]
    pub rows: u16,
    /// For `exec`: give the command a terminal (the default). Without one — what a client
    /// whose input is a pipe asks for, like `docker exec -i` — stdout and stderr stay apart and
    /// the end of input is the end of the process's stdin, never lost to a terminal that is not
    /// set up yet. `TERM` comes from `env` (the client's own), else `xterm`.
    #[serde(default = "default_tty", skip_serializing_if = "is_true")]
    pub tty: bool,
    /// A token that names the caller for this session, instead of the connection's
    /// certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn default_cols() -> u16 {
    80
}

fn default_rows() -> u16 {
    24
}

fn default_tty() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl TtyRequest {
    /// A request for `mode` on `container`, 80×24, no command (exec runs `/bin/sh`).
    pub fn new(container: impl Into<String>, mode: TtyMode) -> Self {
        Self {
            container: container.into(),
            mode,
            cmd: Vec::new(),
            env: BTreeMap::new(),
            user: None,
            working_dir: None,
            cols: default_cols(),
            rows: default_rows(),
            token: None,
            tty: true,
        }
    }
}

/// A control chunk (stream 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    /// Client → server: the terminal's new size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Client → server: deliver a signal (`INT`, `TERM`, `KILL`, `HUP`, … with or without
    /// `SIG`).
    Signal(String),
    /// Client → server: end of input, like a zero-length stdin chunk.
    Eof(bool),
    /// Server → client: the process ended; the last chunk of the session.
    Exit {
        /// Its exit code.
        code: i64,
    },
}

/// A stream or connection failure as a [`TtyError`], saying what happened: a node that shut
/// down says so (its close reason), rather than a bare "connection lost".
pub(super) fn lost<E: std::error::Error + 'static>(error: E) -> TtyError {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = current {
        if let Some(inner) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            current = Some(inner);
            continue;
        }
        if let Some(quinn::ConnectionError::ApplicationClosed(close)) =
            cause.downcast_ref::<quinn::ConnectionError>()
        {
            let reason = String::from_utf8_lossy(&close.reason);
            return TtyError::Connection(if reason == "server shutting down" {
                "the node is shutting down".to_owned()
            } else {
                format!("the node closed the connection: {reason}")
            });
        }
        if let Some(quinn::ConnectionError::TimedOut) =
            cause.downcast_ref::<quinn::ConnectionError>()
        {
            return TtyError::Connection("the node stopped answering (timed out)".to_owned());
        }
        current = cause.source();
    }
    TtyError::Connection(error.to_string())
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// The server refused the session (access, no such container, …).
    #[error("{}: {}", .0.code, .0.message)]
    Refused(CallError),
    /// The stream broke the chunk format.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The stream or connection failed.
    #[error("connection: {0}")]
    Connection(String),
}

// ---------------------------------------------------------------------------------------------
// Framing

pub(super) async fn write_json_frame(
    send: &mut quinn::SendStream,
    value: &impl Serialize,
) -> Result<(), TtyError> {
    let body = serde_json::to_vec(value).map_err(|e| TtyError::Protocol(e.to_string()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    send.write_all(&frame).await.map_err(lost)
}

pub(super) async fn read_json_frame<T: serde::de::DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<T, TtyError> {
    let len = recv.read_u32().await.map_err(lost)?;
    if len == 0 || len > MAX_NEGOTIATION {
        return Err(TtyError::Protocol(format!(
            "a negotiation frame of {len} bytes (1 to {MAX_NEGOTIATION} allowed)"
        )));
    }
    let mut body = vec![0; len as usize];
    recv.read_exact(&mut body).await.map_err(lost)?;
    serde_json::from_slice(&body).map_err(|e| TtyError::Protocol(format!("negotiation: {e}")))
}

/// One chunk as bytes.
pub(super) fn chunk(stream: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + bytes.len());
    out.push(stream);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

pub(super) fn control_chunk(control: &Control) -> Vec<u8> {
    chunk(
        stream_id::CONTROL,
        &serde_json::to_vec(control).expect("controls serialize"),
    )
}

/// Reads one chunk; `None` at a clean end of the stream between chunks.
pub(super) async fn read_chunk(
    recv: &mut quinn::RecvStream,
) -> Result<Option<(u8, Vec<u8>)>, TtyError> {
    let mut header = [0u8; 5];
    match recv.read(&mut header[..1]).await {
        Ok(None) => return Ok(None),
        Ok(Some(0)) => return Ok(None),
        Ok(Some(_)) => {}
        Err(e) => return Err(lost(e)),
    }
    recv.read_exact(&mut header[1..]).await.map_err(lost)?;
    let len = u32::from_be_bytes(header[1..].try_into().expect("4 bytes"));
    if header[0] > stream_id::CONTROL {
        return Err(TtyError::Protocol(format!(
            "unknown stream id {}",
            header[0]
        )));
    }
    if len > MAX_CHUNK {
        return Err(TtyError::Protocol(format!(
            "a chunk of {len} bytes (at most {MAX_CHUNK})"
        )));
    }
    let mut body = vec![0; len as usize];
    recv.read_exact(&mut body).await.map_err(lost)?;
    Ok(Some((header[0], body)))
}
