//! `sealgate check-config FILE`: every problem of a configuration, offline, each once with its
//! key and line, then the risky settings.
//!
//! Besides what `serve` refuses at start, this checks, as the user running it, what `serve`
//! will need from the file system: the journal's directory exists and is writable, the TLS
//! certificate and key are readable files, the `[static]` directory can be listed and its index
//! read. (`file:` secrets are read by every load.) Secrets that are not set in this environment
//! are reported, not required.

use std::cell::RefCell;
use std::fs::{self};
use std::io;
use std::path::{Path, PathBuf};

use super::env::{ENV_PREFIX, ProcessEnv, SecretSource};
use super::problem::{Place, Problem};
use super::read;

/// What `sealgate check-config` prints.
#[derive(Debug)]
pub struct Report {
    /// The file checked, as given.
    pub file: PathBuf,
    /// Every problem, each once, in the order found (printed as `error: …` lines).
    pub errors: Vec<Problem>,
    /// Risky settings, unset variables and overrides, when there is no error (printed as
    /// `warning: …` lines).
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether the file has no problem (`serve` would start with it).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The closing line: `FILE: ok (N warnings)` or `FILE: N errors`.
    pub fn summary(&self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if self.is_ok() {
            let n = self.warnings.len();
            format!("{}: ok ({n} warning{})", self.file.display(), plural(n))
        } else {
            let n = self.errors.len();
            format!("{}: {n} error{}", self.file.display(), plural(n))
        }
    }
}

/// Checks the file at `path` with this process's environment (its `SEALGATE__…` overrides and
/// the variables its secrets name).
///
/// # Errors
/// When the file cannot be read.
pub fn check_file(path: &Path) -> io::Result<Report> {
    let text = fs::read_to_string(path)?;
    let overrides: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    Ok(check_text(path, &text, &ProcessEnv, &overrides))
}

/// Checks `text` (read from `file`) with secrets looked up in `env`.
pub(crate) fn check_text(
    file: &Path,
    text: &str,
    env: &dyn SecretSource,
    overrides: &[(String, String)],
) -> Report {
    let env = CheckEnv {
        lookup: env,
        missing: RefCell::new(Vec::new()),
    };
    let (settings, places) = read(text, &env, overrides, true);
    let mut report = Report {
        file: file.to_path_buf(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(problems) => {
            report.errors = problems;
            return report;
        }
    };
    let place = |key: &str| places.get(key).cloned().unwrap_or(Place::Unknown);
    report.warnings = settings
        .warnings()
        .into_iter()
        .map(|(key, why)| format!("{key}{}: {why}", place(&key)))
        .collect();
    for name in env.missing.borrow().iter() {
        report.warnings.push(format!(
            "environment variable {name} is not set here; `sealgate serve` will need it"
        ));
    }
    for (name, _) in overrides.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)) {
        report.warnings.push(format!("{name} overrides the file"));
    }
    report
}

/// Secrets for `check-config`: the real value when set, a placeholder (noted) when not.
struct CheckEnv<'a> {
    lookup: &'a dyn SecretSource,
    missing: RefCell<Vec<String>>,
}

impl SecretSource for CheckEnv<'_> {
    fn env(&self, name: &str) -> Option<String> {
        self.lookup.env(name).or_else(|| {
            let mut missing = self.missing.borrow_mut();
            if !missing.iter().any(|m| m == name) {
                missing.push(name.to_owned());
            }
            // A well-formed stand-in: 32 bytes for keys, a word for anything else.
            Some(if name.to_ascii_uppercase().contains("KEY") {
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()
            } else {
                "placeholder".to_owned()
            })
        })
    }

    fn is_stand_in(&self, name: &str) -> bool {
        self.lookup.env(name).is_none()
    }
}
