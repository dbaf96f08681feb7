//! alknet side by side with the peers users would pick instead, on loopback, each server in a
//! process of its own: `cargo run --release --manifest-path bench/Cargo.toml`.
//!
//! Systems: a bare-quinn floor with alknet's framing and typed serde messages, alknet over QUIC
//! (typed `#[operation]` calls), tarpc (JSON over TCP), jsonrpsee (WebSocket), tonic (gRPC + TLS,
//! JSON codec); and for HTTP, alknet's gateway against bare axum. Every system carries the same
//! typed messages as JSON. Each rep starts a fresh server process per system and runs every
//! workload; the table shows the median over reps, each rep's ratio to the baseline (the floor,
//! or axum for HTTP), CPU per call in both processes, and the server's RSS.
//!
//! Options: `--reps N` (default 3), `--scale X` (default 1.0: iteration counts), `--only a,b`
//! (systems by name), `--workloads a,b` (idle, connect, seq, c1, c16, c64, c256, c64x8, c64x64,
//! stream). `peers serve NAME --cert C --key K` is the server side the driver starts.
//!
//! `peers soak [--secs 60] [--conns 64] [--inflight 64] [--only a,b] [--check]`: a long steady
//! load instead (see [`soak`]), printing throughput and the server's RSS every twelfth of the
//! run; with `--check`, fails when RSS after warm-up is not flat within 10%.

mod driver;
mod measure;
mod messages;
mod soak;
mod systems;

use std::path::PathBuf;

use systems::{Certs, System};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let system = args
            .get(1)
            .and_then(|name| System::from_name(name))
            .ok_or_else(|| anyhow::anyhow!("serve: unknown system"))?;
        let certs = Certs {
            cert: PathBuf::from(flag(&args, "--cert").ok_or_else(|| anyhow::anyhow!("--cert"))?),
            key: PathBuf::from(flag(&args, "--key").ok_or_else(|| anyhow::anyhow!("--key"))?),
        };
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(system.serve(certs));
    }
    if args.first().map(String::as_str) == Some("soak") {
        let options = soak::Options {
            secs: flag(&args, "--secs").map_or(Ok(60), |v| v.parse())?,
            conns: flag(&args, "--conns").map_or(Ok(64), |v| v.parse())?,
            inflight: flag(&args, "--inflight").map_or(Ok(64), |v| v.parse())?,
            systems: systems_flag(&args).unwrap_or_else(|| vec![System::Alknet]),
            check: args.iter().any(|a| a == "--check"),
        };
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(soak::run(options));
    }
    let options = driver::Options {
        reps: flag(&args, "--reps").map_or(Ok(3), |v| v.parse())?,
        scale: flag(&args, "--scale").map_or(Ok(1.0), |v| v.parse())?,
        only: systems_flag(&args),
        workloads: flag(&args, "--workloads")
            .map(|list| list.split(',').map(str::to_owned).collect()),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(driver::run(options))
}

/// `--only a,b`: systems by name.
fn systems_flag(args: &[String]) -> Option<Vec<System>> {
    flag(args, "--only").map(|list| {
        list.split(',')
            .map(|name| System::from_name(name).unwrap_or_else(|| panic!("unknown system {name}")))
            .collect()
    })
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}
