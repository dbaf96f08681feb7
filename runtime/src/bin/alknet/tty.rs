//! `alknet tty`: a terminal in a container, for a person at a keyboard.
//!
//! When stdin is a terminal it goes into raw mode (every key, Ctrl-C included, reaches the remote
//! terminal as a byte) and comes back as it was on exit; SIGWINCH sends the new size. When stdin
//! is not a terminal (a pipe), its end is sent as EOF and SIGINT is forwarded as a signal. The
//! exit code is the remote command's (0–255; 255 when it is unknown).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use alknet::CallError;
use alknet::docker::tty::{ALPN_TTY, TtyEvent, TtyMode, TtyRequest, TtySession};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

use super::{Target, client_options};

pub async fn run(target: &Target, container: String, attach: bool, cmd: Vec<String>) -> ExitCode {
    let outcome = session(target, container, attach, cmd).await;
    // Exiting here, not by returning: the runtime would wait for the blocking stdin reader.
    let code = match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "{}",
                serde_json::to_string(&error).expect("errors serialize")
            );
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

async fn session(
    target: &Target,
    container: String,
    attach: bool,
    cmd: Vec<String>,
) -> Result<i32, CallError> {
    let (options, addr, server_name) = client_options(target).await?;
    let (endpoint, connection) = alknet::quic::connect_alpn(&options, addr, &server_name, ALPN_TTY)
        .await
        .map_err(|e| CallError::internal(e.to_string()))?;
    let mode = if attach {
        TtyMode::Attach
    } else {
        TtyMode::Exec
    };
    let mut request = TtyRequest::new(container, mode);
    request.cmd = cmd;
    request.token = options.auth_token.clone();
    // Input from a pipe gets no terminal (like `docker exec -i`): its end reaches the command
    // as the end of stdin, however early it comes. A terminal's type is the client's own.
    request.tty = std::io::stdin().is_terminal();
    if let Ok(term) = std::env::var("TERM") {
        request.env.insert("TERM".into(), term);
    }
    if let Some((cols, rows)) = terminal_size() {
        request.cols = cols;
        request.rows = rows;
    }
    let TtySession {
        mut writer,
        mut reader,
        ..
    } = TtySession::open(&connection, &request)
        .await
        .map_err(|e| match e {
            alknet::docker::tty::TtyError::Refused(error) => error,
            other => CallError::internal(other.to_string()),
        })?;
    let raw = RawMode::enable();
    let interactive = raw.is_some();

    // Input: stdin, window size changes and (without raw mode) Ctrl-C, on a task of its own.
    let input = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        let mut winch = signal(SignalKind::window_change()).ok();
        let mut interrupt = if interactive {
            None
        } else {
            signal(SignalKind::interrupt()).ok()
        };
        let mut stdin_open = true;
        loop {
            tokio::select! {
                read = stdin.read(&mut buf), if stdin_open => match read {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        if writer.eof().await.is_err() { break; }
                    }
                    Ok(n) => if writer.stdin(&buf[..n]).await.is_err() { break },
                },
                Some(()) = recv_signal(&mut winch) => {
                    if let Some((cols, rows)) = terminal_size() {
                        let _ = writer.resize(cols, rows).await;
                    }
                }
                Some(()) = recv_signal(&mut interrupt) => {
                    let _ = writer.signal("INT").await;
                }
            }
        }
    });

    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let code = loop {
        match reader.next().await {
            Ok(TtyEvent::Stdout(bytes)) => {
                let _ = stdout.write_all(&bytes);
                let _ = stdout.flush();
            }
            Ok(TtyEvent::Stderr(bytes)) => {
                let _ = stderr.write_all(&bytes);
                let _ = stderr.flush();
            }
            Ok(TtyEvent::Exit(code)) => break code,
            Err(error) => {
                drop(raw);
                return Err(CallError::internal(error.to_string()));
            }
        }
    };
    input.abort();
    drop(raw);
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(u8::try_from(code).map_or(255, i32::from))
}

async fn recv_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// The terminal's size (columns, rows), if stdout is a terminal.
fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let result = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (result == 0 && size.ws_col > 0).then_some((size.ws_col, size.ws_row))
}

/// Raw mode on stdin while it lives; the previous settings come back when it is dropped.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    /// `None` when stdin is not a terminal.
    fn enable() -> Option<RawMode> {
        // SAFETY: isatty/tcgetattr/tcsetattr only read and write the termios we own.
        unsafe {
            if libc::isatty(libc::STDIN_FILENO) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enable`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}
