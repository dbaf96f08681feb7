//! Imports listed in the node's configuration file (`alknet serve --config`), next to its
//! identities:
//!
//! ```toml
//! # Another node's external operations, as `b/…` (from_call).
//! [[imports]]
//! name = "b"
//! call = "127.0.0.1:4434"
//! pin = "SHA256:3f1c…"
//! token_env = "B_TOKEN"   # or token = "alk_…"; who this node is on B
//! external = true         # re-export; default: internal, for composition
//!
//! # A remote MCP server's tools, as `tools/…` (from_mcp, feature `import-mcp`).
//! [[imports]]
//! name = "tools"
//! mcp = "http://127.0.0.1:3001/mcp"
//! token_env = "TOOLS_TOKEN"  # sent as `Authorization: Bearer …`
//!
//! # An OpenAPI service's operations, as `items/…` (from_openapi, feature `import-openapi`).
//! [[imports]]
//! name = "items"
//! openapi = "https://items.example/openapi.json"   # or a file: "items.yaml"
//! base_url = "https://items.example/v1"            # default: the document's first server
//! api_key_header = "X-API-Key"                     # or api_key_query = "api_key"
//! api_key_env = "ITEMS_KEY"                        # or api_key = "…"
//! # token / token_env: sent as `Authorization: Bearer …`
//! ca = "private-ca.pem"                            # trusted besides the system's roots
//! ```
//!
//! Mistakes refuse the whole file with its line, as for identities.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::CallImport;
use crate::identity::ConfigError;
use crate::identity::config_line_of as line_of;
use crate::quic::ClientOptions;
use crate::tls::{Fingerprint, ServerVerification};

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    imports: Vec<ImportEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
// Without OpenAPI imports, their keys are read only to refuse them.
#[cfg_attr(not(feature = "import-openapi"), allow(dead_code))]
struct ImportEntry {
    name: Spanned<String>,
    #[serde(default)]
    call: Option<Spanned<String>>,
    #[serde(default)]
    pin: Option<Spanned<String>>,
    #[serde(default)]
    mcp: Option<Spanned<String>>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    external: bool,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    openapi: Option<Spanned<String>>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_key_header: Option<String>,
    #[serde(default)]
    api_key_query: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    api_key_env: Option<Spanned<String>>,
    #[serde(default)]
    ca: Option<String>,
}

/// One `[[imports]]` entry.
#[derive(Debug)]
pub enum Import {
    /// Another alknet node (`call = ADDR`, `pin = FP`).
    Call(Box<CallImport>),
    /// A remote MCP server (`mcp = URL`).
    #[cfg(feature = "import-mcp")]
    Mcp(super::mcp::McpImport),
    /// An OpenAPI service (`openapi = URL or file`).
    #[cfg(feature = "import-openapi")]
    OpenApi(Box<super::openapi::OpenApiImport>),
}

impl Import {
    /// The import's local name.
    pub fn name(&self) -> &str {
        match self {
            Import::Call(import) => &import.name,
            #[cfg(feature = "import-mcp")]
            Import::Mcp(import) => &import.name,
            #[cfg(feature = "import-openapi")]
            Import::OpenApi(import) => &import.name,
        }
    }
}

/// The `[[imports]]` of a configuration file's TOML text; `origin` names it in errors.
pub fn imports_from_toml(text: &str, origin: &str) -> Result<Vec<Import>, ConfigError> {
    let error = |span: Option<std::ops::Range<usize>>, problem: String| ConfigError {
        origin: origin.to_owned(),
        line: span.map_or(1, |s| line_of(text, s.start)),
        problem,
    };
    // Only `imports` is read here; the rest of the file is the identities' (checked there).
    let file: File = toml::from_str(text).map_err(|e| error(e.span(), e.message().to_owned()))?;
    let mut names = std::collections::HashSet::new();
    let mut imports = Vec::new();
    for entry in file.imports {
        let name = entry.name.get_ref().clone();
        if !names.insert(name.clone()) {
            return Err(error(
                Some(entry.name.span()),
                format!("import `{name}` is listed twice"),
            ));
        }
        // A secret given inline or by the name of an environment variable.
        let secret = |inline: &Option<String>, env: &Option<Spanned<String>>, what: &str| match (
            inline, env,
        ) {
            (Some(_), Some(env)) => Err(error(
                Some(env.span()),
                format!("give `{what}` or `{what}_env`, not both"),
            )),
            (Some(value), None) => Ok(Some(value.clone())),
            (None, Some(env)) => std::env::var(env.get_ref()).map(Some).map_err(|_| {
                error(
                    Some(env.span()),
                    format!("environment variable `{}` is not set", env.get_ref()),
                )
            }),
            (None, None) => Ok(None),
        };
        let token = secret(&entry.token, &entry.token_env, "token")?;
        if let Some(openapi) = &entry.openapi {
            if entry.call.is_some() || entry.mcp.is_some() || entry.pin.is_some() {
                return Err(error(
                    Some(entry.name.span()),
                    format!("import `{name}`: give `call` and `pin`, `mcp`, or `openapi`"),
                ));
            }
            let api_key = secret(&entry.api_key, &entry.api_key_env, "api_key")?;
            imports.push(openapi_import(
                name, openapi, &entry, token, api_key, &error,
            )?);
            continue;
        }
        let import = match (&entry.call, &entry.pin, &entry.mcp) {
            (Some(call), Some(pin), None) => {
                let addr: SocketAddr = call.get_ref().parse().map_err(|_| {
                    error(
                        Some(call.span()),
                        format!("`{}` is not an IP address and port", call.get_ref()),
                    )
                })?;
                let pin: Fingerprint = pin
                    .get_ref()
                    .parse()
                    .map_err(|e| error(Some(pin.span()), format!("{e}")))?;
                let mut client = ClientOptions::new(ServerVerification::pin(pin));
                client.auth_token = token;
                Import::Call(Box::new(CallImport {
                    name,
                    addr,
                    server_name: entry.server_name.unwrap_or_else(|| "localhost".to_owned()),
                    client,
                    external: entry.external,
                }))
            }
            #[cfg(feature = "import-mcp")]
            (None, None, Some(url)) => Import::Mcp(super::mcp::McpImport {
                name,
                url: url.get_ref().clone(),
                bearer: token,
                external: entry.external,
            }),
            #[cfg(not(feature = "import-mcp"))]
            (None, None, Some(url)) => {
                return Err(error(
                    Some(url.span()),
                    "this build has no MCP imports (feature `import-mcp`)".to_owned(),
                ));
            }
            (Some(_), None, None) => {
                return Err(error(
                    Some(entry.name.span()),
                    format!("import `{name}`: `call` needs `pin` (the node's fingerprint)"),
                ));
            }
            _ => {
                return Err(error(
                    Some(entry.name.span()),
                    format!("import `{name}`: give `call` and `pin`, `mcp`, or `openapi`"),
                ));
            }
        };
        imports.push(import);
    }
    Ok(imports)
}

/// The OpenAPI import of one entry.
#[cfg(feature = "import-openapi")]
fn openapi_import(
    name: String,
    openapi: &Spanned<String>,
    entry: &ImportEntry,
    token: Option<String>,
    api_key: Option<String>,
    error: &dyn Fn(Option<std::ops::Range<usize>>, String) -> ConfigError,
) -> Result<Import, ConfigError> {
    use super::openapi::{ApiKey, ApiKeyLocation, Credentials, OpenApiImport};
    let api_key = match (&entry.api_key_header, &entry.api_key_query, api_key) {
        (Some(_), Some(_), _) => {
            return Err(error(
                Some(entry.name.span()),
                format!("import `{name}`: give `api_key_header` or `api_key_query`, not both"),
            ));
        }
        (Some(header), None, Some(value)) => Some(ApiKey {
            name: header.clone(),
            location: ApiKeyLocation::Header,
            value,
        }),
        (None, Some(query), Some(value)) => Some(ApiKey {
            name: query.clone(),
            location: ApiKeyLocation::Query,
            value,
        }),
        (None, None, None) => None,
        (None, None, Some(_)) | (_, _, None) => {
            return Err(error(
                Some(entry.name.span()),
                format!(
                    "import `{name}`: an API key needs both its place (`api_key_header` or `api_key_query`) and its value (`api_key` or `api_key_env`)"
                ),
            ));
        }
    };
    Ok(Import::OpenApi(Box::new(OpenApiImport {
        name,
        document: openapi.get_ref().clone(),
        base_url: entry.base_url.clone(),
        credentials: Credentials {
            bearer: token,
            api_key,
        },
        ca_file: entry.ca.as_ref().map(std::path::PathBuf::from),
        external: entry.external,
    })))
}

/// Without the feature, an `openapi` entry is refused at its line.
#[cfg(not(feature = "import-openapi"))]
fn openapi_import(
    _name: String,
    openapi: &Spanned<String>,
    _entry: &ImportEntry,
    _token: Option<String>,
    _api_key: Option<String>,
    error: &dyn Fn(Option<std::ops::Range<usize>>, String) -> ConfigError,
) -> Result<Import, ConfigError> {
    Err(error(
        Some(openapi.span()),
        "this build has no OpenAPI imports (feature `import-openapi`)".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::imports_from_toml;

    const PIN: &str = "SHA256:4613c8c3d44955980ba4299015016033d3a83ee20935be7f414c839360578d53";

    #[test]
    fn imports_are_read_and_mistakes_point_at_their_line() {
        let text = format!(
            "[[peers]]\nid = \"x\"\nfingerprint = \"{PIN}\"\n\n[[imports]]\nname = \"b\"\ncall = \"127.0.0.1:4434\"\npin = \"{PIN}\"\ntoken = \"alk_b\"\nexternal = true\n\n[[imports]]\nname = \"c\"\ncall = \"127.0.0.1:4435\"\npin = \"{PIN}\"\n"
        );
        let imports = imports_from_toml(&text, "node.toml").unwrap();
        assert_eq!(imports.len(), 2);
        let (super::Import::Call(b), super::Import::Call(c)) = (&imports[0], &imports[1]) else {
            panic!("{imports:?}");
        };
        assert_eq!(b.name, "b");
        assert!(b.external && !c.external);
        assert_eq!(b.client.auth_token.as_deref(), Some("alk_b"));

        let half = "[[imports]]\nname = \"b\"\ncall = \"127.0.0.1:1\"\n";
        let error = imports_from_toml(half, "node.toml").unwrap_err();
        assert!(error.problem.contains("pin"), "{error}");

        let twice =
            format!("{text}\n[[imports]]\nname = \"b\"\ncall = \"127.0.0.1:1\"\npin = \"{PIN}\"\n");
        let error = imports_from_toml(&twice, "node.toml").unwrap_err();
        assert!(error.problem.contains("twice"), "{error}");
        assert_eq!(error.line, 18);

        let typo = format!(
            "[[imports]]\nname = \"b\"\ncall = \"127.0.0.1:1\"\npin = \"{PIN}\"\nexternl = true\n"
        );
        let error = imports_from_toml(&typo, "node.toml").unwrap_err();
        assert!(error.problem.contains("externl"), "{error}");

        let no_env = format!(
            "[[imports]]\nname = \"b\"\ncall = \"127.0.0.1:1\"\npin = \"{PIN}\"\ntoken_env = \"ALKNET_TEST_SURELY_UNSET\"\n"
        );
        let error = imports_from_toml(&no_env, "node.toml").unwrap_err();
        assert_eq!(error.line, 5, "{error}");
    }

    #[cfg(feature = "import-openapi")]
    #[test]
    fn openapi_imports_take_their_credentials_and_base_url() {
        let text = "[[imports]]\nname = \"items\"\nopenapi = \"items.yaml\"\nbase_url = \"https://items.example/v1\"\napi_key_header = \"X-API-Key\"\napi_key = \"k\"\ntoken = \"t\"\nca = \"ca.pem\"\n";
        let imports = imports_from_toml(text, "node.toml").unwrap();
        let [super::Import::OpenApi(items)] = &imports[..] else {
            panic!("{imports:?}");
        };
        assert_eq!(items.document, "items.yaml");
        assert_eq!(items.base_url.as_deref(), Some("https://items.example/v1"));
        let key = items.credentials.api_key.as_ref().unwrap();
        assert_eq!((key.name.as_str(), key.value.as_str()), ("X-API-Key", "k"));
        assert_eq!(items.credentials.bearer.as_deref(), Some("t"));
        assert!(!items.external);

        let half = "[[imports]]\nname = \"items\"\nopenapi = \"items.yaml\"\napi_key = \"k\"\n";
        let error = imports_from_toml(half, "node.toml").unwrap_err();
        assert!(error.problem.contains("api_key_header"), "{error}");
        let both =
            "[[imports]]\nname = \"items\"\nopenapi = \"items.yaml\"\nmcp = \"http://x/mcp\"\n";
        let error = imports_from_toml(both, "node.toml").unwrap_err();
        assert!(error.problem.contains("openapi"), "{error}");
    }
}
