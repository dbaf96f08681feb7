//! `alknet-codegen`: command-line front end of the alknet-codegen library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "alknet-codegen",
    version,
    about = "Code and documents from alknet spec bundles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a spec bundle (the output of `alknet spec`) and list its operations.
    Check {
        /// The bundle file.
        file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Check { file } => {
            let bundle = alknet_codegen::load_bundle(&file)?;
            for op in &bundle.operations {
                println!("{} {}", op.op_type.as_str(), op.name);
            }
            eprintln!(
                "{}: {} operations, valid",
                file.display(),
                bundle.operations.len()
            );
        }
    }
    Ok(())
}
