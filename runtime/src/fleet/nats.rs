//! Fleet membership on NATS (feature `fleet-nats`): a JetStream key-value bucket with one key
//! per node and a per-key TTL.
//!
//! A node writes its [`MemberRecord`] under its id with `Nats-TTL` (NATS ≥ 2.11) and writes it
//! again every third of the TTL; a graceful stop deletes it. A node killed outright stops
//! refreshing, its record expires and the server leaves a delete marker that watchers see.
//! The bucket (`alknet-fleet` unless configured) keeps one value per key and is created by
//! the first node or client that finds it missing, so a NATS server that restarted without
//! its storage is filled again by the nodes' next refresh.
//!
//! Clients read every key once, then watch the bucket. A watch that breaks (the server went
//! away) is set up again after a pause, and what changed meanwhile is read again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::FleetError;
use super::directory::Directory;
use super::record::MemberRecord;

/// The bucket a fleet lives in unless configured.
pub const DEFAULT_BUCKET: &str = "alknet-fleet";

/// The largest record the bucket takes, and the most it holds in all.
const MAX_RECORD: i32 = 64 * 1024;
const MAX_BUCKET: i64 = 64 * 1024 * 1024;

/// How often a client reads the whole bucket again besides watching it.
const RESYNC: Duration = Duration::from_secs(3);

/// How long the server keeps the marker of an expired or deleted record (watchers that
/// reconnect within it still see the leave).
const MARKER_TTL: Duration = Duration::from_secs(60);

/// How to reach the NATS server(s) and which bucket holds the fleet: what `async-nats`
/// offers for credentials and TLS.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// Server URLs, comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`; `tls://`
    /// requires TLS).
    pub url: String,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A token.
    pub token: Option<String>,
    /// A user and password.
    pub user_password: Option<(String, String)>,
    /// CA certificates (PEM) the server's certificate is checked against.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Refuse a connection without TLS.
    pub require_tls: bool,
    /// The key-value bucket; [`DEFAULT_BUCKET`] when empty.
    pub bucket: String,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &self.url)
            .field("bucket", &self.bucket())
            .field("require_tls", &self.require_tls)
            .finish_non_exhaustive()
    }
}

impl NatsOptions {
    /// Options for `url` with no credentials.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    fn bucket(&self) -> &str {
        if self.bucket.is_empty() {
            DEFAULT_BUCKET
        } else {
            &self.bucket
        }
    }

    /// Connects. With `keep_trying`, a server that is not up yet is waited for in the
    /// background (a node must not fail to start because NATS restarts); otherwise a
    /// connection that cannot be made within 5 s is an error.
    async fn connect(&self, keep_trying: bool) -> Result<async_nats::Client, FleetError> {
        let unreachable = |reason: String| FleetError::Nats {
            url: self.url.clone(),
            reason,
        };
        let mut options = async_nats::ConnectOptions::new()
            .name("alknet")
            .connection_timeout(Duration::from_secs(5))
            .require_tls(self.require_tls);
        if let Some(path) = &self.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| unreachable(format!("credentials file {}: {e}", path.display())))?;
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if keep_trying {
            options = options.retry_on_initial_connect();
        }
        let urls: Vec<async_nats::ServerAddr> = self
            .url
            .split(',')
            .map(|url| url.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| unreachable(format!("{e}")))?;
        options
            .connect(urls)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }
}

/// The bucket, created when missing (one value per key; per-key TTLs allowed).
async fn bucket(js: &jetstream::Context, name: &str) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.to_owned(),
        description: "alknet fleet members (one record per node id)".to_owned(),
        history: 1,
        limit_markers: Some(MARKER_TTL),
        // A record is a few hundred bytes: bounds for what a misbehaving writer can store, and
        // so for what every client reads.
        max_value_size: MAX_RECORD,
        max_bytes: MAX_BUCKET,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another node created it meanwhile.
        Err(create) => js
            .get_key_value(name)
            .await
            .map_err(|_| format!("creating the key-value bucket `{name}`: {create}")),
    }
}

/// Keeps a node's record in the fleet until [`Registration::leave`] (or drop).
pub struct Registration {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Registration {
    /// Deletes the record (waiting up to 3 s for NATS to take it) and stops refreshing.
    pub async fn leave(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Publishes `record` so that it is gone within `ttl` (whole seconds, at least 1) of this node
/// dying, and keeps it fresh until [`Registration::leave`].
pub async fn register(
    options: &NatsOptions,
    mut record: MemberRecord,
    ttl: Duration,
) -> Result<Registration, FleetError> {
    // `ttl` is the promise: a node that died is gone from the fleet within it. NATS expires a
    // record its TTL after the last refresh, and the server's expiry takes a moment to be
    // seen, so records are written with one second less (whole seconds, at least one).
    let promised = ttl.as_secs().max(1);
    record.ttl_secs = promised;
    let ttl = Duration::from_secs(promised.saturating_sub(1).max(1));
    let client = options.connect(true).await?;
    let js = jetstream::new(client);
    let bucket_name = options.bucket().to_owned();
    let stop = CancellationToken::new();
    let task = tokio::spawn(refresh(js, bucket_name, record, ttl, stop.clone()));
    Ok(Registration {
        stop,
        task: Some(task),
    })
}

async fn refresh(
    js: jetstream::Context,
    bucket_name: String,
    record: MemberRecord,
    ttl: Duration,
    stop: CancellationToken,
) {
    let payload = bytes::Bytes::from(serde_json::to_vec(&record).expect("a record serializes"));
    let subject = format!("$KV.{bucket_name}.{}", record.id);
    let mut store: Option<kv::Store> = None;
    let mut registered = false;
    loop {
        if store.is_none() {
            match bucket(&js, &bucket_name).await {
                Ok(found) => store = Some(found),
                Err(reason) => warn!(%reason, "fleet: no bucket yet"),
            }
        }
        if store.is_some() {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_TTL,
                ttl.as_secs().to_string().as_str(),
            );
            let published = async {
                js.publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(ttl / 3 + Duration::from_secs(1), published).await {
                Ok(Ok(_)) => {
                    if !registered {
                        info!(node = %record.id, bucket = %bucket_name, ?ttl, "fleet: registered");
                        registered = true;
                    }
                    debug!(node = %record.id, "fleet: record refreshed");
                }
                Ok(Err(reason)) => {
                    warn!(%reason, "fleet: refreshing the record failed; trying again");
                    // The bucket may be gone (a server that lost its storage): look again.
                    store = None;
                    registered = false;
                }
                Err(_) => {
                    warn!("fleet: NATS did not acknowledge the record in time; trying again");
                    registered = false;
                }
            }
        }
        let pause = if registered {
            ttl / 3
        } else {
            Duration::from_millis(500)
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    if let Some(store) = store {
        match tokio::time::timeout(Duration::from_secs(2), store.delete(&record.id)).await {
            Ok(Ok(())) => info!(node = %record.id, "fleet: left"),
            _ => {
                warn!(node = %record.id, "fleet: could not delete the record; it expires within its TTL")
            }
        }
    }
}

/// Connects and fills `directory` from the bucket, then keeps it current in the background
/// until `stop`. Returns once the first full read is done.
pub(super) async fn follow(
    options: &NatsOptions,
    directory: Arc<Directory>,
    stop: CancellationToken,
) -> Result<(), FleetError> {
    let client = options.connect(false).await?;
    let js = jetstream::new(client);
    let name = options.bucket().to_owned();
    let store = bucket(&js, &name)
        .await
        .map_err(|reason| FleetError::Nats {
            url: options.url.clone(),
            reason,
        })?;
    read_all(&store, &directory)
        .await
        .map_err(|reason| FleetError::Nats {
            url: options.url.clone(),
            reason,
        })?;
    tokio::spawn(watch(js, name, store, directory, stop));
    Ok(())
}

/// Reads every record, and removes members that are no longer there.
async fn read_all(store: &kv::Store, directory: &Directory) -> Result<(), String> {
    let mut keys = store.keys().await.map_err(|e| e.to_string())?;
    let mut present = std::collections::HashSet::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| e.to_string())?;
        if let Ok(Some(value)) = store.get(&key).await {
            match serde_json::from_slice::<MemberRecord>(&value) {
                Ok(record) if record.id == key => {
                    present.insert(key);
                    directory.upsert(record);
                }
                _ => warn!(%key, "fleet: a record that is not an alknet member; ignored"),
            }
        }
    }
    directory.sweep(Some(&present));
    Ok(())
}

async fn watch(
    js: jetstream::Context,
    name: String,
    mut store: kv::Store,
    directory: Arc<Directory>,
    stop: CancellationToken,
) {
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            match bucket(&js, &name).await {
                Ok(found) => store = found,
                Err(reason) => {
                    warn!(%reason, "fleet: the bucket cannot be read; trying again");
                    continue;
                }
            }
            if let Err(reason) = read_all(&store, &directory).await {
                warn!(%reason, "fleet: reading the bucket failed; trying again");
                continue;
            }
        }
        first = false;
        // The bucket's identity: a bucket created again (a server that lost its storage)
        // has a new creation time, and a watch of the old one would stay silent.
        let created = store.status().await.ok().map(|status| status.info.created);
        let mut entries = match store.watch_all().await {
            Ok(entries) => entries,
            Err(error) => {
                warn!(%error, "fleet: watching the bucket failed; trying again");
                continue;
            }
        };
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let mut resync = tokio::time::interval(RESYNC);
        resync.reset();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sweep.tick() => directory.sweep(None),
                _ = resync.tick() => {
                    // A watch can go quiet without an error (its server restarted): reading
                    // everything again now and then bounds what it can miss.
                    if let Err(reason) = read_all(&store, &directory).await {
                        warn!(%reason, "fleet: reading the bucket failed; watching again");
                        break;
                    }
                    let now = store.status().await.ok().map(|status| status.info.created);
                    if now != created {
                        info!("fleet: the bucket was created again; watching again");
                        break;
                    }
                }
                entry = entries.next() => match entry {
                    Some(Ok(entry)) => match entry.operation {
                        kv::Operation::Put => match serde_json::from_slice::<MemberRecord>(&entry.value) {
                            Ok(record) if record.id == entry.key => directory.upsert(record),
                            _ => warn!(key = %entry.key, "fleet: a record that is not an alknet member; ignored"),
                        },
                        kv::Operation::Delete | kv::Operation::Purge => directory.remove(&entry.key),
                    },
                    Some(Err(error)) => {
                        warn!(%error, "fleet: the bucket's watch broke; watching again");
                        break;
                    }
                    None => {
                        warn!("fleet: the bucket's watch ended; watching again");
                        break;
                    }
                },
            }
        }
    }
}
