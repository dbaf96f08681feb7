//! [`ConfigIdentities`]: the identity provider read from a TOML file (`alknet serve --config`).
//!
//! ```toml
//! # A peer authenticates with its client certificate (`alknet cert new` prints the fingerprint).
//! [[peers]]
//! id = "backup-node"
//! fingerprint = "SHA256:3f1c…"
//! scopes = ["admin"]
//!
//! # A token is stored only as its SHA-256 (`alknet token new` prints both).
//! [[tokens]]
//! id = "alice"
//! sha256 = "9b74…"
//! scopes = ["docker"]
//! resources = { container = ["logs", "stop"] }
//! ```
//!
//! The same file lists the node's imports (`[[imports]]`, see `alknet::adapters::config`).
//!
//! Any mistake — a typo in a key, a malformed fingerprint or hash, a duplicate — refuses the
//! whole file with the file, line and problem, so a node never starts more open than intended.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use toml::Spanned;

use super::{Identity, IdentityProvider, token};
use crate::tls::Fingerprint;

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {problem}")]
pub struct ConfigError {
    /// The file (or other origin) of the configuration.
    pub origin: String,
    /// 1-based line of the problem (1 when the whole file is at fault).
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    peers: Vec<PeerEntry>,
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    /// Read by the adapters (`alknet::adapters::config`), not here.
    #[serde(default)]
    #[allow(dead_code)]
    imports: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerEntry {
    id: Spanned<String>,
    fingerprint: Spanned<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    resources: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    id: Spanned<String>,
    sha256: Spanned<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    resources: BTreeMap<String, Vec<String>>,
}

/// Identities from a configuration file: peers by certificate fingerprint, tokens by hash.
#[derive(Debug, Clone, Default)]
pub struct ConfigIdentities {
    peers: HashMap<Fingerprint, Identity>,
    tokens: Vec<([u8; 32], Identity)>,
}

impl ConfigIdentities {
    /// Reads and checks a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: 1,
            problem: format!("cannot read: {e}"),
        })?;
        Self::from_toml(&text, &origin)
    }

    /// Parses and checks TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let error = |span: Option<std::ops::Range<usize>>, problem: String| ConfigError {
            origin: origin.to_owned(),
            line: span.map_or(1, |s| line_of(text, s.start)),
            problem,
        };
        let file: File =
            toml::from_str(text).map_err(|e| error(e.span(), e.message().to_owned()))?;
        let mut config = ConfigIdentities::default();
        let mut ids = HashMap::new();
        let mut check_id = |id: &Spanned<String>, kind: &str| {
            if id.get_ref().trim().is_empty() {
                return Err(error(Some(id.span()), format!("{kind} id is empty")));
            }
            match ids.insert(id.get_ref().clone(), line_of(text, id.span().start)) {
                Some(first) => Err(error(
                    Some(id.span()),
                    format!("id `{}` is already used on line {first}", id.get_ref()),
                )),
                None => Ok(()),
            }
        };
        for peer in file.peers {
            check_id(&peer.id, "peer")?;
            let fingerprint: Fingerprint = peer.fingerprint.get_ref().parse().map_err(|_| {
                error(
                    Some(peer.fingerprint.span()),
                    format!(
                        "malformed fingerprint `{}`: expected `SHA256:` and 64 hex digits",
                        peer.fingerprint.get_ref()
                    ),
                )
            })?;
            let identity = Identity {
                id: peer.id.into_inner(),
                scopes: peer.scopes,
                resources: peer.resources,
            };
            if config.peers.insert(fingerprint, identity).is_some() {
                return Err(error(
                    Some(peer.fingerprint.span()),
                    "this fingerprint is listed twice".into(),
                ));
            }
        }
        for entry in file.tokens {
            check_id(&entry.id, "token")?;
            let hash = token::parse_hex32(entry.sha256.get_ref()).ok_or_else(|| {
                error(
                    Some(entry.sha256.span()),
                    "sha256 must be the 64 hex digits of the token's SHA-256 (`alknet token new` prints it)"
                        .into(),
                )
            })?;
            if config.tokens.iter().any(|(h, _)| *h == hash) {
                return Err(error(
                    Some(entry.sha256.span()),
                    "this token hash is listed twice".into(),
                ));
            }
            config.tokens.push((
                hash,
                Identity {
                    id: entry.id.into_inner(),
                    scopes: entry.scopes,
                    resources: entry.resources,
                },
            ));
        }
        Ok(config)
    }

    /// Adds a peer (for building a provider in code).
    pub fn with_peer(mut self, fingerprint: Fingerprint, identity: Identity) -> Self {
        self.peers.insert(fingerprint, identity);
        self
    }

    /// Adds a token by its plain text; only the hash is kept.
    pub fn with_token(mut self, token: &str, identity: Identity) -> Self {
        self.tokens.push((token::hash(token), identity));
        self
    }

    /// How many peers and tokens are configured.
    pub fn len(&self) -> (usize, usize) {
        (self.peers.len(), self.tokens.len())
    }

    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.tokens.is_empty()
    }
}

impl IdentityProvider for ConfigIdentities {
    fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Identity> {
        self.peers.get(fingerprint).cloned()
    }

    fn by_token(&self, presented: &str) -> Option<Identity> {
        let presented = token::hash(presented);
        // Compare with every entry, in constant time each, and never stop early: how long this
        // takes says nothing about which hashes exist.
        let mut found = None;
        for (hash, identity) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(identity);
            }
        }
        found.cloned()
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "SHA256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn resolves_peers_and_tokens() {
        let token = token::generate();
        let text = format!(
            r#"
[[peers]]
id = "node-b"
fingerprint = "{FP}"
scopes = ["admin"]

[[tokens]]
id = "alice"
sha256 = "{}"
scopes = ["docker"]
resources = {{ container = ["logs"] }}
"#,
            token::hash_hex(&token)
        );
        let config = ConfigIdentities::from_toml(&text, "test.toml").unwrap();
        let peer = config.by_fingerprint(&FP.parse().unwrap()).unwrap();
        assert_eq!(
            (peer.id.as_str(), peer.scopes.as_slice()),
            ("node-b", &["admin".to_owned()][..])
        );
        let alice = config.by_token(&token).unwrap();
        assert!(alice.has_resource_grant("container", "logs"));
        assert!(config.by_token("alk_wrong").is_none());
        assert!(config.by_token("").is_none());
        let other: Fingerprint = FP.replace("00112233", "ffffffff").parse().unwrap();
        assert!(config.by_fingerprint(&other).is_none());
    }

    #[test]
    fn errors_name_the_line_and_problem() {
        let cases = [
            (
                "[[peers]]\nid = \"a\"\nfingerprint = \"SHA256:abc\"\n",
                3,
                "malformed fingerprint",
            ),
            ("[[tokens]]\nid = \"a\"\nsha256 = \"xyz\"\n", 3, "sha256"),
            (
                "[[tokens]]\nid = \"a\"\nsha256 = \"00\"\nscope = [\"x\"]\n",
                4,
                "unknown field",
            ),
            ("\n\n[[peers]\n", 3, ""),
            (
                &format!(
                    "[[peers]]\nid = \"a\"\nfingerprint = \"{FP}\"\n[[tokens]]\nid = \"a\"\nsha256 = \"{}\"\n",
                    "0".repeat(64)
                ),
                5,
                "already used on line 2",
            ),
            ("[[peers]]\nfingerprint = \"x\"\n", 1, "missing field `id`"),
        ];
        for (text, line, problem) in cases {
            let error = ConfigIdentities::from_toml(text, "auth.toml").unwrap_err();
            assert_eq!(error.origin, "auth.toml");
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.problem.contains(problem), "{text:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("auth.toml:{line}: "))
            );
        }
    }
}
