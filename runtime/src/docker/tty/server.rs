//! The server side: [`TtyService`] answers `alknet/tty` connections, checks access, starts or
//! attaches to the process, and pumps bytes both ways until the exit.

use std::pin::Pin;
use std::sync::Arc;

use alknet_spec::{OpType, OperationSpec};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::AttachContainerOptions;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::frames::*;
use crate::docker::DockerPack;
use crate::docker::errors::{Subject, daemon_error};
use crate::docker::process::{KillOnDrop, Target};
use crate::error::CallError;
use crate::identity::Identity;
use crate::quic::{AlpnService, NodeHandle};

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
        if !crate::docker::is_container_ref(&request.container) {
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
                let tty = request.tty;
                let mut env = crate::docker::env_list(&request.env);
                if tty && !request.env.contains_key("TERM") {
                    env.push("TERM=xterm".into());
                }
                let cmd = if tty {
                    self.sized_command(&id, cmd, request.cols, request.rows)
                        .await
                } else {
                    cmd
                };
                let mut config: bollard::models::ExecConfig = CreateExecOptions {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    cmd: Some(cmd),
                    env: Some(env),
                    user: request.user.clone(),
                    working_dir: request.working_dir.clone(),
                    ..Default::default()
                }
                .into();
                // The terminal's size from the start (API 1.42+; see `sized_command` for older
                // engines, which ignore it).
                if tty {
                    config.console_size =
                        Some(vec![usize::from(request.rows), usize::from(request.cols)]);
                }
                let exec = docker
                    .create_exec(&id, config)
                    .await
                    .map_err(|e| daemon_error(e, Subject::Container(&id)))?
                    .id;
                let started = docker
                    .start_exec(
                        &exec,
                        Some(StartExecOptions {
                            detach: false,
                            tty,
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
                    tty,
                })
            }
        }
    }

    /// `cmd`, made to start on a terminal of the client's size. Engines before API 1.42 create
    /// an exec's terminal at 0×0 and take a resize only once the process runs — after a quick
    /// command (`stty size`) has already looked, or even exited. There the command runs behind
    /// `/bin/sh -c 'stty rows R cols C; exec "$@"'`, when the container has a shell to do that
    /// (one quick probe); without one it runs as it is, and is resized as it starts.
    async fn sized_command(&self, id: &str, cmd: Vec<String>, cols: u16, rows: u16) -> Vec<String> {
        let native = self
            .pack
            .api_version()
            .split_once('.')
            .and_then(|(major, minor)| {
                Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
            })
            .is_some_and(|version| version >= (1, 42));
        if native || !self.has_shell(id).await {
            return cmd;
        }
        let mut wrapped = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!("stty rows {rows} cols {cols} 2>/dev/null; exec \"$@\""),
            "alknet-tty".to_owned(),
        ];
        wrapped.extend(cmd);
        wrapped
    }

    /// Whether `/bin/sh` runs in the container (a detached `/bin/sh -c 'exit 0'`).
    async fn has_shell(&self, id: &str) -> bool {
        let docker = &self.pack.docker;
        let probe = CreateExecOptions {
            cmd: Some(vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                "exit 0".to_owned(),
            ]),
            ..Default::default()
        };
        let Ok(exec) = docker.create_exec(id, probe).await else {
            return false;
        };
        let started = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: true,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await;
        started.is_ok() && Target::Exec(exec.id).exit_code(docker).await == Ok(0)
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
