//! The `sealgate` command line: a thin shell over the library (parse, load, run, print one
//! error line, exit non-zero).

#[cfg(feature = "demo")]
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a proxied request allocates and frees many small
/// buffers (header maps, HTTP/2 frames, futures), and glibc's malloc was 7–14% of sealgate's
/// CPU under load (docs/performance.md, round 10). The `mimalloc` feature (on by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sealgate: a Backend-for-Frontend that keeps OAuth tokens out of the browser.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the BFF with a configuration file.
    Serve {
        /// The TOML configuration (see config.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a self-contained demo: sealgate, a development IdP and a demo API, on loopback.
    #[cfg(feature = "demo")]
    Demo {
        /// Port for sealgate (the page to open); the IdP and API use the next two.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Print a new random 32-byte session key, base64-encoded, from the OS CSPRNG.
    Keygen,
    /// Check a configuration file offline: every error and risky setting, with key and line.
    /// Secrets that are not set in this environment are reported, not required.
    CheckConfig {
        /// The TOML configuration.
        file: PathBuf,
    },
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
        Command::CheckConfig { file } => {
            let report = sealgate::check_config(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            for e in &report.errors {
                eprintln!("error: {e}");
            }
            if !report.is_ok() {
                return Err(report.summary().into());
            }
            for w in &report.warnings {
                println!("warning: {w}");
            }
            println!("{}", report.summary());
            Ok(())
        }
        Command::Keygen => {
            println!("{}", sealgate::generate_key_base64()?);
            Ok(())
        }
        Command::Serve { config } => {
            let settings = sealgate::Settings::load(&config)?;
            let traces = sealgate::init_with_traces(&settings.log, &settings.telemetry)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let served = runtime.block_on(async {
                let running = sealgate::start(settings, sealgate::Options::default()).await?;
                running.until_signal().await;
                Ok::<(), Box<dyn std::error::Error>>(())
            });
            // After the graceful stop, outside the runtime: the last spans are exported.
            traces.shutdown();
            served
        }
        #[cfg(feature = "demo")]
        Command::Demo { port } => {
            sealgate::init_logs(&sealgate::LogSettings::default());
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(demo::run(port))
        }
    }
}
