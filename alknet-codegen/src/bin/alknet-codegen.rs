//! `alknet-codegen`: command-line front end of the alknet-codegen library.

use std::path::{Path, PathBuf};

use alknet_codegen::{CodegenError, Service};
use clap::{Parser, Subcommand};

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
    /// Validate a service file or spec bundle and list its operations.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print (or write) the Rust code: types, server trait, `register`, typed client.
    Rust {
        /// A service file or spec bundle.
        file: PathBuf,
        #[command(flatten)]
        out: Output,
    },
    /// Print (or write) the OpenAPI 3.1 document.
    Openapi {
        /// A service file or spec bundle.
        file: PathBuf,
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

fn run(command: Command) -> Result<(), CodegenError> {
    match command {
        Command::Check { file } => {
            let service = load(&file)?;
            for op in &service.bundle.operations {
                println!("{} {}", op.op_type.as_str(), op.name);
            }
            eprintln!(
                "{}: {} operations, valid",
                file.display(),
                service.bundle.operations.len()
            );
            Ok(())
        }
        Command::Rust { file, out } => {
            let service = load(&file)?;
            emit(&alknet_codegen::rust_source(&service, &file)?, &out)
        }
        Command::Openapi { file, out } => {
            let service = load(&file)?;
            emit(
                &alknet_codegen::to_pretty_json(&alknet_codegen::openapi(&service)),
                &out,
            )
        }
        Command::Mcp { file, out } => {
            let service = load(&file)?;
            emit(
                &alknet_codegen::to_pretty_json(&alknet_codegen::mcp_tools(&service)),
                &out,
            )
        }
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("alknet-codegen: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
