//! `sealgate serve` as a real child process (the binary cargo built), against the in-process
//! fake IdP: for what only a separate process shows (its memory, its log output, a crash).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::app::{KEY, PUBLIC, config_toml_with_upstream};
use super::browser::Browser;
use super::idp::FakeIdp;

/// A running `sealgate serve`, killed (SIGKILL) on drop.
pub struct Sealgate {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub actual: String,
    dir: PathBuf,
}

/// How to start one.
pub struct Spawn<'a> {
    /// Lines for the harness config (`session.x = …`, `toml.[log]`, …).
    pub extra: &'a str,
    /// `RUST_LOG`.
    pub rust_log: &'a str,
    /// Where stderr goes (inherited when `None`).
    pub log_file: Option<PathBuf>,
}

impl Default for Spawn<'_> {
    fn default() -> Self {
        Self {
            extra: "",
            rust_log: "warn",
            log_file: None,
        }
    }
}

impl Sealgate {
    /// Starts `sealgate serve` on a free port with the harness configuration (routes to
    /// `upstream`), and waits until it accepts connections.
    pub async fn spawn(idp: &FakeIdp, upstream: SocketAddr, how: Spawn<'_>) -> Sealgate {
        Self::spawn_edited(idp, upstream, how, |text| text).await
    }

    /// [`Sealgate::spawn`] with the configuration text passed through `edit` first.
    pub async fn spawn_edited(
        idp: &FakeIdp,
        upstream: SocketAddr,
        how: Spawn<'_>,
        edit: impl FnOnce(String) -> String,
    ) -> Sealgate {
        let text = config_toml_with_upstream(&idp.issuer(), how.extra, &upstream.to_string());
        let text = edit(text);
        // The port is picked before the child binds it, so another socket may take it in
        // between: the child then exits, or a connection test reaches someone else's listener.
        // So the child must be seen listening on it itself, and is started again on another
        // port when it exits.
        for _ in 0..5 {
            let port = super::redis_ops::free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let dir =
                std::env::temp_dir().join(format!("sealgate-child-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("sealgate.toml");
            let listen = text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
            std::fs::write(&config, listen).unwrap();
            let stderr = match &how.log_file {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            };
            let child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
                .args(["serve", "--config"])
                .arg(&config)
                .env("SECRET", "test-secret")
                .env("KEY", KEY)
                .env("RUST_LOG", how.rust_log)
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap();
            let mut s = Sealgate {
                child,
                addr,
                actual: format!("http://{addr}"),
                dir,
            };
            let started = Instant::now();
            loop {
                if s.child.try_wait().unwrap().is_some() {
                    break; // it could not bind the port (or failed otherwise): try again
                }
                if listening(s.child.id(), port) {
                    return s;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "sealgate did not start"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("sealgate exited at start five times");
    }

    /// A browser whose public origin maps to this process.
    pub fn browser(&self) -> Browser {
        let mut b = Browser::new();
        b.map_origin(PUBLIC, &self.actual);
        b
    }

    /// Logs `b` in (login → IdP → callback); returns the callback URL the IdP redirected to.
    pub async fn login(&self, b: &mut Browser) -> String {
        let r = b
            .get(
                &format!("{PUBLIC}/bff/login?returnUrl=%2F"),
                &[("sec-fetch-mode", "navigate")],
            )
            .await;
        assert_eq!(r.status, 302, "login: {}", r.body);
        let authorize = r.location().unwrap();
        let callback = b.get(&authorize, &[]).await.location().unwrap();
        assert_eq!(b.get(&callback, &[]).await.status, 302);
        callback
    }

    /// Peak resident set size (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (a graceful stop), then waits up to 20 s for the process to exit; whether it
    /// exited successfully.
    pub async fn terminate(mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "sealgate did not stop after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as in a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (Linux: the listening
/// socket's inode in `/proc/net/tcp` is one of the process's open files).
pub fn listening(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

impl Drop for Sealgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
