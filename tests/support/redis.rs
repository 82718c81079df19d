//! A real `redis-server` (the Debian package) on a loopback port, for the cluster tests.
//! Started in the foreground as a child process, stopped by PID (on drop too).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary: `SEALGATE_REDIS_SERVER` or `redis-server` on `PATH`.
fn binary() -> String {
    std::env::var("SEALGATE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// A running Redis.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts Redis on a free loopback port. Redis cannot listen on port 0, so the port is
    /// picked first and may be taken by another socket before Redis binds it (Redis then exits):
    /// then it starts again on another port.
    pub fn start() -> Redis {
        for _ in 0..5 {
            let port = super::redis_ops::free_port();
            let mut r = Redis { port, child: None };
            if r.launch() {
                return r;
            }
        }
        panic!("redis-server exited at start five times (ports taken?)");
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (SIGKILL: like a crash or a network cut for its clients).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: no persistence, as after losing the data).
    pub fn restart(&mut self) {
        assert!(
            self.launch(),
            "redis-server exited (port {} taken?)",
            self.port
        );
    }

    /// Starts the server on its port; false if it exited before it answered PING.
    fn launch(&mut self) -> bool {
        self.stop();
        let child = Command::new(binary())
            .args(super::redis_ops::server_args(
                &self.port.to_string(),
                &["--protected-mode", "yes"],
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install it with `apt-get install redis-server`",
                    binary()
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        while !self.ping() {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().is_ok_and(|status| status.is_some())
            {
                self.child = None;
                return false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf).is_ok_and(|n| &buf[..n] == b"+PONG\r\n")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
