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

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use alknet_spec::{OpType, OperationSpec};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    AttachContainerOptions, KillContainerOptions, ResizeContainerTTYOptions,
};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::DockerPack;
use super::errors::{Subject, daemon_error, docker_error};
use crate::error::CallError;
use crate::identity::Identity;
use crate::quic::{AlpnService, NodeHandle};

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
const NEGOTIATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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

/// A stream or connection failure as a [`TtyError`].
fn lost(error: impl std::fmt::Display) -> TtyError {
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

async fn write_json_frame(
    send: &mut quinn::SendStream,
    value: &impl Serialize,
) -> Result<(), TtyError> {
    let body = serde_json::to_vec(value).map_err(|e| TtyError::Protocol(e.to_string()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    send.write_all(&frame).await.map_err(lost)
}

async fn read_json_frame<T: serde::de::DeserializeOwned>(
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
fn chunk(stream: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + bytes.len());
    out.push(stream);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

fn control_chunk(control: &Control) -> Vec<u8> {
    chunk(
        stream_id::CONTROL,
        &serde_json::to_vec(control).expect("controls serialize"),
    )
}

/// Reads one chunk; `None` at a clean end of the stream between chunks.
async fn read_chunk(recv: &mut quinn::RecvStream) -> Result<Option<(u8, Vec<u8>)>, TtyError> {
    let mut header = [0u8; 5];
    match recv.read(&mut header[..1]).await {
        Ok(None) => return Ok(None),
        Ok(Some(0)) => return Ok(None),
        Ok(Some(_)) => {}
        Err(e) => return Err(TtyError::Connection(e.to_string())),
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

// ---------------------------------------------------------------------------------------------
// Server

/// The `alknet/tty` protocol for a [`DockerPack`]; add it to
/// [`ServerOptions::alpn_services`](crate::ServerOptions::alpn_services).
pub struct TtyService {
    pack: DockerPack,
}

impl TtyService {
    /// Interactive sessions on the containers of `pack`.
    pub fn new(pack: DockerPack) -> Arc<Self> {
        Arc::new(Self { pack })
    }
}

impl AlpnService for TtyService {
    fn alpn(&self) -> &'static [u8] {
        ALPN_TTY
    }

    fn serve(&self, connection: quinn::Connection, node: NodeHandle) -> BoxFuture<'static, ()> {
        let pack = self.pack.clone();
        async move {
            let identity = crate::tls::peer_fingerprint(&connection)
                .and_then(|f| node.identities()?.by_fingerprint(&f));
            loop {
                let (send, recv) = tokio::select! {
                    accepted = connection.accept_bi() => match accepted {
                        Ok(streams) => streams,
                        Err(_) => break,
                    },
                    _ = node.shutting_down() => {
                        connection.close(0u32.into(), b"server shutting down");
                        break;
                    }
                };
                let session = Session {
                    pack: pack.clone(),
                    node: node.clone(),
                    identity: identity.clone(),
                };
                // On the server's tracker: a graceful shutdown waits for sessions to end (they
                // do at once: their connection is closed) and for their processes to be killed.
                node.spawn(session.run(send, recv));
            }
        }
        .boxed()
    }
}

/// The spec whose access rules a session of `mode` follows.
fn access_spec(mode: TtyMode) -> OperationSpec {
    let (name, action) = match mode {
        TtyMode::Exec => ("docker/tty/exec", "exec"),
        TtyMode::Attach => ("docker/tty/attach", "attach"),
    };
    let mut spec = OperationSpec::new(name, OpType::Subscription).expect("a valid name");
    spec.access_control.required_scopes = vec!["docker".into()];
    spec.access_control.resource_type = Some("container".into());
    spec.access_control.resource_action = Some(action.into());
    spec.resource_id_path = Some("/container".into());
    spec
}

struct Session {
    pack: DockerPack,
    node: NodeHandle,
    identity: Option<Identity>,
}

/// What a started session reads from and writes to.
struct Started {
    output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    target: Target,
    tty: bool,
}

impl Session {
    async fn run(self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let negotiated = match self.negotiate(&mut recv).await {
            Ok((request, started)) => {
                let answer = json!({"ok": true, "tty": started.tty});
                Ok((request, started, answer))
            }
            Err(error) => Err(json!({ "error": error })),
        };
        match negotiated {
            Ok((request, started, answer)) => {
                if write_json_frame(&mut send, &answer).await.is_ok() {
                    self.pump(started, &request, send, recv).await;
                }
            }
            Err(answer) => {
                let _ = write_json_frame(&mut send, &answer).await;
                let _ = send.finish();
            }
        }
    }

    /// Reads the session request (within [`NEGOTIATION_TIMEOUT`]) and starts its process.
    async fn negotiate(
        &self,
        recv: &mut quinn::RecvStream,
    ) -> Result<(TtyRequest, Started), CallError> {
        let request: TtyRequest = tokio::time::timeout(NEGOTIATION_TIMEOUT, read_json_frame(recv))
            .await
            .unwrap_or_else(|_| {
                Err(TtyError::Protocol(format!(
                    "no session request within {} s",
                    NEGOTIATION_TIMEOUT.as_secs()
                )))
            })
            .map_err(|error| CallError::invalid_input(error.to_string(), ""))?;
        let started = self.start(&request).await?;
        Ok((request, started))
    }

    async fn start(&self, request: &TtyRequest) -> Result<Started, CallError> {
        if !super::is_container_ref(&request.container) {
            return Err(CallError::invalid_input(
                "`container` must be a container id or name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
                "/container",
            ));
        }
        let identity = request
            .token
            .as_deref()
            .and_then(|t| self.node.identities()?.by_token(t))
            .or_else(|| self.identity.clone());
        crate::access::authorize(
            &access_spec(request.mode),
            identity.as_ref(),
            &json!({ "container": request.container }),
            self.node.registry().ownership("container"),
        )
        .await?;
        let docker = &self.pack.docker;
        let container = docker
            .inspect_container(&request.container, None)
            .await
            .map_err(|e| daemon_error(e, Subject::Container(&request.container)))?;
        let id = container.id.clone().unwrap_or_default();
        if container.state.and_then(|s| s.running) != Some(true) {
            return Err(CallError::invalid_input(
                format!(
                    "container {} is not running: start it first",
                    request.container
                ),
                "/container",
            ));
        }
        match request.mode {
            TtyMode::Attach => {
                let tty = container.config.and_then(|c| c.tty).unwrap_or(false);
                let attached = docker
                    .attach_container(
                        &id,
                        Some(AttachContainerOptions {
                            stream: true,
                            stdin: true,
                            stdout: true,
                            stderr: true,
                            logs: false,
                            detach_keys: None,
                        }),
                    )
                    .await
                    .map_err(|e| daemon_error(e, Subject::Container(&id)))?;
                Ok(Started {
                    output: attached.output,
                    input: attached.input,
                    target: Target::Container(id),
                    tty,
                })
            }
            TtyMode::Exec => {
                let cmd = if request.cmd.is_empty() {
                    vec!["/bin/sh".to_owned()]
                } else {
                    request.cmd.clone()
                };
                let mut env = super::env_list(&request.env);
                // The size is set right after the start (API 1.41 has no size on create): a
                // program that asks in its first milliseconds may see 0×0. COLUMNS/LINES would
                // paper over that but override every later resize, so they are not set.
                env.push("TERM=xterm".into());
                let exec = docker
                    .create_exec(
                        &id,
                        CreateExecOptions {
                            attach_stdin: Some(true),
                            attach_stdout: Some(true),
                            attach_stderr: Some(true),
                            tty: Some(true),
                            cmd: Some(cmd),
                            env: Some(env),
                            user: request.user.clone(),
                            working_dir: request.working_dir.clone(),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| daemon_error(e, Subject::Container(&id)))?
                    .id;
                let started = docker
                    .start_exec(
                        &exec,
                        Some(StartExecOptions {
                            detach: false,
                            tty: true,
                            output_capacity: None,
                        }),
                    )
                    .await
                    .map_err(|e| daemon_error(e, Subject::Container(&id)))?;
                let StartExecResults::Attached { output, input } = started else {
                    return Err(CallError::domain(
                        "DOCKER_ERROR",
                        "the exec started detached",
                    ));
                };
                Ok(Started {
                    output,
                    input,
                    target: Target::Exec(exec),
                    tty: true,
                })
            }
        }
    }

    /// Moves bytes both ways until the process's output ends, then sends its exit code.
    async fn pump(
        self,
        started: Started,
        request: &TtyRequest,
        mut send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        let Started {
            mut output,
            mut input,
            target,
            tty,
        } = started;
        let docker = self.pack.docker.clone();
        let mut kill = KillOnDrop::new(&self.pack, target.clone());
        if tty {
            target.resize(&docker, request.cols, request.rows).await;
        }
        // The client's chunks, parsed on a task of their own so no read is cut in half.
        let (events, mut from_client) = mpsc::channel(64);
        let reader = tokio::spawn(read_client(recv, events));
        let mut input_open = true;
        // The client finished sending (it still reads): no more events to wait for.
        let mut client_done = false;
        // The client went away: nobody reads the output, the process is killed.
        let mut client_gone = false;
        loop {
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(item)) => {
                        let (stream, bytes) = match item {
                            LogOutput::StdErr { message } => (stream_id::STDERR, message),
                            LogOutput::StdOut { message }
                            | LogOutput::Console { message }
                            | LogOutput::StdIn { message } => (stream_id::STDOUT, message),
                        };
                        if send.write_all(&chunk(stream, &bytes)).await.is_err() {
                            client_gone = true;
                            break;
                        }
                    }
                    Some(Err(error)) => {
                        debug!(%error, "session output ended with an error");
                        break;
                    }
                    None => break,
                },
                event = from_client.recv(), if !client_done => match event {
                    Some(ClientEvent::Stdin(bytes)) if input_open => {
                        if input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                            input_open = false;
                        }
                    }
                    Some(ClientEvent::Stdin(_)) => {}
                    Some(ClientEvent::Eof) | Some(ClientEvent::Control(Control::Eof(_))) => {
                        if input_open {
                            input_open = false;
                            end_input(&mut input, tty).await;
                        }
                    }
                    Some(ClientEvent::Control(Control::Resize { cols, rows })) => {
                        target.resize(&docker, cols, rows).await;
                    }
                    Some(ClientEvent::Control(Control::Signal(signal))) => {
                        target.signal(&docker, &signal).await;
                    }
                    Some(ClientEvent::Control(Control::Exit { .. })) => {}
                    // The client finished its side: no more input, keep sending output.
                    Some(ClientEvent::Finished) | None => {
                        client_done = true;
                        if input_open {
                            input_open = false;
                            end_input(&mut input, tty).await;
                        }
                    }
                    Some(ClientEvent::Gone(why)) => {
                        debug!(%why, "session client gone: killing the process");
                        client_gone = true;
                        break;
                    }
                },
            }
        }
        reader.abort();
        if client_gone {
            // Killed here rather than by the guard's drop, so the session's task (tracked by
            // the server) ends only once the process is gone.
            kill.fire().await;
            return;
        }
        // -1 when the daemon cannot say: the exit chunk still ends the session.
        let code = target.exit_code(&docker).await.unwrap_or(-1);
        kill.disarm();
        let _ = send
            .write_all(&control_chunk(&Control::Exit { code }))
            .await;
        let _ = send.finish();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), send.stopped()).await;
    }
}

/// Ends the process's input. A terminal's end of input is Ctrl-D (half-closing the daemon's
/// connection would take the terminal away from the process, which then reads EIO).
async fn end_input(input: &mut Pin<Box<dyn AsyncWrite + Send>>, tty: bool) {
    if tty {
        let _ = input.write_all(&[0x04]).await;
        let _ = input.flush().await;
    } else {
        let _ = input.shutdown().await;
    }
}

enum ClientEvent {
    Stdin(Vec<u8>),
    Eof,
    Control(Control),
    /// The client finished its side of the stream cleanly.
    Finished,
    /// The stream was reset, the connection lost, or the client broke the format.
    Gone(String),
}

async fn read_client(mut recv: quinn::RecvStream, events: mpsc::Sender<ClientEvent>) {
    loop {
        let event = match read_chunk(&mut recv).await {
            Ok(None) => {
                let _ = events.send(ClientEvent::Finished).await;
                return;
            }
            Ok(Some((stream_id::STDIN, bytes))) if bytes.is_empty() => ClientEvent::Eof,
            Ok(Some((stream_id::STDIN, bytes))) => ClientEvent::Stdin(bytes),
            Ok(Some((stream_id::CONTROL, json))) => match serde_json::from_slice(&json) {
                Ok(control) => ClientEvent::Control(control),
                Err(error) => ClientEvent::Gone(format!("bad control chunk: {error}")),
            },
            Ok(Some((other, _))) => {
                ClientEvent::Gone(format!("clients may not send stream {other}"))
            }
            Err(error) => ClientEvent::Gone(error.to_string()),
        };
        let gone = matches!(event, ClientEvent::Gone(_));
        if events.send(event).await.is_err() || gone {
            return;
        }
    }
}

/// The process a session (or an exec subscription) runs.
#[derive(Clone)]
pub(super) enum Target {
    /// A container's main process.
    Container(String),
    /// An exec instance.
    Exec(String),
}

impl Target {
    async fn resize(&self, docker: &Docker, cols: u16, rows: u16) {
        let result = match self {
            Target::Container(id) => {
                docker
                    .resize_container_tty(
                        id,
                        ResizeContainerTTYOptions {
                            h: i32::from(rows),
                            w: i32::from(cols),
                        },
                    )
                    .await
            }
            Target::Exec(exec) => {
                docker
                    .resize_exec(
                        exec,
                        ResizeExecOptions {
                            height: rows,
                            width: cols,
                        },
                    )
                    .await
            }
        };
        if let Err(error) = result {
            debug!(%error, "resize failed");
        }
    }

    /// Delivers `signal`. A container gets it from the daemon; an exec's process gets it by
    /// its host pid (the daemon has no API for it), which works when the daemon runs on this
    /// host, as with its local socket.
    async fn signal(&self, docker: &Docker, signal: &str) {
        let name = signal.trim_start_matches("SIG").to_ascii_uppercase();
        match self {
            Target::Container(id) => {
                let options = KillContainerOptions {
                    signal: format!("SIG{name}"),
                };
                if let Err(error) = docker.kill_container(id, Some(options)).await {
                    debug!(%error, "signal failed");
                }
            }
            Target::Exec(exec) => match signal_number(&name) {
                Some(number) => kill_exec(docker, exec, number).await,
                None => warn!(%signal, "unknown signal"),
            },
        }
    }

    /// The exit code once the process has exited. The daemon may record it a moment after the
    /// output ends, so this asks again for up to 5 s before giving up.
    pub(super) async fn exit_code(&self, docker: &Docker) -> Result<i64, CallError> {
        for _ in 0..250 {
            let (running, code) = match self {
                Target::Container(id) => {
                    let state = docker
                        .inspect_container(id, None)
                        .await
                        .map_err(|e| daemon_error(e, Subject::Container(id)))?
                        .state
                        .unwrap_or_default();
                    (state.running, state.exit_code)
                }
                Target::Exec(exec) => {
                    let exec = docker
                        .inspect_exec(exec)
                        .await
                        .map_err(|e| daemon_error(e, Subject::Daemon))?;
                    (exec.running, exec.exit_code)
                }
            };
            if running != Some(true)
                && let Some(code) = code
            {
                return Ok(code);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(docker_error(
            "the output ended but the process did not exit",
        ))
    }
}

fn signal_number(name: &str) -> Option<i32> {
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        _ => return None,
    })
}

async fn kill_exec(docker: &Docker, exec: &str, signal: i32) {
    let pid = match docker.inspect_exec(exec).await {
        Ok(inspected) if inspected.running == Some(true) => inspected.pid,
        _ => None,
    };
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) else {
        return;
    };
    // SAFETY: kill(2) with a pid and a signal number has no memory-safety preconditions.
    let result = unsafe { libc::kill(pid, signal) };
    if result != 0 {
        debug!(pid, signal, error = %std::io::Error::last_os_error(), "kill failed");
    }
}

/// Kills the process of a session or an exec subscription that ends before the process does
/// (an abort, a client gone).
pub(super) struct KillOnDrop {
    docker: Docker,
    target: Option<Target>,
    /// The pack's cleanup tasks, which [`DockerPack::wait_for_cleanup`] waits for.
    cleanup: tokio_util::task::TaskTracker,
}

impl KillOnDrop {
    pub(super) fn new(pack: &DockerPack, target: Target) -> Self {
        Self {
            docker: pack.docker.clone(),
            target: Some(target),
            cleanup: pack.cleanup.clone(),
        }
    }

    pub(super) fn disarm(&mut self) {
        self.target = None;
    }

    /// Kills the process now.
    async fn fire(&mut self) {
        if let Some(target) = self.target.take() {
            target.signal(&self.docker, "KILL").await;
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(target) = self.target.take() else {
            return;
        };
        let docker = self.docker.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.cleanup.spawn_on(
                async move {
                    debug!("killing an abandoned process");
                    target.signal(&docker, "KILL").await;
                },
                &runtime,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

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
