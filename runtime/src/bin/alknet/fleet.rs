//! `alknet serve --fleet …` (membership, federation) and `alknet fleet ls|call|subscribe`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use alknet::fleet::federation;
use alknet::fleet::{Fleet, FleetSource, MemberRecord, NodeItem, Selector};
use alknet::{ClientOptions, Registry, Server, ServerVerification, TlsIdentity};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::Output;

/// Where the fleet is, for `serve` and `fleet …`.
#[derive(Args, Clone)]
pub struct SourceArgs {
    /// The fleet: `nats://HOST:PORT` (NATS, comma-separated servers; `tls://` requires TLS)
    /// or a TOML file listing `[[nodes]]`.
    #[arg(long, env = "ALKNET_FLEET", value_name = "nats://…|FILE")]
    pub fleet: Option<String>,
    /// NATS credentials file (`.creds`: JWT and NKey seed).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// NATS token.
    #[arg(long, env = "ALKNET_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// CA certificates (PEM) to verify the NATS server with.
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS with mutual TLS.
    #[arg(long, value_name = "FILE", requires = "nats_key")]
    pub nats_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "nats_cert")]
    pub nats_key: Option<PathBuf>,
    /// The NATS key-value bucket holding the fleet.
    #[arg(long, default_value = "alknet-fleet")]
    pub nats_bucket: String,
}

impl SourceArgs {
    fn source(&self) -> anyhow::Result<Option<FleetSource>> {
        let Some(text) = &self.fleet else {
            return Ok(None);
        };
        let source = FleetSource::parse(text)?;
        #[cfg(feature = "fleet-nats")]
        let source = match source {
            FleetSource::Nats(mut nats) => {
                nats.credentials_file = self.nats_creds.clone();
                nats.token = self.nats_token.clone();
                nats.tls_ca = self.nats_ca.clone();
                nats.tls_client = self.nats_cert.clone().zip(self.nats_key.clone());
                nats.require_tls = text.starts_with("tls://");
                nats.bucket = self.nats_bucket.clone();
                FleetSource::Nats(nats)
            }
            other => other,
        };
        Ok(Some(source))
    }
}

/// `serve`'s fleet options.
#[derive(Args)]
pub struct ServeFleetArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// This node's id in the fleet (one name segment; default: the host name).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// A label others select this node by (repeat for several).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The QUIC address to publish, when --listen is not one others can reach (0.0.0.0).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<std::net::SocketAddr>,
    /// Seconds this node's record lives without a refresh (it is refreshed every third of
    /// that): how soon a node that died leaves the fleet.
    #[arg(long, default_value_t = 10)]
    pub fleet_ttl: u64,
    /// Serve every member's external operations as `fleet/<node>/<op>`, following joins and
    /// leaves.
    #[arg(long, requires = "fleet")]
    pub federate: bool,
}

/// What a serving node does in its fleet; ended by [`Membership::leave`].
pub struct Membership {
    #[cfg(feature = "fleet-nats")]
    registration: Option<alknet::fleet::nats::Registration>,
    federation: Option<tokio::task::JoinHandle<()>>,
    _fleet: Option<Arc<Fleet>>,
}

impl Membership {
    /// Leaves the fleet (the record is deleted) and stops federating.
    pub async fn leave(self) {
        if let Some(task) = &self.federation {
            task.abort();
        }
        #[cfg(feature = "fleet-nats")]
        if let Some(registration) = self.registration {
            registration.leave().await;
        }
    }
}

/// Reserves `fleet/…` in the registry when federating (before the registry goes to the
/// server).
pub fn prepare(
    args: &ServeFleetArgs,
    registry: &mut Registry,
) -> anyhow::Result<Option<alknet::LiveOperations>> {
    if !args.federate {
        return Ok(None);
    }
    Ok(Some(registry.live(federation::NAMESPACE)?))
}

/// The host name as a node id (characters an id cannot hold become `-`).
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let id: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() { "node".to_owned() } else { id }
}

/// Joins the fleet (NATS: publishes this node's record) and starts federating.
pub async fn join(
    args: &ServeFleetArgs,
    server: &Server,
    http: Option<String>,
    live: Option<alknet::LiveOperations>,
) -> anyhow::Result<Option<Membership>> {
    let Some(source) = args.source.source()? else {
        return Ok(None);
    };
    let id = args.node_id.clone().unwrap_or_else(default_node_id);
    alknet::fleet::record::check_node_id(&id).map_err(anyhow::Error::msg)?;
    let quic = match args.advertise {
        Some(addr) => addr,
        None if server.local_addr().ip().is_unspecified() => anyhow::bail!(
            "--fleet: the node listens on {} which others cannot dial; give --advertise ADDR",
            server.local_addr()
        ),
        None => server.local_addr(),
    };
    let labels = alknet::fleet::record::parse_labels(args.labels.iter().map(String::as_str))
        .map_err(anyhow::Error::msg)?;
    let record = MemberRecord::of_node(
        &id,
        quic,
        http,
        &server.fingerprint(),
        labels,
        server.registry(),
    );
    #[cfg(feature = "fleet-nats")]
    let registration = match &source {
        FleetSource::Nats(nats) => Some(
            alknet::fleet::nats::register(nats, record, Duration::from_secs(args.fleet_ttl))
                .await?,
        ),
        FleetSource::File(_) => None,
    };
    #[cfg(not(feature = "fleet-nats"))]
    let _ = record;
    let (fleet, federation) = match live {
        Some(live) => {
            // The federating node calls members as itself: its own certificate.
            let mut options = ClientOptions::new(ServerVerification::Insecure);
            options.identity = Some(server.identity().clone());
            let fleet = Arc::new(Fleet::connect(source, options.clone()).await?);
            let task = federation::federate(Arc::clone(&fleet), live, Some(id.clone()), options);
            (Some(fleet), Some(task))
        }
        None => (None, None),
    };
    tracing::info!(node = %id, %quic, federate = args.federate, "fleet: joined");
    Ok(Some(Membership {
        #[cfg(feature = "fleet-nats")]
        registration,
        federation,
        _fleet: fleet,
    }))
}

/// `alknet fleet …`.
#[derive(Subcommand)]
pub enum FleetCommand {
    /// List the members: node, addresses, labels, operations, last seen.
    Ls {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Call a query or mutation on every matching member (default) or on one.
    Call {
        #[command(flatten)]
        client: ClientArgs,
        /// Operation name, e.g. `demo/add`.
        op: String,
        /// Input JSON (default `{}`).
        input: Option<String>,
        /// Only members with this label (repeat: all must match).
        #[arg(long = "select", value_name = "KEY=VALUE")]
        select: Vec<String>,
        /// Call every matching member (the default).
        #[arg(long, conflicts_with = "any")]
        all: bool,
        /// Call one matching member: the less busy of two picked at random.
        #[arg(long)]
        any: bool,
        /// Exit 0 when some members answered, even if others failed.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Subscribe on every matching member and print the items, tagged with their node.
    Subscribe {
        #[command(flatten)]
        client: ClientArgs,
        /// Operation name, e.g. `demo/ticks`.
        op: String,
        /// Input JSON (default `{}`).
        input: Option<String>,
        /// Only members with this label (repeat: all must match).
        #[arg(long = "select", value_name = "KEY=VALUE")]
        select: Vec<String>,
        /// Exit 0 when some members' streams ended well, even if others failed.
        #[arg(long)]
        allow_partial: bool,
        /// Stop after this many items (exit 0).
        #[arg(long, value_name = "N")]
        max_items: Option<u64>,
    },
}

/// Where the fleet is and who this client is.
#[derive(Args)]
pub struct ClientArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Bearer token sent to every member.
    #[arg(long, env = "ALKNET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Client certificate (PEM) to present.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
}

impl ClientArgs {
    async fn fleet(&self) -> anyhow::Result<Fleet> {
        let source = self.source.source()?.context(
            "say where the fleet is: --fleet nats://HOST:PORT or --fleet FILE (or ALKNET_FLEET)",
        )?;
        // Each member is checked against its own published fingerprint.
        let mut options = ClientOptions::new(ServerVerification::Insecure);
        options.auth_token = self.token.clone();
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            options.identity = Some(TlsIdentity::from_pem_files(cert, key)?);
        }
        Ok(Fleet::connect(source, options).await?)
    }
}

fn input_of(text: Option<&str>) -> anyhow::Result<Value> {
    match text {
        None => Ok(json!({})),
        Some(text) => serde_json::from_str(text).context("the input argument is not JSON"),
    }
}

/// Runs one `alknet fleet` command.
pub async fn run(command: FleetCommand, output: Output) -> ExitCode {
    match run_command(command, output).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("alknet fleet: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_command(command: FleetCommand, output: Output) -> anyhow::Result<ExitCode> {
    match command {
        FleetCommand::Ls { client } => {
            let fleet = client.fleet().await?;
            let members = fleet.members_seen();
            match output {
                Output::Pretty => print_members(&members),
                Output::Lines => {
                    for (record, seen) in &members {
                        let mut line = serde_json::to_value(record)?;
                        line["seen_secs_ago"] = json!(seen.as_secs_f64());
                        output.print(&line);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Call {
            client,
            op,
            input,
            select,
            all: _,
            any,
            allow_partial,
        } => {
            let fleet = client.fleet().await?;
            let selector =
                Selector::parse(select.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
            let input = input_of(input.as_deref())?;
            let results = if any {
                match fleet.call_any(&op, input, &selector).await {
                    Ok(result) => vec![result],
                    Err(error) => {
                        eprintln!("{}", serde_json::to_string(&error)?);
                        return Ok(ExitCode::from(1));
                    }
                }
            } else {
                fleet.call_all(&op, input, &selector).await
            };
            if results.is_empty() {
                eprintln!("alknet fleet call: no member matches");
                return Ok(ExitCode::from(1));
            }
            let failed = results.iter().filter(|r| r.result.is_err()).count();
            for result in &results {
                output.print(&match &result.result {
                    Ok(value) => json!({"node": result.node, "output": value}),
                    Err(error) => json!({"node": result.node, "error": error}),
                });
            }
            Ok(exit_code(failed, results.len(), allow_partial))
        }
        FleetCommand::Subscribe {
            client,
            op,
            input,
            select,
            allow_partial,
            max_items,
        } => {
            let fleet = client.fleet().await?;
            let selector =
                Selector::parse(select.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
            let nodes = fleet
                .members()
                .iter()
                .filter(|r| selector.matches(r))
                .count();
            if nodes == 0 {
                eprintln!("alknet fleet subscribe: no member matches");
                return Ok(ExitCode::from(1));
            }
            let mut items = Box::pin(
                fleet
                    .subscribe_all(&op, input_of(input.as_deref())?, &selector)
                    .await,
            );
            let (mut failed, mut printed) = (0, 0u64);
            while max_items.is_none_or(|max| printed < max) {
                let item = tokio::select! {
                    item = items.next() => item,
                    _ = tokio::signal::ctrl_c() => break,
                };
                let Some(NodeItem { node, item }) = item else {
                    break;
                };
                match item {
                    Ok(Some(value)) => {
                        output.print(&json!({"node": node, "item": value}));
                        printed += 1;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        failed += 1;
                        output.print(&json!({"node": node, "error": error}));
                    }
                }
            }
            Ok(exit_code(failed, nodes, allow_partial))
        }
    }
}

/// 0 when nothing failed, or when some answered and partial results are allowed.
fn exit_code(failed: usize, total: usize, allow_partial: bool) -> ExitCode {
    if failed == 0 || (allow_partial && failed < total) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_members(members: &[(MemberRecord, Duration)]) {
    let header = ["NODE", "QUIC", "HTTP", "LABELS", "OPS", "LAST SEEN"].map(String::from);
    let rows: Vec<[String; 6]> = members
        .iter()
        .map(|(record, seen)| {
            let labels: Vec<String> = record
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            [
                record.id.clone(),
                record.quic.to_string(),
                record.http.clone().unwrap_or_else(|| "-".into()),
                if labels.is_empty() {
                    "-".into()
                } else {
                    labels.join(",")
                },
                record.operations.to_string(),
                if record.ttl_secs == 0 {
                    "static".into()
                } else {
                    format!("{:.1}s ago", seen.as_secs_f64())
                },
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            rows.iter()
                .chain(std::iter::once(&header))
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut stdout = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        let _ = writeln!(stdout, "{}", line.join("  ").trim_end());
    }
}
