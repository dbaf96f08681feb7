//! The client side: [`TtySession`] opens a session and splits into a writer and a reader.

use serde_json::Value;

use super::frames::*;

/// The sending half of a session.
pub struct TtyWriter {
    send: quinn::SendStream,
}

/// The receiving half of a session.
pub struct TtyReader {
    recv: quinn::RecvStream,
}

/// What a session sends the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtyEvent {
    /// Bytes on stdout (everything, with a TTY).
    Stdout(Vec<u8>),
    /// Bytes on stderr.
    Stderr(Vec<u8>),
    /// The process exited: the last event.
    Exit(i64),
}

/// An open interactive session.
pub struct TtySession {
    /// Input, resizes, signals.
    pub writer: TtyWriter,
    /// Output and the exit code.
    pub reader: TtyReader,
    /// Whether the process has a terminal (always for exec; as created for attach).
    pub tty: bool,
}

impl TtySession {
    /// Opens a session on `connection` (dialled with ALPN [`ALPN_TTY`], e.g. by
    /// [`crate::quic::connect_alpn`]).
    pub async fn open(
        connection: &quinn::Connection,
        request: &TtyRequest,
    ) -> Result<TtySession, TtyError> {
        let (mut send, mut recv) = connection.open_bi().await.map_err(lost)?;
        write_json_frame(&mut send, request).await?;
        let answer: Value = read_json_frame(&mut recv).await?;
        if let Some(error) = answer.get("error") {
            let error = serde_json::from_value(error.clone())
                .map_err(|e| TtyError::Protocol(format!("bad error answer: {e}")))?;
            return Err(TtyError::Refused(error));
        }
        if answer.get("ok") != Some(&Value::Bool(true)) {
            return Err(TtyError::Protocol(format!("unexpected answer {answer}")));
        }
        Ok(TtySession {
            writer: TtyWriter { send },
            reader: TtyReader { recv },
            tty: answer.get("tty").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

impl TtyWriter {
    /// Sends input. Empty input is ignored (use [`TtyWriter::eof`]).
    pub async fn stdin(&mut self, bytes: &[u8]) -> Result<(), TtyError> {
        for part in bytes.chunks(MAX_CHUNK as usize) {
            self.write(&chunk(stream_id::STDIN, part)).await?;
        }
        Ok(())
    }

    /// Ends the input.
    pub async fn eof(&mut self) -> Result<(), TtyError> {
        self.write(&chunk(stream_id::STDIN, &[])).await
    }

    /// Tells the process its terminal's new size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), TtyError> {
        self.write(&control_chunk(&Control::Resize { cols, rows }))
            .await
    }

    /// Delivers a signal (`INT`, `TERM`, …) to the process.
    pub async fn signal(&mut self, signal: &str) -> Result<(), TtyError> {
        self.write(&control_chunk(&Control::Signal(signal.to_owned())))
            .await
    }

    /// Sends nothing more (no input, resizes or signals): the process's input ends, and the
    /// reader still gets the output and the exit code.
    pub fn finish(mut self) -> Result<(), TtyError> {
        self.send.finish().map_err(lost)
    }

    /// Abandons the session: the server kills the process.
    pub fn cancel(mut self) {
        let _ = self.send.reset(1u32.into());
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), TtyError> {
        self.send.write_all(bytes).await.map_err(lost)
    }
}

impl TtyReader {
    /// The next event; [`TtyEvent::Exit`] is the last.
    pub async fn next(&mut self) -> Result<TtyEvent, TtyError> {
        loop {
            let Some((stream, bytes)) = read_chunk(&mut self.recv).await? else {
                return Err(TtyError::Connection(
                    "the session ended without an exit code".into(),
                ));
            };
            match stream {
                stream_id::STDOUT => return Ok(TtyEvent::Stdout(bytes)),
                stream_id::STDERR => return Ok(TtyEvent::Stderr(bytes)),
                stream_id::CONTROL => match serde_json::from_slice(&bytes) {
                    Ok(Control::Exit { code }) => return Ok(TtyEvent::Exit(code)),
                    Ok(_) => continue,
                    Err(e) => return Err(TtyError::Protocol(format!("bad control chunk: {e}"))),
                },
                other => {
                    return Err(TtyError::Protocol(format!(
                        "servers do not send stream {other}"
                    )));
                }
            }
        }
    }
}
