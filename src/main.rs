//! The `sealgate` command line: a thin shell over the library (parse, load, run, print one
//! error line, exit non-zero).

mod demo;

use std::path::PathBuf;
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
    /// Run the BFF with a configuration file.
    Serve {
        /// The TOML configuration (see config.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a self-contained demo: sealgate, a development IdP and a demo API, on loopback.
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
        Command::CheckConfig { file } => check_config(&file),
        Command::Keygen => {
            println!("{}", sealgate::seal::keys::generate_key_base64()?);
            Ok(())
        }
        Command::Serve { config } => {
            let settings = sealgate::config::Settings::load(&config)?;
            sealgate::telemetry::init(&settings.log);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let running =
                    sealgate::server::start(settings, sealgate::server::Options::default()).await?;
                running.until_signal().await;
                Ok::<(), Box<dyn std::error::Error>>(())
            })
        }
        Command::Demo { port } => {
            sealgate::telemetry::init(&sealgate::config::LogSettings::default());
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(demo::run(port))
        }
    }
}

/// Secrets for `check-config`: the real value when set, a placeholder (noted) when not.
struct CheckEnv {
    missing: std::cell::RefCell<Vec<String>>,
}

impl sealgate::config::SecretSource for CheckEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().or_else(|| {
            self.missing.borrow_mut().push(name.to_owned());
            // A well-formed stand-in: 32 bytes for keys, a word for anything else.
            Some(if name.to_ascii_uppercase().contains("KEY") {
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()
            } else {
                "placeholder".to_owned()
            })
        })
    }
}

fn check_config(file: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use sealgate::config::{ENV_PREFIX, Settings, line_of};
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let at = |key: &str| line_of(&text, key).map_or_else(String::new, |l| format!(" (line {l})"));
    let env = CheckEnv {
        missing: std::cell::RefCell::new(Vec::new()),
    };
    let overrides: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    let settings = match Settings::check_all(&text, &env, &overrides) {
        Ok(s) => s,
        Err(problems) => {
            for e in &problems {
                let place = e.key().map(&at).unwrap_or_default();
                eprintln!("error: {e}{place}");
            }
            return Err(format!(
                "{}: {} error{}",
                file.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            )
            .into());
        }
    };
    let mut warnings: Vec<String> = settings
        .warnings()
        .into_iter()
        .map(|(key, why)| format!("{key}{}: {why}", at(&key)))
        .collect();
    for name in env.missing.borrow().iter() {
        warnings.push(format!(
            "environment variable {name} is not set here; `sealgate serve` will need it"
        ));
    }
    for (name, _) in &overrides {
        warnings.push(format!("{name} overrides the file"));
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    println!(
        "{}: ok ({} warning{})",
        file.display(),
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
