//! `from_openapi` (feature `import-openapi`): the operations of an OpenAPI 3.0/3.1 service,
//! imported as forwarding operations.
//!
//! [`Registry::import_openapi`] reads the document (a file or a URL, JSON or YAML), maps each
//! operation (docs/adapters.md has the table: names, kinds, one input object, outputs, `HTTP_<status>`
//! errors) and registers one forwarding operation per operation it can map. Those it cannot are
//! skipped, each with its JSON pointer and a reason, and the rest load. A call becomes one HTTP
//! request to the service (the document's first `servers` entry, or the import's `base_url`),
//! sent with the import's credentials, never the caller's; the remaining deadline bounds it and
//! an abort drops it. Answers are checked against the document's schemas.
//!
//! [`Registry::import_openapi`]: crate::Registry::import_openapi

mod document;
mod forward;
mod operation;
mod sse;

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

pub use operation::{STREAM_ERROR, Skipped};

use super::ImportError;
use super::http_client::HttpClient;
use crate::registry::Registry;
use document::Document;

/// One import of an OpenAPI service.
#[derive(Clone)]
pub struct OpenApiImport {
    /// The local name: operations are called `<name>/<operationId>`. One name segment.
    pub name: String,
    /// Where the document is: an `http://` or `https://` URL, or a file path.
    pub document: String,
    /// The service's base URL; when absent, the document's first `servers` entry (resolved
    /// against the document's URL), or the document's own origin when it lists none.
    pub base_url: Option<String>,
    /// How this node authenticates to the service.
    pub credentials: Credentials,
    /// A PEM file of CA certificates trusted besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Re-export the operations through this node's surfaces; otherwise internal.
    pub external: bool,
}

/// The credentials an import sends with every request (and with the document's request).
#[derive(Clone, Default)]
pub struct Credentials {
    /// Sent as `Authorization: Bearer …`.
    pub bearer: Option<String>,
    /// An API key, sent as a header or a query parameter.
    pub api_key: Option<ApiKey>,
}

/// An API key and where it goes.
#[derive(Clone)]
pub struct ApiKey {
    /// The header (`X-API-Key`) or query parameter (`api_key`) name.
    pub name: String,
    /// Where it goes.
    pub location: ApiKeyLocation,
    /// The key.
    pub value: String,
}

/// Where an API key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyLocation {
    /// A request header.
    Header,
    /// A query parameter.
    Query,
}

impl std::fmt::Debug for OpenApiImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApiImport")
            .field("name", &self.name)
            .field("document", &self.document)
            .field("base_url", &self.base_url)
            .field("external", &self.external)
            .finish_non_exhaustive()
    }
}

/// What an OpenAPI import registered, and what it skipped.
#[derive(Debug, Clone)]
pub struct OpenApiImported {
    /// The local names of the imported operations.
    pub operations: Vec<String>,
    /// The operations that could not be mapped.
    pub skipped: Vec<Skipped>,
}

impl Registry {
    /// Imports the operations of the OpenAPI service `import` describes. Fails when the
    /// document cannot be read or is not OpenAPI 3, when no base URL can be found, and when a
    /// local name is taken; operations that cannot be mapped are skipped (and logged).
    pub async fn import_openapi(
        &mut self,
        import: OpenApiImport,
    ) -> Result<OpenApiImported, ImportError> {
        super::check_import_name(&import.name)?;
        let unreachable = |reason: String| ImportError::Unreachable {
            name: import.name.clone(),
            remote: import.document.clone(),
            reason,
        };
        let client = HttpClient::new(import.ca_file.as_deref()).map_err(unreachable)?;
        let document = Document::load(&import.document, &client)
            .await
            .map_err(|reason| {
                if reason.starts_with("not ") || reason.contains("not supported") {
                    ImportError::Discovery {
                        name: import.name.clone(),
                        reason,
                    }
                } else {
                    unreachable(reason)
                }
            })?;
        let base =
            forward::base_url(&import, &document).map_err(|reason| ImportError::Discovery {
                name: import.name.clone(),
                reason,
            })?;
        let service = Arc::new(forward::Service::new(&import, base, client));
        let (mapped, skipped) = operation::map_operations(&document, &import.name, import.external);
        for skip in &skipped {
            warn!(import = %import.name, pointer = %skip.pointer, reason = %skip.reason, "OpenAPI operation skipped");
        }
        let mut operations = Vec::new();
        for one in mapped {
            let handler = forward::handler(&service, &one.spec, one.route).map_err(|reason| {
                ImportError::Discovery {
                    name: import.name.clone(),
                    reason,
                }
            })?;
            operations.push(self.register_imported(&import.name, one.spec, handler)?);
        }
        info!(
            import = %import.name,
            document = %import.document,
            base = %service.base(),
            operations = operations.len(),
            skipped = skipped.len(),
            "OpenAPI operations imported"
        );
        Ok(OpenApiImported {
            operations,
            skipped,
        })
    }
}
