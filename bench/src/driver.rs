//! Runs every workload against every system, a fresh server process per system and rep, and
//! prints one table per workload.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::measure::{RssPeak, own_cpu, packets_sent, process_cpu, rss};
use crate::messages::echo_message;
use crate::systems::{Certs, Clients, Conn, System};

pub struct Options {
    pub reps: usize,
    pub scale: f64,
    pub only: Option<Vec<System>>,
    /// Workloads by key (see [`Workload::key`]); all when `None`.
    pub workloads: Option<Vec<String>>,
}

/// Which systems a workload compares, and against what.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// The call protocols, against the floor.
    Rpc,
    /// HTTP, against bare axum.
    Http,
}

impl System {
    fn group(self) -> Group {
        match self {
            System::Axum | System::AlknetHttp => Group::Http,
            _ => Group::Rpc,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Workload {
    Sequential,
    Callers { callers: usize, connections: usize },
    Stream,
    ConnectAndCall,
    IdleConnections,
}

impl Workload {
    /// A short name for `--workloads`: idle, connect, seq, c1, c16, c64, c256, c64x8, c64x64,
    /// stream.
    pub fn key(self) -> String {
        match self {
            Workload::Sequential => "seq".into(),
            Workload::Callers {
                callers,
                connections: 1,
            } => format!("c{callers}"),
            Workload::Callers {
                callers,
                connections,
            } => format!("c{callers}x{connections}"),
            Workload::Stream => "stream".into(),
            Workload::ConnectAndCall => "connect".into(),
            Workload::IdleConnections => "idle".into(),
        }
    }

    fn title(self) -> String {
        match self {
            Workload::Sequential => "sequential calls, one connection: p50 latency".into(),
            Workload::Callers {
                callers,
                connections: 1,
            } => format!("{callers} callers, one connection: throughput"),
            Workload::Callers {
                callers,
                connections,
            } => format!("{callers} callers over {connections} connections: throughput"),
            Workload::Stream => "server stream of small items: throughput".into(),
            Workload::ConnectAndCall => "connect + one call: p50".into(),
            Workload::IdleConnections => "server memory per idle connection".into(),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::Sequential | Workload::ConnectAndCall => "µs",
            Workload::Callers { .. } => "calls/s",
            Workload::Stream => "items/s",
            Workload::IdleConnections => "KB",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Workload::Callers { .. } | Workload::Stream)
    }

    fn applies(self, system: System) -> bool {
        match (system.group(), self) {
            (_, Workload::Stream) => system.streams(),
            (Group::Rpc, _) => true,
            (Group::Http, Workload::Sequential) => true,
            (
                Group::Http,
                Workload::Callers {
                    callers: 64,
                    connections: 1,
                },
            ) => true,
            (Group::Http, _) => false,
        }
    }
}

/// In the order they run. Idle connections get a server process of their own (see [`run`]).
const WORKLOADS: [Workload; 10] = [
    Workload::IdleConnections,
    Workload::ConnectAndCall,
    Workload::Sequential,
    Workload::Callers {
        callers: 1,
        connections: 1,
    },
    Workload::Callers {
        callers: 16,
        connections: 1,
    },
    Workload::Callers {
        callers: 64,
        connections: 1,
    },
    Workload::Callers {
        callers: 256,
        connections: 1,
    },
    Workload::Callers {
        callers: 64,
        connections: 8,
    },
    Workload::Callers {
        callers: 64,
        connections: 64,
    },
    Workload::Stream,
];

/// One measurement.
#[derive(Clone, Copy, Default)]
struct Sample {
    /// The workload's number (see [`Workload::unit`]).
    value: f64,
    /// p99 for latency workloads.
    p99: Option<f64>,
    /// CPU per call (or per item) in the driver, µs.
    client_cpu: Option<f64>,
    /// CPU per call (or per item) in the server process, µs.
    server_cpu: Option<f64>,
    /// The server's RSS at its peak during the workload, MB.
    server_rss: Option<f64>,
    /// Packets both sides sent per call (or per item): UDP datagrams or TCP segments, counted
    /// machine-wide.
    packets: Option<f64>,
}

/// One system's samples for one workload, a sample per rep.
type SystemSamples = (System, Vec<Sample>);
type Results = BTreeMap<Workload, BTreeMap<&'static str, SystemSamples>>;

/// A self-signed certificate in a fresh temporary directory (removed by the caller).
pub fn temporary_certs() -> anyhow::Result<(std::path::PathBuf, Certs)> {
    let dir = std::env::temp_dir().join(format!("alknet-peers-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let identity = alknet::TlsIdentity::self_signed(&["localhost"])?;
    let (cert, key) = identity.to_pem();
    let certs = Certs {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&certs.cert, cert)?;
    std::fs::write(&certs.key, key)?;
    Ok((dir, certs))
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let (dir, certs) = temporary_certs()?;
    let clients = Clients::new(&certs)?;
    let systems: Vec<System> = options.only.clone().unwrap_or_else(|| System::ALL.to_vec());
    println!(
        "# alknet side by side: {} rep(s), scale {}, {} CPUs, {}",
        options.reps,
        options.scale,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    let mut results = Results::new();
    for rep in 0..options.reps {
        for &system in &systems {
            eprintln!("rep {} / {}: {}", rep + 1, options.reps, system.name());
            // Idle connections on a fresh server, so what the other workloads leave in its
            // allocator does not hide what a connection costs; the others on another, so the
            // memory idle connections took does not show in their RSS.
            let mut samples = Vec::new();
            for idle in [true, false] {
                let server = ServerProcess::start(system, &certs)?;
                let only = |w: Workload| (w == Workload::IdleConnections) == idle;
                samples.extend(run_rep(system, &server, &certs, &clients, &options, only).await?);
            }
            for (workload, sample) in samples {
                results
                    .entry(workload)
                    .or_default()
                    .entry(system.name())
                    .or_insert((system, Vec::new()))
                    .1
                    .push(sample);
            }
        }
    }
    print_tables(&results);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn run_rep(
    system: System,
    server: &ServerProcess,
    certs: &Certs,
    clients: &Clients,
    options: &Options,
    only: impl Fn(Workload) -> bool,
) -> anyhow::Result<Vec<(Workload, Sample)>> {
    let scaled = |n: f64| ((n * options.scale) as usize).max(4);
    let mut samples = Vec::new();
    for workload in WORKLOADS {
        let chosen = options
            .workloads
            .as_ref()
            .is_none_or(|keys| keys.contains(&workload.key()));
        if !chosen || !only(workload) || !workload.applies(system) {
            continue;
        }
        let sample = match workload {
            Workload::ConnectAndCall => {
                connect_and_call(system, server, certs, clients, scaled(200.0)).await?
            }
            Workload::Sequential => {
                let conn = system.connect(server.addr, certs, clients).await?;
                sequential(&*conn, scaled(5_000.0)).await?
            }
            Workload::Callers {
                callers,
                connections,
            } => {
                let mut conns = Vec::new();
                for _ in 0..connections {
                    conns.push(system.connect(server.addr, certs, clients).await?);
                }
                let total = if callers == 1 { 10_000.0 } else { 50_000.0 };
                concurrent(&conns, callers, scaled(total), server.pid).await?
            }
            Workload::Stream => {
                let conn = system.connect(server.addr, certs, clients).await?;
                stream(&*conn, scaled(1_000_000.0) as u64, server.pid).await?
            }
            Workload::IdleConnections => {
                idle_connections(system, server, certs, clients, scaled(500.0).max(50)).await?
            }
        };
        samples.push((workload, sample));
    }
    Ok(samples)
}

async fn connect_and_call(
    system: System,
    server: &ServerProcess,
    certs: &Certs,
    clients: &Clients,
    times: usize,
) -> anyhow::Result<Sample> {
    let mut latencies = Vec::with_capacity(times);
    for n in 0..times as u64 {
        let started = Instant::now();
        let conn = system.connect(server.addr, certs, clients).await?;
        let message = echo_message(n);
        anyhow::ensure!(conn.echo(message.clone()).await? == message, "echo differs");
        latencies.push(started.elapsed());
        drop(conn);
    }
    Ok(latency_sample(latencies))
}

async fn sequential(conn: &dyn Conn, calls: usize) -> anyhow::Result<Sample> {
    for n in 0..(calls / 10).max(10) as u64 {
        conn.echo(echo_message(n)).await?;
    }
    let mut latencies = Vec::with_capacity(calls);
    let packets_before = packets_sent();
    for n in 0..calls as u64 {
        let message = echo_message(n);
        let started = Instant::now();
        let answer = conn.echo(message.clone()).await?;
        latencies.push(started.elapsed());
        anyhow::ensure!(answer == message, "echo differs");
    }
    Ok(Sample {
        packets: Some((packets_sent() - packets_before) as f64 / calls as f64),
        ..latency_sample(latencies)
    })
}

fn latency_sample(mut latencies: Vec<Duration>) -> Sample {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    Sample {
        value: at(0.5),
        p99: Some(at(0.99)),
        ..Sample::default()
    }
}

async fn concurrent(
    conns: &[Arc<dyn Conn>],
    callers: usize,
    total: usize,
    server_pid: u32,
) -> anyhow::Result<Sample> {
    let round = |calls: usize| {
        let per_caller = (calls / callers).max(1);
        join_all((0..callers).map(|i| {
            let conn = Arc::clone(&conns[i % conns.len()]);
            tokio::spawn(async move {
                for n in 0..per_caller as u64 {
                    let message = echo_message(n);
                    anyhow::ensure!(conn.echo(message.clone()).await? == message, "echo differs");
                }
                anyhow::Ok(())
            })
        }))
    };
    for result in round((total / 10).max(callers)).await {
        result??;
    }
    let calls = (total / callers).max(1) * callers;
    let (client_before, server_before) = (own_cpu(), process_cpu(server_pid));
    let packets_before = packets_sent();
    let started = Instant::now();
    for result in round(total).await {
        result??;
    }
    let elapsed = started.elapsed();
    let per_call = |cpu: Duration| Some(cpu.as_secs_f64() * 1e6 / calls as f64);
    Ok(Sample {
        packets: Some((packets_sent() - packets_before) as f64 / calls as f64),
        value: calls as f64 / elapsed.as_secs_f64(),
        client_cpu: per_call(own_cpu() - client_before),
        server_cpu: per_call(process_cpu(server_pid).saturating_sub(server_before)),
        server_rss: Some(rss(server_pid) as f64 / 1e6),
        ..Sample::default()
    })
}

async fn stream(conn: &dyn Conn, items: u64, server_pid: u32) -> anyhow::Result<Sample> {
    anyhow::ensure!(conn.ticks(1000).await? == 1000, "warm-up stream short");
    let peak = RssPeak::start(server_pid);
    let (client_before, server_before) = (own_cpu(), process_cpu(server_pid));
    let packets_before = packets_sent();
    let started = Instant::now();
    let received = conn.ticks(items).await?;
    let elapsed = started.elapsed();
    let per_item = |cpu: Duration| Some(cpu.as_secs_f64() * 1e6 / items as f64);
    anyhow::ensure!(received == items, "{received} of {items} items arrived");
    Ok(Sample {
        value: items as f64 / elapsed.as_secs_f64(),
        client_cpu: per_item(own_cpu() - client_before),
        server_cpu: per_item(process_cpu(server_pid).saturating_sub(server_before)),
        server_rss: Some(peak.finish() as f64 / 1e6),
        packets: Some((packets_sent() - packets_before) as f64 / items as f64),
        ..Sample::default()
    })
}

async fn idle_connections(
    system: System,
    server: &ServerProcess,
    certs: &Certs,
    clients: &Clients,
    count: usize,
) -> anyhow::Result<Sample> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss(server.pid);
    let mut conns = Vec::with_capacity(count);
    for n in 0..count as u64 {
        let conn = system.connect(server.addr, certs, clients).await?;
        // One call, so the connection is fully set up on both sides (streams, tasks).
        conn.echo(echo_message(n)).await?;
        conns.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss(server.pid);
    drop(conns);
    Ok(Sample {
        value: after.saturating_sub(before) as f64 / count as f64 / 1e3,
        server_rss: Some(after as f64 / 1e6),
        ..Sample::default()
    })
}

/// A server in a process of its own, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
}

impl ServerProcess {
    pub fn start(system: System, certs: &Certs) -> anyhow::Result<ServerProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg(system.name())
            .arg("--cert")
            .arg(&certs.cert)
            .arg("--key")
            .arg(&certs.key)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| anyhow::anyhow!("{} did not start: {line:?}", system.name()))?
            .parse()?;
        Ok(ServerProcess {
            pid: child.id(),
            child,
            addr,
        })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map_or_else(String::new, |m| {
            m.trim_start_matches([' ', '\t', ':']).to_owned()
        })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn human(value: f64, unit: &str) -> String {
    match unit {
        "calls/s" | "items/s" if value >= 1e6 => format!("{:.2}M", value / 1e6),
        "calls/s" | "items/s" if value >= 1e3 => format!("{:.1}k", value / 1e3),
        _ if value >= 100.0 => format!("{value:.0}"),
        _ => format!("{value:.1}"),
    }
}

fn print_tables(results: &Results) {
    for (workload, by_system) in results {
        let unit = workload.unit();
        let better = if workload.higher_is_better() {
            "higher is better"
        } else {
            "lower is better"
        };
        println!("\n## {} ({unit}, {better})\n", workload.title());
        println!(
            "| system | median | per rep | vs baseline, per rep | p99 | CPU µs/call client + server | packets/call | server RSS MB |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let mut groups: Vec<(Group, Vec<&SystemSamples>)> = Vec::new();
        for entry in by_system.values() {
            let group = entry.0.group();
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, list)) => list.push(entry),
                None => groups.push((group, vec![entry])),
            }
        }
        for (group, mut entries) in groups {
            let baseline_system = if group == Group::Rpc {
                System::Floor
            } else {
                System::Axum
            };
            entries.sort_by_key(|(system, _)| System::ALL.iter().position(|s| s == system));
            let baseline = entries
                .iter()
                .find(|(system, _)| *system == baseline_system)
                .or(entries.first())
                .map(|(_, samples)| samples.clone())
                .unwrap_or_default();
            for (system, samples) in entries {
                let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
                let ratios: Vec<String> = samples
                    .iter()
                    .zip(&baseline)
                    .map(|(s, b)| {
                        let ratio = if workload.higher_is_better() {
                            s.value / b.value
                        } else {
                            b.value / s.value
                        };
                        if ratio.is_finite() && ratio > 0.0 {
                            format!("{ratio:.2}×")
                        } else {
                            "–".to_owned()
                        }
                    })
                    .collect();
                let med = |pick: fn(&Sample) -> Option<f64>| {
                    let mut v: Vec<f64> = samples.iter().filter_map(pick).collect();
                    (!v.is_empty()).then(|| median(&mut v))
                };
                let cpu = match (med(|s| s.client_cpu), med(|s| s.server_cpu)) {
                    (Some(c), Some(s)) => format!("{c:.1} + {s:.1}"),
                    _ => String::new(),
                };
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    system.name(),
                    human(median(&mut values.clone()), unit),
                    values
                        .iter()
                        .map(|v| human(*v, unit))
                        .collect::<Vec<_>>()
                        .join(" "),
                    ratios.join(" "),
                    med(|s| s.p99).map_or_else(String::new, |p| human(p, unit)),
                    cpu,
                    med(|s| s.packets).map_or_else(String::new, |p| format!("{p:.2}")),
                    med(|s| s.server_rss).map_or_else(String::new, |r| format!("{r:.0}")),
                );
            }
        }
    }
    println!(
        "\nRatios compare each rep with the same rep of the baseline (the quinn floor for the call \
         protocols, bare axum for HTTP); above 1× is better than the baseline, whatever the unit."
    );
}
