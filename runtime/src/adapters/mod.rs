//! Adapters (design §10): operations that live elsewhere, imported into a [`Registry`] as
//! forwarding operations, so one node composes, re-exports and secures them.
//!
//! - [`call`]: another alknet node's external operations, through its discovery.
//! - `mcp` (feature `import-mcp`): a remote MCP server's tools, over streamable HTTP.
//! - [`config`]: imports listed in the node's configuration file.
//!
//! Imports are read when the node starts: a remote that cannot be reached then stops the start
//! with an [`ImportError`] (docs/adapters.md says why).
//!
//! [`Registry`]: crate::Registry

pub mod call;
pub mod config;
#[cfg(feature = "import-mcp")]
pub mod mcp;

pub use call::CallImport;

use crate::registry::RegistryError;

/// Checks that an import's name is one name segment.
fn check_import_name(name: &str) -> Result<(), ImportError> {
    if name.contains('/') || alknet_spec::validate_name(&format!("{name}/x")).is_err() {
        return Err(ImportError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Why an import could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The import's name is not one name segment (letters, digits, `_`, `-`).
    #[error("import name `{0}`: must be one name segment (letters, digits, `_`, `-`)")]
    BadName(String),
    /// The remote could not be reached.
    #[error("import `{name}`: cannot reach {remote}: {reason}")]
    Unreachable {
        /// The import.
        name: String,
        /// Where it was looked for.
        remote: String,
        /// Why not.
        reason: String,
    },
    /// The remote's discovery answered something unusable.
    #[error("import `{name}`: discovery failed: {reason}")]
    Discovery {
        /// The import.
        name: String,
        /// Why.
        reason: String,
    },
    /// An imported operation could not be registered (a name clash, an invalid schema).
    #[error("import `{name}`: {source}")]
    Registry {
        /// The import.
        name: String,
        /// The registry's refusal.
        #[source]
        source: RegistryError,
    },
}
