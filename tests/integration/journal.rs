//! The revocation journal across a crash: a real `sealgate serve` process logs a user out, is
//! killed with SIGKILL, and a new process on the same journal still refuses the old cookies.
//! The control runs the same flow without a journal and sees the cookies work again, so the
//! main test can fail.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::app::{KEY, PUBLIC, config_toml};
use crate::support::browser::{Browser, Resp};
use crate::support::idp::FakeIdp;

/// A `sealgate serve` child process, killed on drop.
struct Sealgate {
    child: Child,
    actual: String,
}

impl Drop for Sealgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sealgate {
    /// `kill -9`: no shutdown code runs, nothing is flushed.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed by SIGKILL");
    }

    fn browser(&self) -> Browser {
        let mut b = Browser::new();
        b.map_origin(PUBLIC, &self.actual);
        b
    }
}

/// The configuration, with `[revocation] journal` when given. It listens on port 0: the
/// process reports the port it bound ([`spawn`]), so no other socket can take a port chosen
/// beforehand.
fn write_config(dir: &Path, idp: &FakeIdp, journal: Option<&Path>) -> String {
    let extra = journal.map_or_else(String::new, |j| {
        format!("toml.[revocation]\ntoml.journal = '{}'", j.display())
    });
    let text = config_toml(&idp.issuer(), &extra);
    let path = dir.join("sealgate.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn command(config: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sealgate"));
    c.args(["serve", "--config", config]);
    with_env(c)
}

fn with_env(mut c: Command) -> Command {
    c.env("SECRET", "test-secret")
        .env("KEY", KEY)
        // Warnings, and the line naming the address it listens on (read by `spawn`).
        .env("RUST_LOG", "warn,sealgate::server=info")
        .stdout(Stdio::null());
    c
}

async fn start(idp: &FakeIdp, dir: &Path, journal: Option<&Path>) -> Sealgate {
    let config = write_config(dir, idp, journal);
    spawn(command(&config)).await
}

/// Starts `cmd` and waits for its "sealgate listening" line, which names the address it bound
/// (a port picked before the start could be taken by any socket in between, and a connection
/// test would then reach someone else's listener). Its log goes on to this test's stderr.
async fn spawn(mut cmd: Command) -> Sealgate {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("sealgate listening") {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                let _ = tx.send(addr);
            }
            eprintln!("{line}");
        }
    });
    let mut sealgate = Sealgate {
        child,
        actual: String::new(),
    };
    let started = Instant::now();
    let addr = loop {
        match rx.try_recv() {
            Ok(addr) => break addr.expect("the listening line names its address"),
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
            Err(std::sync::mpsc::TryRecvError::Disconnected) => panic!("sealgate exited"),
        }
        assert!(
            sealgate.child.try_wait().unwrap().is_none(),
            "sealgate exited"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "sealgate did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sealgate.actual = format!("http://{addr}");
    sealgate
}

async fn login(b: &mut Browser) {
    let r = b
        .get(
            &format!("{PUBLIC}/bff/login?returnUrl=%2F"),
            &[("sec-fetch-mode", "navigate")],
        )
        .await;
    let authorize = r.location().unwrap();
    let callback = b.get(&authorize, &[]).await.location().unwrap();
    assert_eq!(b.get(&callback, &[]).await.status, 302, "callback");
}

async fn user(b: &mut Browser) -> Resp {
    b.get(&format!("{PUBLIC}/bff/user"), &[("x-csrf", "1")])
        .await
}

/// Logs in, logs out, kills the process with SIGKILL, starts a new one with the same
/// configuration, and replays the pre-logout cookies there. Returns the new process and the
/// replay's `/bff/user` status.
async fn logout_kill_restart(
    idp: &FakeIdp,
    dir: &Path,
    journal: Option<&Path>,
) -> (Sealgate, http::StatusCode) {
    let first = start(idp, dir, journal).await;
    let mut b = first.browser();
    login(&mut b).await;
    assert_eq!(user(&mut b).await.status, 200, "signed in");
    let old = b.export_cookies(PUBLIC);
    let r = b
        .post(&format!("{PUBLIC}/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302, "logout: {}", r.body);
    assert_eq!(user(&mut b).await.status, 401, "logged out on this process");
    first.kill_9();

    let second = start(idp, dir, journal).await;
    let mut thief = second.browser();
    thief.import_cookies(PUBLIC, old);
    let status = user(&mut thief).await.status;
    (second, status)
}

#[tokio::test]
async fn journal_logout_survives_kill_9_and_relogin_works() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("revocations.journal");
    let (second, status) = logout_kill_restart(&idp, dir.path(), Some(&journal)).await;
    assert_eq!(
        status, 401,
        "the pre-logout cookies work again after kill -9 and restart"
    );
    // The logout was written before it was reported: header + one session record.
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 12 + 8 + 25);

    let mut fresh = second.browser();
    login(&mut fresh).await;
    assert_eq!(user(&mut fresh).await.status, 200, "a new login works");
}

#[tokio::test]
async fn journal_control_without_a_journal_a_restart_forgets_the_logout() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_second, status) = logout_kill_restart(&idp, dir.path(), None).await;
    assert_eq!(
        status, 200,
        "memory only: the restart forgot the revocation (if this fails, the journal test \
         proves nothing)"
    );
}

#[tokio::test]
async fn journal_corruption_stops_start_up_with_one_line_naming_path_and_offset() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("revocations.journal");
    let entries: Vec<_> = (1..=3u8)
        .map(|n| sealgate::internal::Revocation::Session {
            id: [n; 16],
            until: i64::MAX,
        })
        .collect();
    let mut bytes = sealgate::internal::journal::to_bytes(&entries);
    let second_record = 12 + 8 + 25;
    bytes[second_record + 9] ^= 0x40; // inside the second of three records
    std::fs::write(&journal, &bytes).unwrap();

    let config = write_config(dir.path(), &idp, Some(&journal));
    let mut child = command(&config).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("sealgate started on a corrupt journal");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let stderr = child.wait_with_output().unwrap().stderr;
    let stderr = String::from_utf8_lossy(&stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("sealgate: "))
        .unwrap_or_else(|| panic!("no error line in {stderr:?}"));
    assert!(
        line.contains(&journal.display().to_string())
            && line.contains(&format!("corrupt at byte {second_record}")),
        "{line}"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        bytes,
        "a refused journal is left as it was"
    );
}

#[tokio::test]
async fn journal_write_failure_fails_the_logout_and_changes_nothing() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("revocations.journal");
    let config = write_config(dir.path(), &idp, Some(&journal));
    // A file size limit makes the journal's writes fail (EFBIG) once it is reached; the shell
    // ignores SIGXFSZ first, and an ignored signal stays ignored across exec.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "trap '' XFSZ; ulimit -f 1; exec \"$0\" serve --config \"$1\"",
        env!("CARGO_BIN_EXE_sealgate"),
        &config,
    ]);
    let first = spawn(with_env(cmd)).await;

    let mut revoked = Vec::new();
    let (mut b, alive) = loop {
        assert!(revoked.len() < 40, "the size limit never failed a logout");
        let mut b = first.browser();
        login(&mut b).await;
        let cookies = b.export_cookies(PUBLIC);
        let r = b
            .post(&format!("{PUBLIC}/bff/logout"), &[("x-csrf", "1")], "")
            .await;
        match r.status.as_u16() {
            302 => revoked.push(cookies),
            503 => break (b, cookies),
            other => panic!("logout answered {other}: {}", r.body),
        }
    };
    assert!(!revoked.is_empty(), "some logouts fit under the limit");
    assert_eq!(
        user(&mut b).await.status,
        200,
        "a logout that failed left the session signed in, as its 503 says"
    );
    // The partial record of the failed write was cut off: the header and one 33-byte record
    // (8-byte head, 25-byte session entry) per reported logout.
    let len = std::fs::metadata(&journal).unwrap().len();
    assert_eq!(len, 12 + 33 * revoked.len() as u64);
    first.kill_9();

    let second = start(&idp, dir.path(), Some(&journal)).await;
    for cookies in revoked {
        let mut thief = second.browser();
        thief.import_cookies(PUBLIC, cookies);
        assert_eq!(user(&mut thief).await.status, 401, "a reported logout held");
    }
    let mut owner = second.browser();
    owner.import_cookies(PUBLIC, alive);
    assert_eq!(
        user(&mut owner).await.status,
        200,
        "the failed logout changed nothing, after the restart either"
    );
}
