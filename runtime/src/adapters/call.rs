//! `from_call`: another alknet node's external operations, imported under a local name.
//!
//! [`Registry::import_call`] dials the remote, reads its discovery (`services/list`, then
//! `services/schema` for each operation) and registers one forwarding operation per remote
//! operation, named `<import>/<remote name>` and keeping the remote spec (kind, schemas,
//! errors, description, access rules), so this node's discovery, OpenAPI document and MCP tools
//! describe it exactly. It is internal (for composition) unless the import is external.
//!
//! A forwarded call goes out as this node (its client certificate or token from the import's
//! [`ClientOptions`]), never with the original caller's token: the composing authority of
//! design §6. The remaining deadline goes on as `timeout_ms`; dropping the forwarded call (the
//! caller aborted, the deadline passed) aborts it on the remote, so an abort travels down a
//! chain of nodes. Outputs are checked against the imported output schema: a remote that breaks
//! its own contract gives an error, not a wrong answer. A connection that is lost is dialled
//! again on the next call, with backoff while the remote stays away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alknet_spec::{OperationSpec, Visibility};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{ImportError, OutputCheck};
use crate::connection::Connection;
use crate::discovery::{LIST, SCHEMA, ServiceList};
use crate::error::CallError;
use crate::peer::CallOptions;
use crate::quic::{Client, ClientOptions};
use crate::registry::{Handler, Registry};

/// One import of another node's operations.
#[derive(Clone)]
pub struct CallImport {
    /// The local name: imported operations are called `<name>/<remote name>`. One name
    /// segment.
    pub name: String,
    /// The remote node's QUIC address.
    pub addr: SocketAddr,
    /// The name its certificate is checked for (with pinning, any name works).
    pub server_name: String,
    /// How this node dials it: verification (pin, CA), and who it is there (a client
    /// certificate, a token).
    pub client: ClientOptions,
    /// Re-export the imported operations through this node's surfaces (QUIC, HTTP, MCP) under
    /// this node's access rules; otherwise they are internal, for composition.
    pub external: bool,
}

/// Shows where and how the import goes, never its credentials.
impl std::fmt::Debug for CallImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallImport")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("external", &self.external)
            .finish_non_exhaustive()
    }
}

/// How long one dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait after a failed dial; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Registry {
    /// Imports the external operations of the node `import` names, as forwarding operations;
    /// returns their local names. Fails when the remote cannot be reached or its discovery
    /// cannot be read, and when an operation's local name is taken.
    pub async fn import_call(&mut self, import: CallImport) -> Result<Vec<String>, ImportError> {
        super::check_import_name(&import.name)?;
        let remote = RemoteOperations::read(&import).await?;
        let mut names = Vec::new();
        for (spec, handler) in remote.forwarding(&import.name, import.external)? {
            names.push(self.register_imported(&import.name, spec, handler)?);
        }
        info!(import = %import.name, remote = %import.addr, operations = names.len(), "imported");
        Ok(names)
    }
}

/// A remote node's external operations, read through its discovery over a connection that is
/// kept (and dialled again when lost): what `import_call` registers, and what a federation
/// serves for each member.
pub(crate) struct RemoteOperations {
    remote: Arc<Remote>,
    specs: Vec<OperationSpec>,
}

impl RemoteOperations {
    /// Dials the node `import` names and reads its discovery.
    pub(crate) async fn read(import: &CallImport) -> Result<Self, ImportError> {
        let remote = Remote::new(import)?;
        let connection = remote
            .dial()
            .await
            .map_err(|reason| ImportError::Unreachable {
                name: import.name.clone(),
                remote: import.addr.to_string(),
                reason,
            })?;
        let specs = read_specs(&connection)
            .await
            .map_err(|reason| ImportError::Discovery {
                name: import.name.clone(),
                reason,
            })?;
        *remote.state.lock().await = Dialled::Connected(connection);
        let _ = remote.imported.set(specs.clone());
        Ok(Self {
            remote: Arc::new(remote),
            specs,
        })
    }

    /// The forwarding operations, named `<prefix>/<remote name>` (a prefix of one or more
    /// segments), external or internal.
    pub(crate) fn forwarding(
        &self,
        prefix: &str,
        external: bool,
    ) -> Result<Vec<(OperationSpec, Handler)>, ImportError> {
        self.specs
            .iter()
            .map(|spec| {
                let local = forwarding_spec(prefix, external, spec);
                Ok((local, forwarding_handler(&self.remote, spec)?))
            })
            .collect()
    }
}

/// The remote's external operations as it describes them, discovery built-ins left out.
async fn read_specs(connection: &Connection) -> Result<Vec<OperationSpec>, String> {
    let list = connection
        .call_json(LIST, json!({}))
        .await
        .map_err(|e| format!("`{LIST}`: {e}"))?;
    let list: ServiceList =
        serde_json::from_value(list).map_err(|e| format!("`{LIST}` answered: {e}"))?;
    let mut specs = Vec::with_capacity(list.operations.len());
    for summary in list.operations {
        if crate::discovery::is_builtin(&summary.name) {
            continue;
        }
        let spec = connection
            .call_json(SCHEMA, json!({"name": summary.name}))
            .await
            .map_err(|e| format!("`{SCHEMA}` for `{}`: {e}", summary.name))?;
        let spec: OperationSpec = serde_json::from_value(spec)
            .map_err(|e| format!("`{SCHEMA}` for `{}` answered: {e}", summary.name))?;
        specs.push(spec);
    }
    Ok(specs)
}

/// The local spec of an imported operation: the remote one under `prefix`.
fn forwarding_spec(prefix: &str, external: bool, remote: &OperationSpec) -> OperationSpec {
    let mut spec = remote.clone();
    spec.name = format!("{prefix}/{}", remote.name);
    spec.namespace = alknet_spec::namespace_of(&spec.name).to_owned();
    spec.visibility = if external {
        Visibility::External
    } else {
        Visibility::Internal
    };
    spec
}

/// Forwards calls of the local operation to `spec.name` on the remote.
fn forwarding_handler(remote: &Arc<Remote>, spec: &OperationSpec) -> Result<Handler, ImportError> {
    let outputs = Arc::new(
        OutputCheck::new(spec).map_err(|reason| ImportError::Discovery {
            name: remote.import.clone(),
            reason,
        })?,
    );
    let remote = Arc::clone(remote);
    let op: Arc<str> = spec.name.as_str().into();
    Ok(match spec.op_type {
        alknet_spec::OpType::Subscription => Handler::subscription(move |ctx, input| {
            let (remote, op, outputs) = (Arc::clone(&remote), Arc::clone(&op), outputs.clone());
            async move {
                let connection = remote.connection().await?;
                let items = connection
                    .subscribe_json_with(&op, input, forwarded(&ctx))
                    .await
                    .map_err(|e| remote.explain(&connection, e))?;
                let (remote, connection) = (Arc::clone(&remote), connection.clone());
                Ok(items.map(move |item| match item {
                    Ok(item) => outputs.check(item),
                    Err(error) => Err(remote.explain(&connection, error)),
                }))
            }
        }),
        _ => Handler::unary(move |ctx, input| {
            let (remote, op, outputs) = (Arc::clone(&remote), Arc::clone(&op), outputs.clone());
            async move {
                let connection = remote.connection().await?;
                match connection.call_json_with(&op, input, forwarded(&ctx)).await {
                    Ok(output) => outputs.check(output),
                    Err(error) => Err(remote.explain(&connection, error)),
                }
            }
        }),
    })
}

/// How a call is forwarded: with what is left of the caller's deadline, and no token of the
/// caller's (the import's `ClientOptions` say who this node is).
fn forwarded(ctx: &crate::context::Context) -> CallOptions {
    CallOptions {
        timeout: ctx.remaining(),
        auth_token: None,
        // A resumed subscription resumes there too (the remote spec, kept here, says whether
        // it can).
        resume_after: ctx.resume_after(),
    }
}

/// The connection to one imported node, dialled again when lost.
struct Remote {
    import: String,
    addr: SocketAddr,
    server_name: String,
    client: Client,
    state: Mutex<Dialled>,
    /// The specs imported at start-up, to compare with what the remote says after a re-dial.
    imported: std::sync::OnceLock<Vec<OperationSpec>>,
}

enum Dialled {
    Connected(Connection),
    /// The last dial failed: the next waits until `retry_at`, then `backoff` doubles.
    Failed {
        retry_at: Instant,
        backoff: Duration,
        reason: String,
    },
    /// Not dialled yet, or the connection was lost (the next call dials at once).
    Idle,
}

impl Remote {
    fn new(import: &CallImport) -> Result<Self, ImportError> {
        let client = Client::new(import.client.clone()).map_err(|e| ImportError::Unreachable {
            name: import.name.clone(),
            remote: import.addr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            import: import.name.clone(),
            addr: import.addr,
            server_name: import.server_name.clone(),
            client,
            state: Mutex::new(Dialled::Idle),
            imported: std::sync::OnceLock::new(),
        })
    }

    async fn dial(&self) -> Result<Connection, String> {
        match tokio::time::timeout(
            DIAL_TIMEOUT,
            self.client.connect(self.addr, &self.server_name),
        )
        .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {DIAL_TIMEOUT:?}")),
        }
    }

    /// The live connection; dials when there is none (not before the backoff is over after a
    /// failed dial).
    async fn connection(&self) -> Result<Connection, CallError> {
        let mut state = self.state.lock().await;
        let backoff = match &*state {
            Dialled::Connected(connection) if !connection.is_closed() => {
                return Ok(connection.clone());
            }
            Dialled::Failed {
                retry_at,
                backoff,
                reason,
            } => {
                if Instant::now() < *retry_at {
                    return Err(self.unreachable(reason));
                }
                *backoff
            }
            Dialled::Connected(_) | Dialled::Idle => FIRST_BACKOFF,
        };
        match self.dial().await {
            Ok(connection) => {
                info!(import = %self.import, remote = %self.addr, "dialled the imported node");
                *state = Dialled::Connected(connection.clone());
                self.compare_specs(&connection);
                Ok(connection)
            }
            Err(reason) => {
                warn!(import = %self.import, remote = %self.addr, %reason, "imported node unreachable");
                let error = self.unreachable(&reason);
                *state = Dialled::Failed {
                    retry_at: Instant::now() + backoff,
                    backoff: (backoff * 2).min(MAX_BACKOFF),
                    reason,
                };
                Err(error)
            }
        }
    }

    /// Reads the remote's discovery again after a re-dial, in the background, and warns when
    /// it no longer matches what was imported: the registry is fixed while the node serves, so
    /// a changed remote is picked up at the next start (docs/adapters.md).
    fn compare_specs(&self, connection: &Connection) {
        let Some(imported) = self.imported.get().cloned() else {
            return;
        };
        let (connection, import, addr) = (connection.clone(), self.import.clone(), self.addr);
        tokio::spawn(async move {
            match read_specs(&connection).await {
                Ok(now) if now == imported => {}
                Ok(now) => warn!(
                    import = %import,
                    remote = %addr,
                    imported = imported.len(),
                    now = now.len(),
                    "the imported node's operations changed since start-up; restart to import them"
                ),
                Err(reason) => {
                    warn!(import = %import, remote = %addr, %reason, "re-reading the imported node's discovery failed")
                }
            }
        });
    }

    fn unreachable(&self, reason: &str) -> CallError {
        CallError::internal(format!(
            "imported node `{}` at {} is unreachable: {reason}",
            self.import, self.addr
        ))
        .with_retryable(true)
    }

    /// Says which import a transport failure happened on; errors the remote sent pass as they
    /// are.
    fn explain(&self, connection: &Connection, error: CallError) -> CallError {
        if !connection.is_closed() {
            return error;
        }
        CallError::internal(format!(
            "the connection to imported node `{}` at {} was lost: {}",
            self.import, self.addr, error.message
        ))
        .with_retryable(true)
    }
}
