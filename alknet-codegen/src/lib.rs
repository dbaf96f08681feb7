//! # alknet-codegen
//!
//! Build-time tooling for alknet (design §9). It reads **service files** (the schema-first way
//! to declare operations, see `schemas/README.md`) and **spec bundles** (what `alknet spec`
//! prints), and turns them into:
//!
//! - the **OpenAPI 3.1** document and the **MCP tool list** ([`openapi`], [`mcp_tools`]) — the
//!   same functions of `alknet-spec` the runtime serves them with;
//! - typed **Rust** servers and clients (see the crate's `rust` module, when present).
//!
//! It depends only on the light IR crate, so calling it from a `build.rs` never compiles a
//! network stack. Every error names the file and the JSON pointer of the problem.

pub mod service;

use std::path::{Path, PathBuf};

use alknet_spec::SpecBundle;
use alknet_spec::openapi::OpenApiInfo;
use serde_json::Value;

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
}

/// Reads and validates a spec bundle or service file, returning its bundle.
pub fn load_bundle(path: impl AsRef<Path>) -> Result<SpecBundle, CodegenError> {
    Ok(load(path)?.bundle)
}

/// The OpenAPI 3.1 document of a loaded service.
pub fn openapi(service: &Service) -> Value {
    alknet_spec::openapi::openapi_document(
        &service.bundle,
        &OpenApiInfo {
            title: service.name.clone(),
            version: service.version.clone(),
            description: service.description.clone(),
        },
    )
}

/// The MCP tools (`{"tools": [...]}`) of a loaded service.
pub fn mcp_tools(service: &Service) -> Value {
    alknet_spec::mcp::tools(&service.bundle)
}

/// Pretty JSON with a trailing newline: stable output for files and golden tests.
pub fn to_pretty_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    text
}
