//! The members a fleet client knows of, kept current from NATS or fixed by a static file, and
//! the joins and leaves it tells watchers about.
//!
//! A member stays as long as its record is refreshed: when NATS reports the key gone (a
//! graceful leave, or the per-key TTL ran out) it leaves at once, and a member not refreshed
//! for its TTL plus a margin leaves too, so a lost delete marker (a NATS restart) cannot keep
//! a dead node listed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::FleetError;
use super::record::{MemberRecord, check_node_id};

/// A join or a leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEvent {
    /// A member appeared, or its record changed (new addresses, labels, operations).
    Joined(MemberRecord),
    /// A member left (gracefully, or its record expired).
    Left(String),
}

/// A member and when its record was last seen.
#[derive(Debug, Clone)]
pub(super) struct Known {
    pub(super) record: Arc<MemberRecord>,
    pub(super) seen: Instant,
}

/// The members, shared by the task that keeps them and every reader.
pub(super) struct Directory {
    members: RwLock<BTreeMap<String, Known>>,
    events: broadcast::Sender<FleetEvent>,
}

/// How long a member may go without a refresh before it is taken for gone: its TTL and a
/// margin (the server's own expiry normally comes first); never for a static record.
#[cfg_attr(not(feature = "fleet-nats"), allow(dead_code))]
fn expiry(record: &MemberRecord) -> Option<Duration> {
    (record.ttl_secs > 0).then(|| {
        let ttl = Duration::from_secs(record.ttl_secs);
        ttl + (ttl / 2).max(Duration::from_secs(2))
    })
}

impl Directory {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            members: RwLock::new(BTreeMap::new()),
            events: broadcast::channel(1024).0,
        })
    }

    /// The members now, in id order.
    pub(super) fn members(&self) -> Vec<Arc<MemberRecord>> {
        self.members
            .read()
            .expect("not poisoned")
            .values()
            .map(|known| Arc::clone(&known.record))
            .collect()
    }

    /// The members with when each was last seen.
    pub(super) fn known(&self) -> Vec<Known> {
        self.members
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.members.read().expect("not poisoned").contains_key(id)
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<FleetEvent> {
        self.events.subscribe()
    }

    /// A record was seen (put, or read at start).
    pub(super) fn upsert(&self, record: MemberRecord) {
        let changed = {
            let mut members = self.members.write().expect("not poisoned");
            match members.get_mut(&record.id) {
                // The same record again (a refresh): only when it was seen changes.
                Some(known) if *known.record == record => {
                    known.seen = Instant::now();
                    false
                }
                _ => {
                    members.insert(
                        record.id.clone(),
                        Known {
                            record: Arc::new(record.clone()),
                            seen: Instant::now(),
                        },
                    );
                    true
                }
            }
        };
        if changed {
            let _ = self.events.send(FleetEvent::Joined(record));
        }
    }

    /// A member is gone.
    #[cfg_attr(not(feature = "fleet-nats"), allow(dead_code))]
    pub(super) fn remove(&self, id: &str) {
        let removed = self
            .members
            .write()
            .expect("not poisoned")
            .remove(id)
            .is_some();
        if removed {
            let _ = self.events.send(FleetEvent::Left(id.to_owned()));
        }
    }

    /// Removes members not refreshed within the expiry; keeps `keep` (resynchronised ids) when
    /// given, removing every other.
    #[cfg_attr(not(feature = "fleet-nats"), allow(dead_code))]
    pub(super) fn sweep(&self, keep: Option<&std::collections::HashSet<String>>) {
        let now = Instant::now();
        let gone: Vec<String> = self
            .members
            .read()
            .expect("not poisoned")
            .values()
            .filter(|known| {
                let stale = expiry(&known.record)
                    .is_some_and(|expiry| now.duration_since(known.seen) > expiry);
                let dropped = keep.is_some_and(|keep| !keep.contains(&known.record.id));
                stale || dropped
            })
            .map(|known| known.record.id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
    }
}

/// A static fleet file: `[[nodes]]` with the record fields.
///
/// ```toml
/// [[nodes]]
/// id = "n1"
/// quic = "10.0.0.1:4433"
/// http = "10.0.0.1:8080"            # optional
/// fingerprint = "SHA256:3f1c…"
/// labels = { zone = "eu" }          # optional
/// ```
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default)]
    nodes: Vec<FileNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    id: String,
    quic: std::net::SocketAddr,
    #[serde(default)]
    http: Option<String>,
    fingerprint: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The members a fleet file lists.
pub(super) fn read_file(path: &std::path::Path) -> Result<Vec<MemberRecord>, FleetError> {
    let bad = |problem: String| FleetError::File {
        path: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let file: FleetFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].lines().count().max(1))
            .unwrap_or(1);
        bad(format!("line {line}: {}", e.message()))
    })?;
    let mut seen = std::collections::HashSet::new();
    let mut records = Vec::new();
    for node in file.nodes {
        check_node_id(&node.id).map_err(bad)?;
        if !seen.insert(node.id.clone()) {
            return Err(bad(format!("node `{}` is listed twice", node.id)));
        }
        let record = MemberRecord {
            id: node.id,
            quic: node.quic,
            http: node.http,
            fingerprint: node.fingerprint,
            labels: node.labels,
            version: String::new(),
            operations: 0,
            specs_hash: String::new(),
            ttl_secs: 0,
        };
        record.pin().map_err(bad)?;
        records.push(record);
    }
    Ok(records)
}
