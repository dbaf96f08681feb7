//! # alknet-codegen
//!
//! Build-time tooling for alknet (design §9). It reads **service files** (the schema-first way
//! to declare operations, see `schemas/README.md`) and **spec bundles** (what `alknet spec`
//! prints), and turns them into:
//!
//! - the **OpenAPI 3.1** document and the **MCP tool list** ([`openapi`], [`mcp_tools`]) — the
//!   same functions of `alknet-spec` the runtime serves them with;
//! - typed **Rust**: types (typify), a server trait plus `register`, a typed client, error enums
//!   and markers for typed calls ([`rust`]); from a `build.rs` through [`Builder`], or with
//!   `alknet-codegen rust FILE -o OUT.rs`. Real-world schemas are first [`normalise`]d into
//!   shapes typify types faithfully; where a type must be wider than its schema, a [`Warning`]
//!   says where.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     alknet_codegen::Builder::new().service("../schemas/bank.json").generate()?;
//!     Ok(())
//! }
//! // src/main.rs: include!(concat!(env!("OUT_DIR"), "/bank.rs"));
//! ```
//!
//! It depends only on the light IR crate, so calling it from a `build.rs` never compiles a
//! network stack. Every error names the file and the JSON pointer of the problem.
//!
//! [`compat`] is the breaking-change gate: `alknet-codegen diff OLD NEW`, `lock` and
//! `check --against LOCK`, and [`Builder::against`] in a `build.rs` (rules:
//! `alknet_spec::compat`, `docs/compatibility.md`). Reading running nodes (`quic://`,
//! `http://`) needs the `live` feature.

#![warn(missing_docs)]

pub mod compat;
pub mod convert;
#[cfg(feature = "live")]
mod live;
pub mod normalise;
pub mod rust;
pub mod service;

use std::path::{Path, PathBuf};

use alknet_spec::SpecBundle;
use alknet_spec::openapi::OpenApiInfo;
use serde_json::Value;

pub use convert::Formats;
pub use normalise::Warning;
pub use service::{Service, load};

/// What went wrong, always naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not a valid service file or bundle.
    #[error("{}{}: at `{}`: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), if pointer.is_empty() { "/" } else { pointer })]
    Service {
        /// The file.
        path: PathBuf,
        /// JSON Pointer of the problem (`""` for the whole document).
        pointer: String,
        /// 1-based line, when known (syntax errors).
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A generated file could not be written, or is stale (`--check`).
    #[error("{path}: {message}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A running node could not be read.
    #[error("{node}: {message}")]
    Source {
        /// The node, as given (`quic://…`, `http://…`).
        node: String,
        /// What went wrong.
        message: String,
    },
    /// A breaking change against a lock (`check --against`, [`Builder::against`]).
    #[error("{}: breaking changes against {} (update the lock on purpose with `alknet-codegen lock`, or allow the rule):\n{report}", path.display(), lock.display())]
    Breaking {
        /// The service file or bundle.
        path: PathBuf,
        /// The lock it was checked against.
        lock: PathBuf,
        /// The report, as text.
        report: String,
    },
}

/// Reads and validates a spec bundle or service file, returning its bundle.
pub fn load_bundle(path: impl AsRef<Path>) -> Result<SpecBundle, CodegenError> {
    Ok(load(path)?.bundle)
}

/// Which OpenAPI document [`openapi`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OpenApiVersion {
    /// OpenAPI 3.1: the full 2020-12 schemas.
    #[default]
    V3_1,
    /// OpenAPI 3.0.3, for tools that read only 3.0 (`alknet_spec::openapi::v3_0` says what
    /// changes).
    V3_0,
    /// OpenAPI 3.2: event streams described per event (`itemSchema`), as validators read them
    /// (`alknet_spec::openapi::v3_2`).
    V3_2,
}

/// The OpenAPI document of a loaded service, listing `servers` (may be empty).
pub fn openapi(service: &Service, version: OpenApiVersion, servers: &[String]) -> Value {
    let info = OpenApiInfo {
        title: service.name.clone(),
        version: service.version.clone(),
        description: service.description.clone(),
        servers: servers.to_vec(),
    };
    match version {
        OpenApiVersion::V3_1 => alknet_spec::openapi::openapi_document(&service.bundle, &info),
        OpenApiVersion::V3_0 => alknet_spec::openapi::openapi_3_0_document(&service.bundle, &info),
        OpenApiVersion::V3_2 => alknet_spec::openapi::openapi_3_2_document(&service.bundle, &info),
    }
}

/// The MCP tools (`{"tools": [...]}`) of a loaded service.
pub fn mcp_tools(service: &Service) -> Value {
    alknet_spec::mcp::tools(&service.bundle)
}

/// The Rust source for a loaded service (`path` names the input in the header and in errors).
/// The approximations made on the way are dropped: [`rust_source_with_warnings`] returns them.
pub fn rust_source(service: &Service, path: &Path) -> Result<String, CodegenError> {
    Ok(rust::generate(service, path, Formats::Strings)?.0)
}

/// The Rust source for a loaded service, and every approximation the schema compiler made
/// (a type wider than its schema: `if`/`then`/`else`, `not`, open tuples, … — see
/// [`normalise`]), each with its JSON Pointer. `formats` says what string
/// formats become ([`Formats`]).
pub fn rust_source_with_warnings(
    service: &Service,
    path: &Path,
    formats: Formats,
) -> Result<(String, Vec<Warning>), CodegenError> {
    rust::generate(service, path, formats)
}

/// Generates Rust for service files from a `build.rs`, into `OUT_DIR` (or a chosen directory),
/// one `<service>.rs` per file, and tells cargo to rerun when a file changes.
#[derive(Debug, Default)]
pub struct Builder {
    /// Each service file, with the lock it is checked against, if any.
    services: Vec<(PathBuf, Option<PathBuf>)>,
    out_dir: Option<PathBuf>,
    allowed: Vec<String>,
    formats: Formats,
}

impl Builder {
    /// A builder with no services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a service file (or spec bundle), relative to the crate being built.
    pub fn service(mut self, path: impl Into<PathBuf>) -> Self {
        self.services.push((path.into(), None));
        self
    }

    /// Checks the service added last against a committed lock file (written by
    /// `alknet-codegen lock`): generation fails on a breaking change until the lock is updated
    /// on purpose.
    pub fn against(mut self, lock: impl Into<PathBuf>) -> Self {
        if let Some((_, slot)) = self.services.last_mut() {
            *slot = Some(lock.into());
        }
        self
    }

    /// Waives one compatibility rule (by id, e.g. `OPERATION_REMOVED`) in the lock checks.
    pub fn allow(mut self, rule: impl Into<String>) -> Self {
        self.allowed.push(rule.into());
        self
    }

    /// String formats as Rust types (`date-time` → `chrono::DateTime<Utc>`, `date` →
    /// `chrono::NaiveDate`, `uuid` → `uuid::Uuid`, `ipv4`/`ipv6` → `std::net` addresses)
    /// instead of `String`. The crate including the generated code must then depend on
    /// `chrono` and `uuid` with their `serde` features (the build warns which ones it uses).
    pub fn typed_formats(mut self) -> Self {
        self.formats = Formats::Typed;
        self
    }

    /// Writes here instead of `$OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Generates every service; returns the files written.
    pub fn generate(self) -> Result<Vec<PathBuf>, CodegenError> {
        let out_dir = match self
            .out_dir
            .or_else(|| std::env::var_os("OUT_DIR").map(PathBuf::from))
        {
            Some(dir) => dir,
            None => {
                return Err(CodegenError::Output {
                    path: PathBuf::from("OUT_DIR"),
                    message: "not set: call Builder::generate from a build script, or set out_dir"
                        .into(),
                });
            }
        };
        let mut written = Vec::new();
        for (path, lock) in &self.services {
            if std::env::var_os("OUT_DIR").is_some() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            if let Some(lock) = lock {
                if std::env::var_os("OUT_DIR").is_some() {
                    println!("cargo:rerun-if-changed={}", lock.display());
                }
                compat::check_against(path, lock, &self.allowed)?;
            }
            let service = load(path)?;
            let (source, warnings) = rust_source_with_warnings(&service, path, self.formats)?;
            // A build script's warnings are shown by cargo; elsewhere they go to stderr.
            let in_build_script = std::env::var_os("OUT_DIR").is_some();
            for warning in warnings {
                if in_build_script {
                    println!("cargo:warning={}: {warning}", path.display());
                } else {
                    eprintln!("warning: {}: {warning}", path.display());
                }
            }
            let out = out_dir.join(format!("{}.rs", service.name.replace('-', "_")));
            // Unchanged output is not rewritten, so dependent crates are not rebuilt for nothing.
            if std::fs::read_to_string(&out).ok().as_deref() != Some(source.as_str()) {
                std::fs::write(&out, source).map_err(|e| CodegenError::Output {
                    path: out.clone(),
                    message: e.to_string(),
                })?;
            }
            written.push(out);
        }
        Ok(written)
    }
}

/// Pretty JSON with a trailing newline: stable output for files and golden tests.
pub fn to_pretty_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    text
}
