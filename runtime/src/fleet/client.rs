//! [`Fleet`]: one client over every node of a fleet. Its members come from NATS (kept
//! current) or a static file; connections to them are opened when first needed, pinned to the
//! fingerprint each member published, and kept.
//!
//! - [`Fleet::call_all`] calls every matching member at once and answers per node;
//! - [`Fleet::call_any`] calls one: of two members picked at random, the one with fewer calls
//!   in flight from this client ("the power of two choices"); a query whose connection died is
//!   tried once more on another member;
//! - [`Fleet::subscribe_all`] merges the items of every matching member, each tagged with its
//!   node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, SelectAll};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::FleetError;
use super::directory::{Directory, FleetEvent};
use super::record::{MemberRecord, Selector};
use crate::connection::Connection;
use crate::error::CallError;
use crate::peer::CallOptions;
use crate::quic::{Client, ClientOptions};
use crate::tls::ServerVerification;

/// How long dialling one member may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a fleet's members are listed.
#[derive(Debug, Clone)]
pub enum FleetSource {
    /// A NATS server (`nats://HOST:PORT`), feature `fleet-nats`.
    #[cfg(feature = "fleet-nats")]
    Nats(super::nats::NatsOptions),
    /// A static TOML file of `[[nodes]]`.
    File(std::path::PathBuf),
}

impl FleetSource {
    /// `nats://…` or `tls://…` is NATS; anything else is a file path.
    pub fn parse(text: &str) -> Result<Self, FleetError> {
        if text.starts_with("nats://") || text.starts_with("tls://") {
            #[cfg(feature = "fleet-nats")]
            return Ok(FleetSource::Nats(super::nats::NatsOptions::new(text)));
            #[cfg(not(feature = "fleet-nats"))]
            return Err(FleetError::Nats {
                url: text.to_owned(),
                reason: "this build has no NATS support (feature `fleet-nats`)".to_owned(),
            });
        }
        Ok(FleetSource::File(text.into()))
    }
}

/// One node's answer.
#[derive(Debug)]
pub struct NodeResult<T> {
    /// The node's id.
    pub node: String,
    /// What it answered.
    pub result: Result<T, CallError>,
}

/// One item of a fan-out subscription: an item or the end of one node's stream.
#[derive(Debug)]
pub struct NodeItem {
    /// The node's id.
    pub node: String,
    /// `Ok(Some(item))`, `Ok(None)` when the node's stream completed, or the error it ended
    /// with.
    pub item: Result<Option<Value>, CallError>,
}

/// A connection to one member, opened when first needed.
struct MemberLink {
    record: Arc<MemberRecord>,
    connection: tokio::sync::Mutex<Option<Connection>>,
    in_flight: AtomicUsize,
}

/// A client over a fleet.
pub struct Fleet {
    directory: Arc<Directory>,
    client: Client,
    links: Mutex<HashMap<String, Arc<MemberLink>>>,
    stop: CancellationToken,
    /// A small xorshift state for the random picks of `call_any`.
    rng: Mutex<u64>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Fleet {
    /// Reads the members from `source` (and, on NATS, keeps following them). `options` say
    /// who this client is (a certificate, a token); each member's certificate is checked
    /// against the fingerprint it published, whatever `options.verification` says.
    pub async fn connect(source: FleetSource, options: ClientOptions) -> Result<Fleet, FleetError> {
        let directory = Directory::new();
        let stop = CancellationToken::new();
        match source {
            #[cfg(feature = "fleet-nats")]
            FleetSource::Nats(nats) => {
                super::nats::follow(&nats, Arc::clone(&directory), stop.clone()).await?;
            }
            FleetSource::File(path) => {
                for record in super::directory::read_file(&path)? {
                    directory.upsert(record);
                }
            }
        }
        let client = Client::new(options).map_err(|e| FleetError::Client(e.to_string()))?;
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(0x9e37_79b9_7f4a_7c15);
            hasher.finish() | 1
        };
        let fleet = Fleet {
            directory,
            client,
            links: Mutex::new(HashMap::new()),
            stop,
            rng: Mutex::new(seed),
        };
        Ok(fleet)
    }

    /// The members now, in id order.
    pub fn members(&self) -> Vec<MemberRecord> {
        self.directory
            .members()
            .into_iter()
            .map(|record| (*record).clone())
            .collect()
    }

    /// The members with how long ago each was last seen (zero for a static fleet's).
    pub fn members_seen(&self) -> Vec<(MemberRecord, Duration)> {
        self.directory
            .known()
            .into_iter()
            .map(|known| ((*known.record).clone(), known.seen.elapsed()))
            .collect()
    }

    /// Joins and leaves from now on (a slow reader that falls more than 1024 events behind
    /// misses some: read [`Fleet::members`] again when that matters).
    pub fn watch(&self) -> impl Stream<Item = FleetEvent> + Send + 'static {
        let receiver = self.directory.subscribe();
        stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => return Some((event, receiver)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Calls `op` on every member `selector` matches, at once; answers per node, in id order.
    /// A node that cannot be reached answers a retryable error; the others are not held up.
    pub async fn call_all(
        &self,
        op: &str,
        input: Value,
        selector: &Selector,
    ) -> Vec<NodeResult<Value>> {
        let calls = self.matching(selector).into_iter().map(|record| {
            let input = input.clone();
            async move {
                let result = self.call_on(&record, op, input).await;
                NodeResult {
                    node: record.id.clone(),
                    result,
                }
            }
        });
        futures_util::future::join_all(calls).await
    }

    /// Calls `op` on one member `selector` matches: of two picked at random, the one with
    /// fewer calls in flight. When the call fails because the member's connection died (or
    /// it could not be dialled) and `op` is a query there, it is tried once on another.
    pub async fn call_any(
        &self,
        op: &str,
        input: Value,
        selector: &Selector,
    ) -> Result<NodeResult<Value>, CallError> {
        let candidates = self.matching(selector);
        let first = self
            .pick(&candidates, None)
            .ok_or_else(|| no_member(selector))?;
        let result = self.call_on(&first, op, input.clone()).await;
        let Err(error) = &result else {
            return Ok(NodeResult {
                node: first.id.clone(),
                result,
            });
        };
        let link = self.link(&first);
        let connection_died = error.retryable
            && link
                .connection
                .lock()
                .await
                .as_ref()
                .is_none_or(Connection::is_closed);
        if connection_died
            && let Some(second) = self.pick(&candidates, Some(&first.id))
            && self.is_query(&second, op).await
        {
            let result = self.call_on(&second, op, input).await;
            return Ok(NodeResult {
                node: second.id.clone(),
                result,
            });
        }
        Ok(NodeResult {
            node: first.id.clone(),
            result,
        })
    }

    /// Subscribes to `op` on every member `selector` matches and merges their items, each
    /// tagged with its node; each node's stream ends with an item saying how.
    pub async fn subscribe_all(
        &self,
        op: &str,
        input: Value,
        selector: &Selector,
    ) -> impl Stream<Item = NodeItem> + Send + 'static {
        let opened =
            futures_util::future::join_all(self.matching(selector).into_iter().map(|record| {
                let input = input.clone();
                async move {
                    let subscribed = async {
                        let connection = self.connection(&record).await?;
                        connection.subscribe_json(op, input).await
                    }
                    .await;
                    (record.id.clone(), subscribed)
                }
            }))
            .await;
        let mut merged: SelectAll<BoxStream<'static, NodeItem>> = SelectAll::new();
        for (node, subscribed) in opened {
            match subscribed {
                Ok(items) => {
                    let tag = node.clone();
                    let tagged = items
                        .map(move |item| NodeItem {
                            node: tag.clone(),
                            item: item.map(Some),
                        })
                        .chain(
                            stream::once(async move { node }).filter_map(|node| async move {
                                // The end of a stream that did not end with an error.
                                Some(NodeItem {
                                    node,
                                    item: Ok(None),
                                })
                            }),
                        );
                    merged.push(Box::pin(ends_after_error(tagged)));
                }
                Err(error) => merged.push(Box::pin(stream::once(async move {
                    NodeItem {
                        node,
                        item: Err(error),
                    }
                }))),
            }
        }
        merged
    }

    fn matching(&self, selector: &Selector) -> Vec<Arc<MemberRecord>> {
        self.directory
            .members()
            .into_iter()
            .filter(|record| selector.matches(record))
            .collect()
    }

    /// Two random candidates (other than `except`), the one with fewer calls in flight.
    fn pick(
        &self,
        candidates: &[Arc<MemberRecord>],
        except: Option<&str>,
    ) -> Option<Arc<MemberRecord>> {
        let pool: Vec<&Arc<MemberRecord>> = candidates
            .iter()
            .filter(|r| Some(r.id.as_str()) != except)
            .collect();
        match pool.len() {
            0 => None,
            1 => Some(Arc::clone(pool[0])),
            n => {
                let a = self.random(n);
                let mut b = self.random(n - 1);
                if b >= a {
                    b += 1;
                }
                let load = |r: &Arc<MemberRecord>| self.link(r).in_flight.load(Ordering::Relaxed);
                let chosen = if load(pool[b]) < load(pool[a]) {
                    pool[b]
                } else {
                    pool[a]
                };
                Some(Arc::clone(chosen))
            }
        }
    }

    fn random(&self, below: usize) -> usize {
        let mut state = self.rng.lock().expect("not poisoned");
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % below as u64) as usize
    }

    /// The link to `record`'s node, replaced when its record changed (new address or
    /// certificate).
    fn link(&self, record: &Arc<MemberRecord>) -> Arc<MemberLink> {
        let mut links = self.links.lock().expect("not poisoned");
        if let Some(link) = links.get(&record.id)
            && (Arc::ptr_eq(&link.record, record) || link.record == *record)
        {
            return Arc::clone(link);
        }
        // A new member, or one whose record changed; members that left are forgotten now.
        links.retain(|id, _| self.directory.contains(id));
        let link = Arc::new(MemberLink {
            record: Arc::clone(record),
            connection: tokio::sync::Mutex::new(None),
            in_flight: AtomicUsize::new(0),
        });
        links.insert(record.id.clone(), Arc::clone(&link));
        link
    }

    /// The open connection to `record`'s node, dialled (pinned to its fingerprint) when
    /// there is none.
    async fn connection(&self, record: &Arc<MemberRecord>) -> Result<Connection, CallError> {
        let link = self.link(record);
        let mut connection = link.connection.lock().await;
        if let Some(open) = connection.as_ref()
            && !open.is_closed()
        {
            return Ok(open.clone());
        }
        let unreachable = |reason: String| {
            CallError::internal(format!(
                "fleet member `{}` at {} is unreachable: {reason}",
                record.id, record.quic
            ))
            .with_retryable(true)
        };
        let pin = record.pin().map_err(unreachable)?;
        let dialled = tokio::time::timeout(
            DIAL_TIMEOUT,
            self.client
                .connect_verified(record.quic, "localhost", &ServerVerification::pin(pin)),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {DIAL_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
        *connection = Some(dialled.clone());
        Ok(dialled)
    }

    async fn call_on(
        &self,
        record: &Arc<MemberRecord>,
        op: &str,
        input: Value,
    ) -> Result<Value, CallError> {
        let link = self.link(record);
        link.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let connection = self.connection(record).await?;
            connection
                .call_json_with(op, input, CallOptions::default())
                .await
        }
        .await;
        link.in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Whether `op` is a query on `record`'s node (its discovery says so).
    async fn is_query(&self, record: &Arc<MemberRecord>, op: &str) -> bool {
        let Ok(connection) = self.connection(record).await else {
            return false;
        };
        let name = op.trim_start_matches('/');
        connection
            .call_json(crate::discovery::SCHEMA, serde_json::json!({"name": name}))
            .await
            .is_ok_and(|spec| spec["op_type"] == "query")
    }
}

/// Ends a node's tagged stream after its first error item (no completion item follows it).
fn ends_after_error(
    items: impl Stream<Item = NodeItem> + Send + 'static,
) -> impl Stream<Item = NodeItem> + Send + 'static {
    items.scan(false, |failed, item| {
        let pass = if *failed {
            None
        } else {
            *failed = item.item.is_err();
            Some(item)
        };
        futures_util::future::ready(pass)
    })
}

fn no_member(selector: &Selector) -> CallError {
    CallError::not_found(format!("no fleet member matches {selector:?}"))
}
