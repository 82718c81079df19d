//! The soak's processes: three `sealgate serve` instances (the real binary), nginx in front of
//! them, each a child process of the test, stopped by PID (on drop too).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::app::{KEY, config_toml_with_upstream};

pub use crate::support::redis_ops::free_port;

/// The binary: `SEALGATE_BIN` (a release build), else the one cargo built for this test.
fn sealgate_bin() -> String {
    std::env::var("SEALGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sealgate").to_owned())
}

/// Waits until something accepts connections on `addr`.
pub async fn wait_listening(addr: SocketAddr, what: &str, within: Duration) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(started.elapsed() < within, "{what} did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One `sealgate serve` on a fixed port; `restart` starts it again on the same port with the
/// same configuration file.
pub struct Instance {
    pub name: &'static str,
    pub addr: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// The highest VmRSS (kB) sampled from any of its processes.
    pub max_rss_kb: u64,
    /// How many times it was started.
    pub starts: u32,
}

impl Instance {
    /// Writes the configuration (the harness config with `extra`, the routes to `upstream`)
    /// and starts it.
    pub async fn start(
        name: &'static str,
        dir: &Path,
        issuer: &str,
        upstream: SocketAddr,
        extra: &str,
    ) -> Instance {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.join(format!("sealgate-{name}.toml"));
        let text = config_toml_with_upstream(issuer, extra, &upstream.to_string())
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
        std::fs::write(&config, text).unwrap();
        let mut i = Instance {
            name,
            addr,
            config,
            log: dir.join(format!("sealgate-{name}.log")),
            child: None,
            max_rss_kb: 0,
            starts: 0,
        };
        i.spawn().await;
        i
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(sealgate_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("SECRET", "test-secret")
            .env("KEY", KEY)
            .env("RUST_LOG", "sealgate=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", sealgate_bin()));
        self.child = Some(child);
        self.starts += 1;
        wait_listening(self.addr, self.name, Duration::from_secs(30)).await;
    }

    /// SIGKILL, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again (after [`Instance::kill`]).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Samples VmRSS of the running process into `max_rss_kb`.
    pub fn sample_rss(&mut self) {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return;
        };
        if let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            self.max_rss_kb = self.max_rss_kb.max(kb);
        }
    }

    /// Whether the process is still running (it did not exit by itself).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last lines of its log (for a failure report).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx (the Debian package) in the foreground on a loopback port, with its own prefix,
/// round-robin over the instances, no stickiness. `proxy_next_upstream error timeout`: a
/// request whose connection to an instance fails (refused, reset before a response header) is
/// retried on the next instance, unless it is non-idempotent (POST) and was already sent.
pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
}

/// The binary: `SEALGATE_NGINX` or `nginx` (also in /usr/sbin, often not on a user's PATH).
fn nginx_bin() -> String {
    if let Ok(bin) = std::env::var("SEALGATE_NGINX") {
        return bin;
    }
    let sbin = Path::new("/usr/sbin/nginx");
    if sbin.exists() {
        return sbin.display().to_string();
    }
    "nginx".into()
}

impl Nginx {
    pub async fn start(dir: &Path, instances: &[SocketAddr]) -> Nginx {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("temp")).unwrap();
        let servers: String = instances
            .iter()
            .map(|a| format!("    server {a} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let p = prefix.display();
        // `user` matters only when started as root (CI): workers then need no file access
        // beyond what the master opened, and no temp files (bodies are small, in memory).
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            r#"daemon off;
{user}worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {p}/temp/body;
  proxy_temp_path {p}/temp/proxy;
  fastcgi_temp_path {p}/temp/fastcgi;
  uwsgi_temp_path {p}/temp/uwsgi;
  scgi_temp_path {p}/temp/scgi;
  upstream sealgate {{
{servers}    keepalive 64;
  }}
  server {{
    listen {addr};
    location / {{
      proxy_pass http://sealgate;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
    }}
  }}
}}
"#
        );
        let file = prefix.join("nginx.conf");
        std::fs::write(&file, conf).unwrap();
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install it with `apt-get install nginx`",
                    nginx_bin()
                )
            });
        wait_listening(addr, "nginx", Duration::from_secs(10)).await;
        Nginx { addr, child }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its worker too ("fast shutdown"); SIGKILL after 5 s.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while matches!(self.child.try_wait(), Ok(None))
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
