//! `sealgate check-config FILE`: every problem of a configuration, offline, each once with its
//! key and line, then the risky settings.
//!
//! Besides what `serve` refuses at start, this checks, as the user running it, what `serve`
//! will need from the file system: the journal's directory exists and is writable, the TLS
//! certificate and key are readable files, the `[static]` directory can be listed and its index
//! read. (`file:` secrets are read by every load.) Secrets that are not set in this environment
//! are reported, not required.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
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
}

/// `path` is a file this process can open for reading.
pub(super) fn readable_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a file"));
    }
    File::open(path)
        .map(drop)
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

/// `path` is a directory this process can list.
pub(super) fn readable_dir(path: &Path) -> Result<(), String> {
    fs::read_dir(path)
        .map(drop)
        .map_err(|e| format!("cannot list {}: {e}", path.display()))
}

/// The revocation journal can be opened: its directory exists and is writable (the journal
/// and `<journal>.lock` are created there), and an existing journal is a file this process can
/// read and append to. Nothing is created or written.
pub(super) fn journal_path(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let shown = dir.display();
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{shown} is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "the directory {shown} does not exist (create it first)"
            ));
        }
        Err(e) => return Err(format!("cannot open the directory {shown}: {e}")),
    }
    writable_dir(dir).map_err(|e| format!("the directory {shown} is not writable: {e}"))?;
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot open {}: {e}", path.display())),
        Ok(meta) if !meta.is_file() => Err(format!("{} is not a file", path.display())),
        Ok(_) => OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot open {}: {e}", path.display())),
    }
}

/// Whether this process may create files in `dir` (asked of the kernel, without creating one).
#[cfg(unix)]
fn writable_dir(dir: &Path) -> io::Result<()> {
    use rustix::fs::{Access, access};
    access(dir, Access::WRITE_OK | Access::EXEC_OK).map_err(io::Error::from)
}

#[cfg(not(unix))]
fn writable_dir(dir: &Path) -> io::Result<()> {
    if fs::metadata(dir)?.permissions().readonly() {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only"));
    }
    Ok(())
}
