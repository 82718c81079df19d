//! What `check-config` checks of the files and directories `serve` will open, offline and
//! without creating or writing anything.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

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
