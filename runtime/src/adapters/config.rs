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
}

/// One `[[imports]]` entry.
#[derive(Debug)]
pub enum Import {
    /// Another alknet node (`call = ADDR`, `pin = FP`).
    Call(Box<CallImport>),
    /// A remote MCP server (`mcp = URL`).
    #[cfg(feature = "import-mcp")]
    Mcp(super::mcp::McpImport),
}

impl Import {
    /// The import's local name.
    pub fn name(&self) -> &str {
        match self {
            Import::Call(import) => &import.name,
            #[cfg(feature = "import-mcp")]
            Import::Mcp(import) => &import.name,
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
        let token = match (&entry.token, &entry.token_env) {
            (Some(_), Some(env)) => {
                return Err(error(
                    Some(env.span()),
                    "give `token` or `token_env`, not both".to_owned(),
                ));
            }
            (Some(token), None) => Some(token.clone()),
            (None, Some(env)) => Some(std::env::var(env.get_ref()).map_err(|_| {
                error(
                    Some(env.span()),
                    format!("environment variable `{}` is not set", env.get_ref()),
                )
            })?),
            (None, None) => None,
        };
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
                    format!("import `{name}`: give `call` and `pin`, or `mcp`"),
                ));
            }
        };
        imports.push(import);
    }
    Ok(imports)
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
}
