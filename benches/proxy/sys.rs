//! Child processes, a temp directory, ports, and what `/proc` says about CPU time and memory.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

/// A child process that is stopped by PID when dropped: SIGTERM (nginx's master then stops its
/// workers; sealgate drains), SIGKILL if it is still there after 5 s.
pub(crate) struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let out = std::fs::File::create(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc { name, child })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.running() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("proxy bench: {} ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 15 s) until `ready` holds, failing early with the log if the child exits.
pub(crate) fn wait_until(p: &mut Proc, log: &Path, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if ready() {
            return Ok(());
        }
        let log = || std::fs::read_to_string(log).unwrap_or_default();
        if !p.running() {
            return Err(format!("{} exited at start-up:\n{}", p.name, log()).into());
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not become ready in 15 s:\n{}", p.name, log()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl TempDir {
    pub(crate) fn new() -> Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("sealgate-proxy-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback port that was free a moment ago (the child binds it right after).
pub(crate) fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The status of one `GET path` (HTTP/1.1, `Connection: close`), or `None`.
pub(crate) fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // nginx lives in /usr/sbin, which is not on every user's PATH.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn proc_status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`).
pub(crate) fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    proc_status_field(pid, field)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The fields of `/proc/PID/stat` after the command name (field 3, `state`, is index 0).
pub(crate) fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = proc_stat(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Busy, interrupt and total ticks of all CPUs together (`/proc/stat`).
pub(crate) fn machine_ticks() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    let irq = v.get(5)? + v.get(6)?;
    Some((total - idle, irq, total))
}

/// `pid` and its direct children (nginx's master and workers).
pub(crate) fn process_group(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if proc_stat(child).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

pub(crate) fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time (clock ticks) during measured runs, by whom.
#[derive(Clone, Copy, Default)]
pub(crate) struct Cpu {
    /// The proxy's processes (none for the direct runs).
    pub(crate) proxy: Option<u64>,
    /// This process: the upstream (and the idle fake IdP).
    pub(crate) upstream: u64,
    /// wrk (a waited-for child of this process).
    pub(crate) wrk: u64,
    /// Every CPU of the machine, busy (not idle or waiting for I/O).
    pub(crate) machine_busy: u64,
    /// Every CPU of the machine, in hard and soft interrupts (loopback packets are delivered
    /// there; not charged to any process).
    pub(crate) machine_irq: u64,
    /// Every CPU of the machine, in all.
    pub(crate) machine_total: u64,
}

impl Cpu {
    pub(crate) fn sample(pids: &[u32]) -> Cpu {
        let me = proc_stat(std::process::id()).unwrap_or_default();
        let field = |i: usize| me.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let (machine_busy, machine_irq, machine_total) = machine_ticks().unwrap_or_default();
        Cpu {
            proxy: (!pids.is_empty())
                .then(|| pids.iter().map(|&p| cpu_ticks(p)).sum::<Option<u64>>())
                .flatten(),
            // utime + stime, then cutime + cstime (children that were waited for).
            upstream: field(11) + field(12),
            wrk: field(13) + field(14),
            machine_busy,
            machine_irq,
            machine_total,
        }
    }

    pub(crate) fn since(self, before: Cpu) -> Cpu {
        Cpu {
            proxy: self
                .proxy
                .zip(before.proxy)
                .map(|(a, b)| a.saturating_sub(b)),
            upstream: self.upstream.saturating_sub(before.upstream),
            wrk: self.wrk.saturating_sub(before.wrk),
            machine_busy: self.machine_busy.saturating_sub(before.machine_busy),
            machine_irq: self.machine_irq.saturating_sub(before.machine_irq),
            machine_total: self.machine_total.saturating_sub(before.machine_total),
        }
    }

    pub(crate) fn plus(self, other: Cpu) -> Cpu {
        Cpu {
            proxy: match (self.proxy, other.proxy) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            },
            upstream: self.upstream + other.upstream,
            wrk: self.wrk + other.wrk,
            machine_busy: self.machine_busy + other.machine_busy,
            machine_irq: self.machine_irq + other.machine_irq,
            machine_total: self.machine_total + other.machine_total,
        }
    }

    /// Ticks used by processes outside this benchmark (other builds on a shared machine).
    pub(crate) fn others(self) -> u64 {
        self.machine_busy
            .saturating_sub(self.machine_irq + self.proxy.unwrap_or(0) + self.upstream + self.wrk)
    }
}

/// Summed `VmRSS` of `pids`, in kB.
pub(crate) fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&p| proc_status_kb(p, "VmRSS"))
        .sum()
}

/// Open file descriptors of `pids` (sockets included).
pub(crate) fn open_fds(pids: &[u32]) -> usize {
    pids.iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map(Iterator::count)
        .sum()
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `want` (children inherit it) if the
/// hard limit allows; returns the soft limit now in force.
pub(crate) fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let current = now.current.unwrap_or(u64::MAX);
    if current >= want {
        return current;
    }
    let target = now.maximum.map_or(want, |max| max.min(want));
    let raised = rustix::process::Rlimit {
        current: Some(target),
        maximum: now.maximum,
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        target
    } else {
        current
    }
}
