//! The `sealgate` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sealgate: a Backend-for-Frontend that keeps OAuth tokens out of the browser.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random 32-byte session key, base64-encoded, from the OS CSPRNG.
    Keygen,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Keygen => {
            println!("{}", sealgate::seal::keys::generate_key_base64()?);
            Ok(())
        }
    }
}
