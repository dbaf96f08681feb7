//! `alknet`: run a node, or call one from the command line.
//!
//! Results are JSON on stdout: indented on a terminal, one line per value when piped
//! (`--json` and `--pretty` force either); `list` is a table on a terminal. A failed call prints
//! the `call.error` payload JSON on stderr and exits with status 1; bad usage exits with status
//! 2. Log lines go to stderr, coloured only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use alknet::identity::token;
use alknet::spec::{OpType, OperationSpec};
use alknet::{
    CallError, CallOptions, Client, ClientOptions, ConfigIdentities, Connection, Handler, Registry,
    Server, ServerOptions, ServerVerification, TlsIdentity,
};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};

mod fleet;
#[cfg(feature = "docker")]
mod tty;

#[derive(Parser)]
#[command(name = "alknet", version, about = "Typed remote operations over QUIC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print results as one JSON line per value (the default when stdout is not a terminal).
    #[arg(long, global = true, conflicts_with = "pretty")]
    json: bool,
    /// Print results as indented JSON (the default on a terminal).
    #[arg(long, global = true)]
    pretty: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node until SIGINT/SIGTERM. Prints one ready line:
    /// `alknet listening quic=ADDR fingerprint=SHA256:<hex>`.
    Serve(Box<ServeArgs>),
    /// Call a query or mutation and print its output.
    Call {
        #[command(flatten)]
        target: Target,
        /// Operation name, e.g. `demo/add`.
        op: String,
        /// Input JSON (default `{}`).
        input: Option<String>,
        /// Deadline in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Subscribe and print each item until the subscription ends (or Ctrl-C, `--max-items`,
    /// `--for`, all of which exit 0). A final item `{"exitCode": N, "terminal": true}` (the
    /// Docker pack's exec) becomes this command's exit status.
    Subscribe {
        #[command(flatten)]
        target: Target,
        /// Operation name, e.g. `demo/ticks`.
        op: String,
        /// Input JSON (default `{}`).
        input: Option<String>,
        /// Deadline for the whole subscription, in milliseconds: reaching it is an error
        /// (`TIMEOUT`, exit 1). To watch for a while and stop cleanly, use `--for`.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Stop after this many items (exit 0).
        #[arg(long, value_name = "N")]
        max_items: Option<u64>,
        /// Stop after this long (exit 0): `500ms`, `10s`, `5m`, or seconds.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        for_duration: Option<Duration>,
    },
    /// List the operations the node lets you call.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Open a terminal in a container of a node serving the Docker pack (ALPN `alknet/tty`):
    /// a shell, or CMD after `--`. Exits with the command's exit code.
    #[cfg(feature = "docker")]
    Tty {
        #[command(flatten)]
        target: Target,
        /// Container id or name.
        container: String,
        /// Attach to the container's main process instead of starting a command.
        #[arg(long)]
        attach: bool,
        /// The command to run (default `/bin/sh`).
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Print the full OperationSpec of one operation.
    Schema {
        #[command(flatten)]
        target: Target,
        /// Operation name.
        op: String,
    },
    /// Print the spec bundle of the operations this binary serves (input of `alknet-codegen`).
    Spec {
        /// Include the demo service.
        #[arg(long)]
        demo: bool,
    },
    /// Bearer tokens for `serve --config`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Certificates for `serve --cert/--key` or for clients (`--cert/--key` on client commands).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Many nodes, one view: list a fleet's members, call or subscribe on them
    /// (`--fleet nats://HOST:PORT` or a TOML file, or ALKNET_FLEET).
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh token (shown once) and the `[[tokens]]` lines for the config file, which
    /// hold only its SHA-256.
    New {
        /// Who the token stands for.
        #[arg(long)]
        id: String,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Write a self-signed certificate and key (`NAME.cert.pem`, `NAME.key.pem` in DIR) and print
    /// its fingerprint and the `[[peers]]` lines for the config file.
    New {
        /// Directory to write to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// File name stem, and the DNS name in the certificate.
        #[arg(long, default_value = "client")]
        name: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// UDP address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// PEM certificate chain (default: a generated self-signed certificate).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Serve the demo service (demo/echo, demo/add, demo/ticks, …).
    #[arg(long)]
    demo: bool,
    /// TOML file listing peers (by certificate fingerprint) and tokens (by SHA-256) with their
    /// ids, scopes and resources, and the node's imports (`[[imports]]`, docs/adapters.md).
    /// Without it every caller is anonymous.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also serve the HTTP gateway (POST, SSE, WebSocket, /openapi.json) on this TCP address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// MCP at `/mcp` (with --http) exposes four fixed tools (search, schema, call, batch)
    /// instead of one tool per operation.
    #[arg(long)]
    mcp_gateway: bool,
    /// The URL callers reach the HTTP gateway at (behind a proxy), published as the OpenAPI
    /// document's `servers` (default: the listening address).
    #[arg(long, requires = "http")]
    public_url: Option<String>,
    /// An origin (`https://app.example`) whose web pages may call the HTTP gateway, open its
    /// WebSocket and use MCP (repeatable). Default: none, no cross-origin access.
    #[arg(long = "cors", value_name = "ORIGIN", requires = "http")]
    cors: Vec<String>,
    /// A host name the HTTP gateway answers to (repeatable), besides IP addresses, `localhost`
    /// and the host of --public-url. Requests naming any other host are refused (403), so a
    /// domain pointed at this node (DNS rebinding) reaches nothing.
    #[arg(long = "allow-host", value_name = "NAME", requires = "http")]
    allow_host: Vec<String>,
    /// HTTP connections open at once; when all are taken the one idle longest makes room, and
    /// when none is idle a newcomer gets 503.
    #[arg(long, default_value_t = alknet::HttpLimits::default().max_connections, requires = "http")]
    http_max_connections: usize,
    /// Seconds an HTTP connection has to send a request's head, counted from when it starts
    /// waiting (so also how long an idle keep-alive connection is kept).
    #[arg(long, default_value_t = alknet::HttpLimits::default().request_head_timeout.as_secs(), requires = "http")]
    http_head_timeout_secs: u64,
    /// QUIC connections open at once, handshakes included; further ones are refused.
    #[arg(long, default_value_t = ServerOptions::new(([127, 0, 0, 1], 0).into()).max_connections)]
    max_connections: usize,
    /// MiB all connections together may make the node hold (queued answers, read buffers,
    /// unread stream data); over it, the connection holding the most is ended. Large frames
    /// being read have a budget of their own (docs/protocol.md, "Bounds").
    #[arg(long, default_value_t = alknet::ProtocolConfig::default().node_memory_budget >> 20)]
    memory_budget_mib: usize,
    /// Seconds a QUIC connection may carry nothing (no request, no call or subscription in
    /// flight) before it is closed; 0 keeps idle connections as long as their peers do.
    #[arg(long, default_value_t = 600)]
    idle_connection_secs: u64,
    /// Import another node's external operations as `NAME/<operation>` (design §10): its
    /// discovery is read at start-up, and the node does not start if it cannot be reached.
    #[arg(long, value_name = "NAME=ADDR", requires = "import_pin")]
    import_call: Option<String>,
    /// The certificate fingerprint of the node --import-call names (from its ready line).
    #[arg(long, value_name = "SHA256:HEX", requires = "import_call")]
    import_pin: Option<String>,
    /// A token this node presents to the imported node (it calls as itself, never with its
    /// callers' tokens).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ALKNET_IMPORT_TOKEN",
        hide_env_values = true,
        requires = "import_call"
    )]
    import_token: Option<String>,
    /// Import the operations of an OpenAPI 3.0/3.1 service as `NAME/<operationId>`: DOCUMENT
    /// is the URL or file of its JSON or YAML document; calls go to the document's first
    /// server. Credentials, a base URL and more imports: the configuration file
    /// (docs/adapters.md).
    #[cfg(feature = "import-openapi")]
    #[arg(long, value_name = "NAME=DOCUMENT")]
    import_openapi: Option<String>,
    /// Re-export the imported operations (--import-call, --import-openapi) through this
    /// node's QUIC, HTTP and MCP surfaces; without it they are internal, for composition.
    #[arg(long)]
    import_external: bool,
    /// Seconds running calls get to finish on shutdown.
    #[arg(long, default_value_t = 10)]
    grace_secs: u64,
    #[command(flatten)]
    fleet: fleet::ServeFleetArgs,
    /// Serve the Docker pack (`docker/…` operations, interactive sessions on ALPN
    /// `alknet/tty`) with the daemon at this socket (default /var/run/docker.sock).
    #[cfg(feature = "docker")]
    #[arg(long, num_args = 0..=1, default_missing_value = alknet::docker::DEFAULT_SOCKET, value_name = "SOCKET")]
    docker: Option<String>,
}

#[derive(Args)]
struct Target {
    /// The node, `HOST:PORT`.
    addr: String,
    /// Trust the server whose certificate has this fingerprint (`SHA256:<hex>`).
    #[arg(long, conflicts_with_all = ["insecure", "ca"])]
    pin: Option<String>,
    /// Accept any server certificate (encrypted, not authenticated: local testing only).
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// Verify the server against the CA certificates in this PEM file.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Name to verify in the server certificate with `--ca` (default: the host of ADDR).
    #[arg(long)]
    server_name: Option<String>,
    /// Bearer token sent with the request.
    #[arg(long, env = "ALKNET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Client certificate (PEM) to present.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
}

/// Raises this process's soft limit on open files to its hard limit: a node holds a socket
/// per HTTP connection, and Debian's default soft limit (1024) is below the gateway's own cap
/// plus everything else a node keeps open. The caps, not the descriptor limit, then decide
/// who is refused.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit read and write the struct passed, nothing else.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(
                    from = limit.rlim_cur,
                    to = limit.rlim_max,
                    "open file limit raised"
                );
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    let default_filter = if serving { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("alknet: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let output = Output::choose(cli.json, cli.pretty);
    match cli.command {
        Command::Serve(args) => match serve(*args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("alknet serve: {error:#}");
                ExitCode::from(2)
            }
        },
        Command::Spec { demo } => {
            let registry = node_registry(demo);
            print!("{}", registry.spec_bundle().to_json_pretty());
            ExitCode::SUCCESS
        }
        Command::Token(TokenCommand::New { id, scopes }) => {
            let token = token::generate();
            println!("{token}");
            println!();
            println!("# Give the token above to `{id}`; it is not stored anywhere. Config lines:");
            println!("[[tokens]]");
            println!("id = {}", toml_string(&id));
            println!("sha256 = \"{}\"", token::hash_hex(&token));
            println!("scopes = [{}]", toml_list(&scopes));
            ExitCode::SUCCESS
        }
        Command::Cert(CertCommand::New { out, name }) => match new_cert(&out, &name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("alknet cert new: {error:#}");
                ExitCode::from(2)
            }
        },
        Command::Call {
            target,
            op,
            input,
            timeout_ms,
        } => {
            client_command(&target, |conn| async move {
                let answer = conn
                    .call_json_with(
                        &op,
                        parse_input(input.as_deref())?,
                        call_options(timeout_ms),
                    )
                    .await?;
                output.print(&answer);
                Ok(ExitCode::SUCCESS)
            })
            .await
        }
        Command::Subscribe {
            target,
            op,
            input,
            timeout_ms,
            max_items,
            for_duration,
        } => {
            client_command(&target, |conn| async move {
                let items = conn
                    .subscribe_json_with(
                        &op,
                        parse_input(input.as_deref())?,
                        call_options(timeout_ms),
                    )
                    .await?;
                print_items(items, output, max_items, for_duration).await
            })
            .await
        }
        Command::List { target } => {
            let anonymous = target.token.is_none() && target.cert.is_none();
            client_command(&target, |conn| async move {
                let list = conn.call_json("services/list", json!({})).await?;
                let empty = list["operations"].as_array().is_none_or(Vec::is_empty);
                match output {
                    Output::Pretty => print_table(&list),
                    Output::Lines => output.print(&list),
                }
                if empty && anonymous {
                    eprintln!(
                        "alknet list: no operations are open to anonymous callers; a token \
                         (--token or ALKNET_TOKEN) or a client certificate (--cert/--key) may show more"
                    );
                }
                Ok(ExitCode::SUCCESS)
            })
            .await
        }
        #[cfg(feature = "docker")]
        Command::Tty {
            target,
            container,
            attach,
            cmd,
        } => tty::run(&target, container, attach, cmd).await,
        Command::Fleet(command) => fleet::run(command, output).await,
        Command::Schema { target, op } => {
            client_command(&target, |conn| async move {
                output.print(
                    &conn
                        .call_json("services/schema", json!({ "name": op }))
                        .await?,
                );
                Ok(ExitCode::SUCCESS)
            })
            .await
        }
    }
}

fn node_registry(demo: bool) -> Registry {
    if demo {
        alknet::demo::registry()
    } else {
        Registry::new()
    }
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

fn toml_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| toml_string(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn new_cert(out: &std::path::Path, name: &str) -> anyhow::Result<()> {
    let identity = TlsIdentity::self_signed(&[name])?;
    let (cert, key) = identity.to_pem();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cert_path = out.join(format!("{name}.cert.pem"));
    let key_path = out.join(format!("{name}.key.pem"));
    std::fs::write(&cert_path, cert).with_context(|| format!("writing {}", cert_path.display()))?;
    write_private(&key_path, key.as_bytes())?;
    println!("{}", identity.fingerprint());
    println!();
    println!("# wrote {} and {}", cert_path.display(), key_path.display());
    println!("# Config lines for the node that should know this certificate:");
    println!("[[peers]]");
    println!("id = {}", toml_string(name));
    println!("fingerprint = \"{}\"", identity.fingerprint());
    println!("scopes = []");
    Ok(())
}

/// Writes a private key readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    raise_open_file_limit();
    let mut options = ServerOptions::new(args.listen);
    options.max_connections = args.max_connections;
    options.protocol.node_memory_budget = args.memory_budget_mib << 20;
    options.idle_connection_timeout = (args.idle_connection_secs > 0)
        .then(|| std::time::Duration::from_secs(args.idle_connection_secs));
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        options.identity = Some(TlsIdentity::from_pem_files(cert, key)?);
    }
    // The configuration file, read once: identities here, imports below.
    let config_text = match &args.config {
        Some(path) => Some((read_config(path)?, path.display().to_string())),
        None => None,
    };
    if let (Some(config), Some((text, origin))) = (&args.config, &config_text) {
        let identities = ConfigIdentities::from_toml(text, origin)?;
        let (peers, tokens) = identities.len();
        tracing::info!(config = %config.display(), peers, tokens, "identities loaded");
        options.identities = Some(std::sync::Arc::new(identities));
    }
    // Listen for SIGINT/SIGTERM before announcing readiness: a signal right after the ready
    // line must stop the node gracefully, not kill it.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    #[allow(unused_mut)]
    let mut registry = node_registry(args.demo);
    let mut imports = Vec::new();
    if let Some((text, origin)) = &config_text {
        imports = alknet::adapters::config::imports_from_toml(text, origin)?;
    }
    imports.extend(
        call_import(&args)?.map(|import| alknet::adapters::config::Import::Call(Box::new(import))),
    );
    #[cfg(feature = "import-openapi")]
    if let Some(spec) = &args.import_openapi {
        let (name, document) = spec
            .split_once('=')
            .context("--import-openapi takes NAME=DOCUMENT")?;
        imports.push(alknet::adapters::config::Import::OpenApi(Box::new(
            alknet::adapters::openapi::OpenApiImport {
                name: name.to_owned(),
                document: document.to_owned(),
                base_url: None,
                credentials: Default::default(),
                ca_file: None,
                external: args.import_external,
            },
        )));
    }
    for import in imports {
        let name = import.name().to_owned();
        let names = match import {
            alknet::adapters::config::Import::Call(import) => registry.import_call(*import).await?,
            #[cfg(feature = "import-mcp")]
            alknet::adapters::config::Import::Mcp(import) => registry.import_mcp(import).await?,
            #[cfg(feature = "import-openapi")]
            alknet::adapters::config::Import::OpenApi(import) => {
                registry.import_openapi(*import).await?.operations
            }
        };
        tracing::info!(import = %name, operations = names.len(), "operations imported");
    }
    #[cfg(feature = "docker")]
    let docker = match &args.docker {
        Some(socket) => {
            let pack = alknet::docker::DockerPack::connect(socket).await?;
            tracing::info!(socket = %socket, api = %pack.api_version(), "Docker pack on");
            pack.register(&mut registry)?;
            options
                .alpn_services
                .push(alknet::docker::tty::TtyService::new(pack.clone()));
            Some(pack)
        }
        None => None,
    };
    let live = fleet::prepare(&args.fleet, &mut registry)?;
    let server = Server::bind(registry, options)?;
    let mut http_addr = None;
    let http = match args.http {
        Some(addr) => {
            let http_options = alknet::HttpOptions {
                mcp_gateway_mode: args.mcp_gateway,
                public_url: args.public_url.clone(),
                cors_origins: args.cors.clone(),
                allowed_hosts: args.allow_host.clone(),
                limits: alknet::HttpLimits {
                    max_connections: args.http_max_connections,
                    request_head_timeout: Duration::from_secs(args.http_head_timeout_secs),
                    ..alknet::HttpLimits::default()
                },
                ..alknet::HttpOptions::default()
            };
            let bound = server.serve_http_with(addr, http_options).await?;
            http_addr = Some(args.public_url.clone().unwrap_or_else(|| bound.to_string()));
            format!(" http={bound}")
        }
        None => String::new(),
    };
    let membership = fleet::join(&args.fleet, &server, http_addr, live).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "alknet listening quic={}{http} fingerprint={}",
            server.local_addr(),
            server.fingerprint()
        )?;
        stdout.flush()?;
    }
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    // Leave first, so the fleet stops sending calls here while running ones finish.
    if let Some(membership) = membership {
        membership.leave().await;
    }
    server.shutdown(Duration::from_secs(args.grace_secs)).await;
    #[cfg(feature = "docker")]
    if let Some(pack) = docker {
        // Processes of aborted execs and sessions are killed before the node exits.
        pack.wait_for_cleanup(Duration::from_secs(5)).await;
    }
    Ok(())
}

/// Connects, runs `body`, and turns every failure into the `call.error` JSON on stderr.
async fn client_command<F, Fut>(target: &Target, body: F) -> ExitCode
where
    F: FnOnce(Connection) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode, CallError>>,
{
    let result = async {
        let (client, conn) = connect(target).await?;
        let result = body(conn.clone()).await;
        conn.close();
        client.wait_idle(Duration::from_secs(1)).await;
        result
    }
    .await;
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "{}",
                serde_json::to_string(&error).expect("errors serialize")
            );
            ExitCode::from(1)
        }
    }
}

async fn connect(target: &Target) -> Result<(Client, Connection), CallError> {
    let local = |message: String| CallError::internal(message);
    let (options, addr, server_name) = client_options(target).await?;
    let client =
        Client::with_registry(cli_registry(), options).map_err(|e| local(e.to_string()))?;
    let conn = client
        .connect(addr, &server_name)
        .await
        .map_err(|e| local(e.to_string()))?;
    Ok((client, conn))
}

/// The text of the configuration file at `path`; unreadable, the same error a bad file gets.
fn read_config(path: &std::path::Path) -> Result<String, alknet::identity::ConfigError> {
    std::fs::read_to_string(path).map_err(|e| alknet::identity::ConfigError {
        origin: path.display().to_string(),
        line: 1,
        problem: format!("cannot read: {e}"),
    })
}

/// The import `--import-call NAME=ADDR --import-pin FP` describes, if any.
fn call_import(args: &ServeArgs) -> anyhow::Result<Option<alknet::CallImport>> {
    let (Some(spec), Some(pin)) = (&args.import_call, &args.import_pin) else {
        return Ok(None);
    };
    let (name, addr) = spec
        .split_once('=')
        .context("--import-call takes NAME=ADDR")?;
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--import-call: `{addr}` is not an IP address and port"))?;
    let mut client = ClientOptions::new(ServerVerification::pin(
        pin.parse().context("--import-pin")?,
    ));
    client.auth_token = args.import_token.clone();
    Ok(Some(alknet::CallImport {
        name: name.to_owned(),
        addr,
        server_name: "localhost".to_owned(),
        client,
        external: args.import_external,
    }))
}

/// How to reach and trust the node `target` names: client options, address, server name.
async fn client_options(target: &Target) -> Result<(ClientOptions, SocketAddr, String), CallError> {
    let local = |message: String| CallError::internal(message);
    let verification = if let Some(pin) = &target.pin {
        ServerVerification::pin(pin.parse().map_err(|e| local(format!("{e}")))?)
    } else if let Some(ca) = &target.ca {
        ServerVerification::roots_from_pem_file(ca).map_err(|e| local(e.to_string()))?
    } else if target.insecure {
        ServerVerification::Insecure
    } else {
        return Err(local(
            "say how to trust the server: --pin SHA256:<hex> (from its ready line), --ca FILE, or --insecure".into(),
        ));
    };
    let addr = tokio::net::lookup_host(&target.addr)
        .await
        .map_err(|e| local(format!("cannot resolve `{}`: {e}", target.addr)))?
        .next()
        .ok_or_else(|| local(format!("`{}` resolves to no address", target.addr)))?;
    let host = target
        .addr
        .rsplit_once(':')
        .map_or(target.addr.as_str(), |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let server_name = target.server_name.as_deref().unwrap_or(host).to_owned();
    let mut options = ClientOptions::new(verification);
    options.auth_token = target.token.clone();
    if let (Some(cert), Some(key)) = (&target.cert, &target.key) {
        options.identity =
            Some(TlsIdentity::from_pem_files(cert, key).map_err(|e| local(e.to_string()))?);
    }
    Ok((options, addr, server_name))
}

/// What the CLI offers the node to call back: `client/name` (used by `demo/ask_peer`).
fn cli_registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register_handler(
            OperationSpec::new("client/name", OpType::Query)
                .expect("a valid name")
                .with_description("The name of this client."),
            Handler::unary(|_ctx, _input| async move { Ok(json!({"name": "alknet cli"})) }),
        )
        .expect("a valid operation");
    registry
}

fn call_options(timeout_ms: Option<u64>) -> CallOptions {
    CallOptions {
        timeout: timeout_ms.map(Duration::from_millis),
        ..CallOptions::default()
    }
}

fn parse_input(input: Option<&str>) -> Result<Value, CallError> {
    match input {
        None => Ok(json!({})),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            CallError::invalid_input(format!("the input argument is not JSON: {e}"), "")
        }),
    }
}

/// How results are printed.
#[derive(Clone, Copy)]
pub(crate) enum Output {
    /// Indented JSON; `list` as a table. For people at a terminal.
    Pretty,
    /// One line of JSON per value. For pipes and programs.
    Lines,
}

impl Output {
    /// `--json` or `--pretty` if given, else pretty on a terminal and lines when piped.
    fn choose(json: bool, pretty: bool) -> Output {
        if json {
            Output::Lines
        } else if pretty || std::io::stdout().is_terminal() {
            Output::Pretty
        } else {
            Output::Lines
        }
    }

    pub(crate) fn print(self, value: &Value) {
        let text = match self {
            Output::Pretty => serde_json::to_string_pretty(value).expect("values serialize"),
            Output::Lines => value.to_string(),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }
}

/// `services/list` as a table: name, kind, the first line of the description.
fn print_table(list: &Value) {
    let operations = list["operations"].as_array().cloned().unwrap_or_default();
    let rows: Vec<[String; 3]> = operations
        .iter()
        .map(|op| {
            let text = |key: &str| op[key].as_str().unwrap_or_default().to_owned();
            let description = text("description");
            let first_line = description.lines().next().unwrap_or_default().to_owned();
            [text("name"), text("op_type"), first_line]
        })
        .collect();
    let header = [
        "OPERATION".to_owned(),
        "KIND".to_owned(),
        "DESCRIPTION".to_owned(),
    ];
    let width = |column: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (name_width, kind_width) = (width(0), width(1));
    let mut stdout = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(
            stdout,
            "{:name_width$}  {:kind_width$}  {}",
            row[0], row[1], row[2]
        );
    }
}

/// Prints a subscription's items until it ends, `max_items` were printed, `for_duration`
/// passed or Ctrl-C; the last three end cleanly (exit 0). A final
/// `{"exitCode": N, "terminal": true}` item makes N the exit status.
async fn print_items(
    mut items: alknet::Subscription,
    output: Output,
    max_items: Option<u64>,
    for_duration: Option<Duration>,
) -> Result<ExitCode, CallError> {
    let stop = async {
        match for_duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let mut printed = 0u64;
    let mut exit = ExitCode::SUCCESS;
    while max_items.is_none_or(|max| printed < max) {
        let item = tokio::select! {
            item = items.next() => item,
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(item) = item else { break };
        let item = item?;
        if item["terminal"] == json!(true)
            && let Some(code) = item["exitCode"].as_i64()
        {
            exit = ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        output.print(&item);
        printed += 1;
    }
    Ok(exit)
}

/// `500ms`, `10s`, `5m`, `1h`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 10s or 5m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit `{other}`: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}
