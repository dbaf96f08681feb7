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
    call: Spanned<String>,
    pin: Spanned<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    external: bool,
    #[serde(default)]
    server_name: Option<String>,
}

/// The `[[imports]]` of a configuration file's TOML text; `origin` names it in errors.
pub fn imports_from_toml(text: &str, origin: &str) -> Result<Vec<CallImport>, ConfigError> {
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
        let addr: SocketAddr = entry.call.get_ref().parse().map_err(|_| {
            error(
                Some(entry.call.span()),
                format!("`{}` is not an IP address and port", entry.call.get_ref()),
            )
        })?;
        let pin: Fingerprint = entry
            .pin
            .get_ref()
            .parse()
            .map_err(|e| error(Some(entry.pin.span()), format!("{e}")))?;
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
        let mut client = ClientOptions::new(ServerVerification::pin(pin));
        client.auth_token = token;
        imports.push(CallImport {
            name,
            addr,
            server_name: entry.server_name.unwrap_or_else(|| "localhost".to_owned()),
            client,
            external: entry.external,
        });
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
        assert_eq!(imports[0].name, "b");
        assert!(imports[0].external && !imports[1].external);
        assert_eq!(imports[0].client.auth_token.as_deref(), Some("alk_b"));

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
