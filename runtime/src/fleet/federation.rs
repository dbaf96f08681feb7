//! Federation: a node that serves every member's external operations as
//! `fleet/<node>/<op>`, through its own QUIC, HTTP, OpenAPI and MCP surfaces, following joins
//! and leaves.
//!
//! Each member is imported with `from_call` (its discovery read over a connection pinned to
//! its published fingerprint) into the registry's live `fleet` namespace. A member that
//! cannot be reached when it joins is tried again with backoff; one that leaves has its
//! operations removed (calls already running go on). The federating node calls members as
//! itself, and each forwarded operation keeps the member's access rules, so they apply here and
//! again at the member.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::client::Fleet;
use super::directory::FleetEvent;
use super::record::MemberRecord;
use crate::adapters::CallImport;
use crate::adapters::call::RemoteOperations;
use crate::quic::ClientOptions;
use crate::registry::LiveOperations;
use crate::tls::ServerVerification;

/// The live namespace federated operations are served in.
pub const NAMESPACE: &str = "fleet";

/// Follows `fleet` and keeps `live` (the registry's `fleet` namespace) serving every member's
/// external operations, except this node's own (`own_id`). `options` say who this node is to
/// the members. Runs until the returned task is aborted or the fleet is dropped.
pub fn federate(
    fleet: Arc<Fleet>,
    live: LiveOperations,
    own_id: Option<String>,
    options: ClientOptions,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Subscribe first, so no join between the listing and the watch is missed.
        let mut events = Box::pin(fleet.watch());
        let mut members: HashMap<String, JoinHandle<()>> = HashMap::new();
        let join = |record: MemberRecord, members: &mut HashMap<String, JoinHandle<()>>| {
            if Some(&record.id) == own_id.as_ref() {
                return;
            }
            if let Some(previous) = members.remove(&record.id) {
                previous.abort();
            }
            let task = tokio::spawn(import_member(record.clone(), live.clone(), options.clone()));
            members.insert(record.id, task);
        };
        for record in fleet.members() {
            join(record, &mut members);
        }
        while let Some(event) = events.next().await {
            match event {
                FleetEvent::Joined(record) => join(record, &mut members),
                FleetEvent::Left(id) => {
                    if let Some(task) = members.remove(&id) {
                        task.abort();
                    }
                    let removed = live.remove_prefix(&format!("{NAMESPACE}/{id}/"));
                    info!(node = %id, removed, "federation: member left");
                }
            }
        }
    })
}

/// Imports one member's operations, trying again with backoff until it answers.
async fn import_member(record: MemberRecord, live: LiveOperations, options: ClientOptions) {
    let prefix = format!("{NAMESPACE}/{}", record.id);
    let mut backoff = Duration::from_millis(200);
    loop {
        match read_member(&record, &options).await {
            Ok(remote) => match remote.forwarding(&prefix, true) {
                Ok(operations) => {
                    live.remove_prefix(&format!("{prefix}/"));
                    let mut served = 0;
                    for (spec, handler) in operations {
                        let name = spec.name.clone();
                        match live.insert(spec, handler) {
                            Ok(()) => served += 1,
                            Err(error) => warn!(%name, %error, "federation: operation not served"),
                        }
                    }
                    info!(node = %record.id, operations = served, "federation: member served");
                    // Keep the connection (in the forwarding handlers) and stop.
                    return;
                }
                Err(error) => warn!(node = %record.id, %error, "federation: member not served"),
            },
            Err(reason) => {
                warn!(node = %record.id, %reason, ?backoff, "federation: member unreachable; trying again");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn read_member(
    record: &MemberRecord,
    options: &ClientOptions,
) -> Result<RemoteOperations, String> {
    let mut client = options.clone();
    client.verification = ServerVerification::pin(record.pin()?);
    let import = CallImport {
        name: record.id.clone(),
        addr: record.quic,
        server_name: "localhost".to_owned(),
        client,
        external: true,
    };
    RemoteOperations::read(&import)
        .await
        .map_err(|e| e.to_string())
}
