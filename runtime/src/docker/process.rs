//! The processes the pack runs for callers (a container's main process, exec instances):
//! their exit codes, signals and resizes, and the kill that follows a caller who went away.

use bollard::Docker;
use bollard::exec::ResizeExecOptions;
use bollard::query_parameters::{KillContainerOptions, ResizeContainerTTYOptions};
use tracing::{debug, warn};

use super::DockerPack;
use super::errors::{Subject, daemon_error, docker_error};
use crate::error::CallError;

/// The process a session (or an exec subscription) runs.
#[derive(Clone)]
pub(super) enum Target {
    /// A container's main process.
    Container(String),
    /// An exec instance.
    Exec(String),
}

impl Target {
    pub(super) async fn resize(&self, docker: &Docker, cols: u16, rows: u16) {
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
    pub(super) async fn signal(&self, docker: &Docker, signal: &str) {
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
    pub(super) async fn fire(&mut self) {
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
