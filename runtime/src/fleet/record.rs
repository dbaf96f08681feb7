//! What a fleet knows of one node: its [`MemberRecord`], published by the node itself (on NATS)
//! or listed in a static file, and the [`Selector`] that picks members by their labels.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::tls::Fingerprint;

/// One node of a fleet, as it describes itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The node's id: one name segment (letters, digits, `_`, `-`), unique in the fleet.
    pub id: String,
    /// Its QUIC address (the call protocol).
    pub quic: SocketAddr,
    /// Its HTTP gateway, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Its certificate's fingerprint: connections to it are pinned to this.
    pub fingerprint: String,
    /// Labels to select it by (`zone=eu`, `role=docker`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The alknet version it runs.
    #[serde(default)]
    pub version: String,
    /// How many external operations it serves.
    #[serde(default)]
    pub operations: usize,
    /// A hash of its operation specs (SHA-256 of the spec bundle): equal hashes, equal
    /// operations.
    #[serde(default)]
    pub specs_hash: String,
    /// Seconds the record lives unless refreshed (0: listed statically, never expires).
    #[serde(default)]
    pub ttl_secs: u64,
}

impl MemberRecord {
    /// The fingerprint, parsed.
    pub fn pin(&self) -> Result<Fingerprint, String> {
        self.fingerprint
            .parse()
            .map_err(|e| format!("member `{}`: fingerprint: {e}", self.id))
    }

    /// The record of a node serving `registry` at `quic` with certificate `fingerprint`.
    pub fn of_node(
        id: &str,
        quic: SocketAddr,
        http: Option<String>,
        fingerprint: &Fingerprint,
        labels: BTreeMap<String, String>,
        registry: &crate::Registry,
    ) -> Self {
        let bundle = registry.spec_bundle();
        let operations = bundle
            .operations
            .iter()
            .filter(|spec| spec.visibility == alknet_spec::Visibility::External)
            .count();
        let digest =
            ring::digest::digest(&ring::digest::SHA256, bundle.to_json_pretty().as_bytes());
        let specs_hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            id: id.to_owned(),
            quic,
            http,
            fingerprint: fingerprint.to_string(),
            labels,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            operations,
            specs_hash,
            ttl_secs: 0,
        }
    }
}

/// Checks that a node id is one name segment (it becomes part of operation names:
/// `fleet/<id>/<op>`).
pub fn check_node_id(id: &str) -> Result<(), String> {
    if !crate::registry::is_name_segment(id) {
        return Err(format!(
            "node id `{id}`: must be one name segment (letters, digits, `_`, `-`)"
        ));
    }
    Ok(())
}

/// Which members an operation goes to: those whose labels hold every `key=value`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<(String, String)>,
}

impl Selector {
    /// Every member.
    pub fn all() -> Self {
        Self::default()
    }

    /// Members with label `key` = `value` (and whatever this selector already asks).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Parses `key=value` pairs.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut selector = Self::all();
        for pair in pairs {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}`: a selector is key=value"))?;
            selector = selector.with(key, value);
        }
        Ok(selector)
    }

    /// Whether `record` matches.
    pub fn matches(&self, record: &MemberRecord) -> bool {
        self.labels
            .iter()
            .all(|(key, value)| record.labels.get(key) == Some(value))
    }
}

/// Parses `key=value` labels.
pub fn parse_labels<'a>(
    pairs: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}`: a label is key=value"))?;
        if key.is_empty() {
            return Err(format!("`{pair}`: a label needs a key"));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_and_ids_are_segments() {
        let record = MemberRecord {
            id: "n1".into(),
            quic: "127.0.0.1:1".parse().unwrap(),
            http: None,
            fingerprint: String::new(),
            labels: parse_labels(["zone=eu", "role=docker"]).unwrap(),
            version: String::new(),
            operations: 0,
            specs_hash: String::new(),
            ttl_secs: 0,
        };
        assert!(Selector::all().matches(&record));
        assert!(Selector::parse(["zone=eu"]).unwrap().matches(&record));
        assert!(
            !Selector::parse(["zone=eu", "role=web"])
                .unwrap()
                .matches(&record)
        );
        assert!(Selector::parse(["zone"]).is_err());
        assert!(check_node_id("n-1_a").is_ok());
        assert!(check_node_id("a/b").is_err() && check_node_id("").is_err());
        assert!(check_node_id("a.b").is_err());
    }
}
