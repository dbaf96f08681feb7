//! Adapters (design §10): operations that live elsewhere, imported into a [`Registry`] as
//! forwarding operations, so one node composes, re-exports and secures them.
//!
//! - [`call`]: another alknet node's external operations, through its discovery.
//! - `mcp` (feature `import-mcp`): a remote MCP server's tools, over streamable HTTP.
//! - `openapi` (feature `import-openapi`): an OpenAPI 3.0/3.1 service's operations, forwarded
//!   over HTTP(S).
//! - [`config`]: imports listed in the node's configuration file.
//!
//! Imports are read when the node starts: a remote that cannot be reached then stops the start
//! with an [`ImportError`] (docs/adapters.md says why).
//!
//! [`Registry`]: crate::Registry

pub mod call;
pub mod config;
#[cfg(feature = "import-openapi")]
mod http_client;
#[cfg(feature = "import-mcp")]
pub mod mcp;
#[cfg(feature = "import-openapi")]
pub mod openapi;

pub use call::CallImport;

use alknet_spec::OperationSpec;
use serde_json::Value;

use crate::error::CallError;
use crate::registry::RegistryError;

/// Checks that an import's name is one name segment.
fn check_import_name(name: &str) -> Result<(), ImportError> {
    if !crate::registry::is_name_segment(name) {
        return Err(ImportError::BadName(name.to_owned()));
    }
    Ok(())
}

impl crate::Registry {
    /// Registers one forwarding operation of the import `import`, naming the import when it is
    /// refused (a name clash, a bad schema); answers the operation's name.
    fn register_imported(
        &mut self,
        import: &str,
        spec: OperationSpec,
        handler: crate::Handler,
    ) -> Result<String, ImportError> {
        let name = spec.name.clone();
        self.register_handler(spec, handler)
            .map_err(|source| ImportError::Registry {
                name: import.to_owned(),
                source,
            })?;
        Ok(name)
    }
}

/// The local name of a remote operation, tool or `operationId` `id` under the import `import`:
/// dots and slashes separate segments, other characters a segment cannot hold become `_`.
#[cfg(any(feature = "import-mcp", feature = "import-openapi"))]
fn local_name(import: &str, id: &str) -> Option<String> {
    let segments: Vec<String> = id
        .split(['.', '/'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    if segments.is_empty() {
        return None;
    }
    let name = format!("{import}/{}", segments.join("/"));
    alknet_spec::validate_name(&name).ok().map(|()| name)
}

/// Checks what a remote answers against the output schema it declared: a remote that breaks
/// its own contract gives an error, not a wrong answer.
pub(crate) struct OutputCheck {
    validator: Option<jsonschema::Validator>,
    op: String,
}

impl OutputCheck {
    pub(crate) fn new(spec: &OperationSpec) -> Result<Self, String> {
        let validator = crate::registry::compile_schema(&spec.output_schema)
            .map_err(|e| format!("the output schema of `{}`: {e}", spec.name))?;
        Ok(Self {
            validator,
            op: spec.name.clone(),
        })
    }

    pub(crate) fn check(&self, output: Value) -> Result<Value, CallError> {
        let Some(validator) = &self.validator else {
            return Ok(output);
        };
        match validator.validate(&output) {
            Ok(()) => Ok(output),
            Err(error) => Err(CallError::internal(format!(
                "the remote's answer to `{}` does not match its own output schema at `{}`: {}",
                self.op,
                error.instance_path().as_str(),
                error.masked()
            ))),
        }
    }
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

#[cfg(all(test, any(feature = "import-mcp", feature = "import-openapi")))]
mod tests {
    use super::local_name;

    #[test]
    fn remote_names_become_local_names() {
        assert_eq!(local_name("m", "demo.add").as_deref(), Some("m/demo/add"));
        assert_eq!(local_name("m", "echo").as_deref(), Some("m/echo"));
        assert_eq!(
            local_name("m", "get tiny image").as_deref(),
            Some("m/get_tiny_image")
        );
        assert_eq!(local_name("m", "..."), None);
    }
}
