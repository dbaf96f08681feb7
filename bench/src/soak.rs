//! The soak: `conns` connections × `inflight` callers each, echoing without pause for `secs`
//! seconds against a fresh server process. Every twelfth of the run it prints the calls per
//! second of that interval and the server's RSS; at the end, how flat RSS stayed after the
//! first interval (warm-up: allocator pools and connection state settle). A leak, or a queue
//! that grows under steady load, shows as RSS that keeps rising.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::driver::{ServerProcess, temporary_certs};
use crate::measure::rss;
use crate::messages::echo_message;
use crate::systems::{Clients, System};

pub struct Options {
    pub secs: u64,
    pub conns: usize,
    pub inflight: usize,
    pub systems: Vec<System>,
    /// Fail when RSS after warm-up is not flat within 10%.
    pub check: bool,
}

/// How far RSS after warm-up may spread, (max − min) / min, before `--check` fails.
const FLAT: f64 = 0.10;

pub async fn run(options: Options) -> anyhow::Result<()> {
    let (dir, certs) = temporary_certs()?;
    let clients = Clients::new(&certs)?;
    println!(
        "# soak: {} connections × {} calls in flight, {} s, {} CPUs",
        options.conns,
        options.inflight,
        options.secs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut failures = Vec::new();
    for &system in &options.systems {
        let spread = soak(system, &options, &certs, &clients).await?;
        if options.check && spread > FLAT {
            failures.push(format!(
                "{}: RSS spread {:.1}% after warm-up",
                system.name(),
                spread * 100.0
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(failures.is_empty(), "not flat: {}", failures.join("; "));
    Ok(())
}

/// Runs one system's soak; returns the RSS spread after warm-up.
async fn soak(
    system: System,
    options: &Options,
    certs: &crate::systems::Certs,
    clients: &Clients,
) -> anyhow::Result<f64> {
    let server = ServerProcess::start(system, certs)?;
    let mut conns = Vec::with_capacity(options.conns);
    for _ in 0..options.conns {
        conns.push(system.connect(server.addr, certs, clients).await?);
    }
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for conn in &conns {
        for caller in 0..options.inflight {
            let (conn, calls, stop) = (Arc::clone(conn), calls.clone(), stop.clone());
            callers.push(tokio::spawn(async move {
                let mut n = caller as u64;
                while !stop.load(Ordering::Relaxed) {
                    let message = echo_message(n);
                    anyhow::ensure!(conn.echo(message.clone()).await? == message, "echo differs");
                    calls.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                anyhow::Ok(())
            }));
        }
    }
    let interval = Duration::from_secs_f64(options.secs as f64 / 12.0);
    println!("\n## {}\n", system.name());
    println!("| t (s) | calls/s | server RSS (MB) |");
    println!("|---:|---:|---:|");
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last = 0;
    for _ in 0..12 {
        tokio::time::sleep(interval).await;
        let now = calls.load(Ordering::Relaxed);
        let rate = (now - last) as f64 / interval.as_secs_f64();
        last = now;
        let resident = rss(server.pid) as f64 / 1e6;
        samples.push(resident);
        println!(
            "| {:.0} | {:.0} | {:.1} |",
            started.elapsed().as_secs_f64(),
            rate,
            resident
        );
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await??;
    }
    let settled = &samples[1..];
    let min = settled.iter().copied().fold(f64::INFINITY, f64::min);
    let max = settled.iter().copied().fold(0.0, f64::max);
    let spread = (max - min) / min;
    println!(
        "\n{}: {} calls, {:.0} calls/s overall; RSS after warm-up {min:.1}–{max:.1} MB, spread {:.1}%",
        system.name(),
        last,
        last as f64 / started.elapsed().as_secs_f64(),
        spread * 100.0
    );
    Ok(spread)
}
