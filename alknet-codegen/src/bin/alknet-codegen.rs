//! `alknet-codegen`: command-line front end of the alknet-codegen library.

use std::path::{Path, PathBuf};

use alknet_codegen::compat::{Remote, Source};
use alknet_codegen::{CodegenError, Service};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "alknet-codegen",
    version,
    about = "Code and documents from alknet service files and spec bundles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a service file or spec bundle, generate its Rust (so that what passes `check`
    /// generates) and list its operations; with `--against LOCK`, also fail on a change that
    /// breaks callers of the locked version.
    Check {
        /// The file.
        file: PathBuf,
        /// A lock file written by `alknet-codegen lock`.
        #[arg(long, value_name = "LOCK")]
        against: Option<PathBuf>,
        /// Waive a breaking rule by its id (repeatable).
        #[arg(long = "allow", value_name = "RULE")]
        allowed: Vec<String>,
        /// Generate with string formats as Rust types, as `rust --typed-formats` would.
        #[arg(long)]
        typed_formats: bool,
    },
    /// Classify every change from OLD to NEW: rule id, severity, operation, JSON pointer, and the
    /// surfaces it affects (call protocol, OpenAPI, MCP). Exits 1 when a breaking change is left
    /// after `--allow`. Each side is a service file, a spec bundle, `quic://HOST:PORT` (with
    /// --pin) or `http://HOST:PORT` (running nodes need the `live` feature).
    Diff {
        /// The version callers use now.
        old: String,
        /// The version to check.
        new: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Waive a breaking rule by its id (repeatable).
        #[arg(long = "allow", value_name = "RULE")]
        allowed: Vec<String>,
        /// The fingerprint (`SHA256:<hex>`) of a `quic://` node.
        #[arg(long)]
        pin: Option<String>,
        /// A bearer token for running nodes: they list what a caller with it may call.
        #[arg(long, env = "ALKNET_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Write the spec bundle of a service file (or bundle) to a lock file, to commit; `check
    /// --against` and `Builder::against` then fail on breaking changes until it is rewritten.
    Lock {
        /// A service file or spec bundle.
        file: PathBuf,
        #[command(flatten)]
        out: Output,
    },
    /// Print (or write) the Rust code: types, server trait, `register`, typed client.
    Rust {
        /// A service file or spec bundle.
        file: PathBuf,
        /// String formats as Rust types (date-time, date: chrono; uuid: uuid; ipv4, ipv6:
        /// std::net): the including crate then depends on chrono and uuid with `serde`.
        #[arg(long)]
        typed_formats: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Print (or write) the OpenAPI document (3.1, or the 3.0.3 or 3.2 variant).
    Openapi {
        /// A service file or spec bundle.
        file: PathBuf,
        /// `3.1` (the full schemas; event streams typed by their items, for generators), `3.0`
        /// (for tools that read only 3.0, e.g. progenitor) or `3.2` (event streams described per
        /// event, for validators such as schemathesis).
        #[arg(long = "openapi-version", value_name = "VERSION", default_value = "3.1", value_parser = ["3.1", "3.0", "3.2"])]
        openapi_version: String,
        /// A URL the service is reached at, listed in `servers` (repeatable).
        #[arg(long = "server", value_name = "URL")]
        servers: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Print (or write) the MCP tool list.
    Mcp {
        /// A service file or spec bundle.
        file: PathBuf,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(clap::Args)]
struct Output {
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// With --output: fail if the file is not exactly what would be written.
    #[arg(long, requires = "output")]
    check: bool,
}

fn emit(text: &str, out: &Output) -> Result<(), CodegenError> {
    let Some(path) = &out.output else {
        print!("{text}");
        return Ok(());
    };
    if out.check {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current != text {
            return Err(CodegenError::Output {
                path: path.clone(),
                message: "stale: regenerate it (run the same command without --check)".into(),
            });
        }
        return Ok(());
    }
    std::fs::write(path, text).map_err(|e| CodegenError::Output {
        path: path.clone(),
        message: e.to_string(),
    })
}

fn load(file: &Path) -> Result<Service, CodegenError> {
    alknet_codegen::load(file)
}

/// How `diff` prints its report.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One line per change and a summary.
    Text,
    /// `{"changes": [...], "summary": {...}}`.
    Json,
    /// A table for pull-request comments.
    Markdown,
}

/// What `run` ends with: done, or a gate that says no.
enum Outcome {
    Done,
    Breaking,
}

/// What string formats become, from the `--typed-formats` flag.
fn formats(typed: bool) -> alknet_codegen::Formats {
    if typed {
        alknet_codegen::Formats::Typed
    } else {
        alknet_codegen::Formats::Strings
    }
}

fn run(command: Command) -> Result<Outcome, CodegenError> {
    match command {
        Command::Check {
            file,
            against,
            allowed,
            typed_formats,
        } => {
            let service = load(&file)?;
            // The Rust generator runs too: a file `check` passes is one `rust` generates.
            let (_, warnings) =
                alknet_codegen::rust_source_with_warnings(&service, &file, formats(typed_formats))?;
            for warning in &warnings {
                eprintln!("warning: {}: {warning}", file.display());
            }
            for op in &service.bundle.operations {
                println!("{} {}", op.op_type.as_str(), op.name);
            }
            eprintln!(
                "{}: {} operations, valid{}",
                file.display(),
                service.bundle.operations.len(),
                match warnings.len() {
                    0 => String::new(),
                    n => format!(" ({n} approximation warning(s): the Rust types are wider there)"),
                }
            );
            if let Some(lock) = against {
                let report = alknet_codegen::compat::check_against(&file, &lock, &allowed)?;
                eprint!(
                    "against {}: {}",
                    lock.display(),
                    report.to_text().lines().last().unwrap_or_default()
                );
                eprintln!();
            }
            Ok(Outcome::Done)
        }
        Command::Diff {
            old,
            new,
            format,
            allowed,
            pin,
            token,
        } => {
            let remote = Remote { pin, token };
            let old = alknet_codegen::compat::load_source(&Source::parse(&old), &remote)?;
            let new = alknet_codegen::compat::load_source(&Source::parse(&new), &remote)?;
            let report = alknet_spec::compat::diff(&old, &new);
            match format {
                Format::Text => print!("{}", report.to_text()),
                Format::Markdown => print!("{}", report.to_markdown()),
                Format::Json => print!("{}", alknet_codegen::to_pretty_json(&report.to_json())),
            }
            Ok(if report.has_breaking(&allowed) {
                Outcome::Breaking
            } else {
                Outcome::Done
            })
        }
        Command::Lock { file, out } => {
            let service = load(&file)?;
            emit(&service.bundle.to_json_pretty(), &out)?;
            Ok(Outcome::Done)
        }
        Command::Rust {
            file,
            typed_formats,
            out,
        } => {
            let service = load(&file)?;
            let (source, warnings) =
                alknet_codegen::rust_source_with_warnings(&service, &file, formats(typed_formats))?;
            for warning in &warnings {
                eprintln!("warning: {}: {warning}", file.display());
            }
            emit(&source, &out)?;
            Ok(Outcome::Done)
        }
        Command::Openapi {
            file,
            openapi_version,
            servers,
            out,
        } => {
            let service = load(&file)?;
            let version = match openapi_version.as_str() {
                "3.0" => alknet_codegen::OpenApiVersion::V3_0,
                "3.2" => alknet_codegen::OpenApiVersion::V3_2,
                _ => alknet_codegen::OpenApiVersion::V3_1,
            };
            emit(
                &alknet_codegen::to_pretty_json(&alknet_codegen::openapi(
                    &service, version, &servers,
                )),
                &out,
            )?;
            Ok(Outcome::Done)
        }
        Command::Mcp { file, out } => {
            let service = load(&file)?;
            emit(
                &alknet_codegen::to_pretty_json(&alknet_codegen::mcp_tools(&service)),
                &out,
            )?;
            Ok(Outcome::Done)
        }
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(Outcome::Done) => std::process::ExitCode::SUCCESS,
        Ok(Outcome::Breaking) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("alknet-codegen: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
