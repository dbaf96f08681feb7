//! The breaking-change gate (design §14): where the two sides of a comparison come from, and
//! the lock check that [`Builder::against`](crate::Builder::against) and
//! `alknet-codegen check --against` run. The rules themselves are `alknet_spec::compat`.

use std::path::{Path, PathBuf};

use alknet_spec::SpecBundle;
use alknet_spec::compat::{self, Report};

use crate::CodegenError;

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A service file or a spec bundle (a lock file is one).
    File(PathBuf),
    /// A running node over the call protocol: `quic://HOST:PORT`.
    Quic(String),
    /// A running node's HTTP gateway: `http://HOST:PORT` (or `https://`).
    Http(String),
}

impl Source {
    /// `quic://…`, `http(s)://…`, or a file path.
    pub fn parse(text: &str) -> Source {
        if let Some(addr) = text.strip_prefix("quic://") {
            Source::Quic(addr.trim_end_matches('/').to_owned())
        } else if text.starts_with("http://") || text.starts_with("https://") {
            Source::Http(text.trim_end_matches('/').to_owned())
        } else {
            Source::File(PathBuf::from(text))
        }
    }

    /// How the source is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Quic(addr) => format!("quic://{addr}"),
            Source::Http(url) => url.clone(),
        }
    }
}

/// How to reach a running node.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// The node's certificate fingerprint (`SHA256:<hex>`), for `quic://`.
    pub pin: Option<String>,
    /// A bearer token: the node shows what a caller with it may list.
    pub token: Option<String>,
}

/// The spec bundle of `source`.
pub fn load_source(source: &Source, remote: &Remote) -> Result<SpecBundle, CodegenError> {
    match source {
        Source::File(path) => crate::load_bundle(path),
        Source::Quic(_) | Source::Http(_) => fetch(source, remote),
    }
}

#[cfg(feature = "live")]
fn fetch(source: &Source, remote: &Remote) -> Result<SpecBundle, CodegenError> {
    crate::live::fetch(source, remote)
}

#[cfg(not(feature = "live"))]
fn fetch(source: &Source, _remote: &Remote) -> Result<SpecBundle, CodegenError> {
    Err(CodegenError::Source {
        node: source.describe(),
        message: "reading a running node needs the `live` feature of alknet-codegen \
                  (cargo install alknet-codegen --features live); or save its bundle with \
                  `alknet spec` and compare the file"
            .into(),
    })
}

/// Compares `path` (a service file or bundle) against the committed `lock`; a breaking change
/// whose rule is not in `allowed` is [`CodegenError::Breaking`], with the whole report.
pub fn check_against(path: &Path, lock: &Path, allowed: &[String]) -> Result<Report, CodegenError> {
    let locked = crate::load_bundle(lock)?;
    let current = crate::load_bundle(path)?;
    let report = compat::diff(&locked, &current);
    if report.has_breaking(allowed) {
        return Err(CodegenError::Breaking {
            path: path.to_owned(),
            lock: lock.to_owned(),
            report: report.to_text(),
        });
    }
    Ok(report)
}
