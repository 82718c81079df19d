//! The listener and the command line: h2c, request-head limits, start-up errors.

use std::io::{Read, Write};
use std::process::Command;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::app::Harness;

#[tokio::test]
async fn serves_http2_prior_knowledge() {
    let h = Harness::start().await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("{}/bff/user", h.actual).parse().unwrap();
    let r = client
        .request(
            http::Request::get(uri)
                .header("x-csrf", "1")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 401);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("unauthenticated"));
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let h = Harness::start().await;
    let addr = h.running.addr;
    let status = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let big = "a".repeat(64 * 1024);
        let req = format!("GET /bff/user HTTP/1.1\r\nHost: x\r\nCookie: junk={big}\r\n\r\n");
        let _ = s.write_all(req.as_bytes());
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
}

#[tokio::test]
async fn hostile_cookie_headers_get_401_not_500() {
    let h = Harness::start().await;
    let mut b = h.browser();
    for junk in [
        "__Host-sealgate.0=AQEB",
        "__Host-sealgate.0=!!!!; __Host-sealgate.1=x",
        "__Host-sealgate.0=a; __Host-sealgate.0=b",
        "__Host-sealgate.3=AAAA",
        "__Host-sealgate.0=\"quoted\"",
        "=; ;;; __Host-sealgate.0",
    ] {
        let r = b
            .get(
                &Harness::url("/bff/user"),
                &[("x-csrf", "1"), ("cookie", junk)],
            )
            .await;
        assert_eq!(r.status, 401, "{junk}");
        assert!(
            r.set_cookies().iter().all(|c| c.value().is_empty()),
            "deletions only: {junk}"
        );
    }
}

fn sealgate(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keygen_prints_a_fresh_32_byte_key() {
    let a = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("keygen")
        .output()
        .unwrap();
    let b = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("keygen")
        .output()
        .unwrap();
    let (a, b) = (
        String::from_utf8(a.stdout).unwrap(),
        String::from_utf8(b.stdout).unwrap(),
    );
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .unwrap();
    assert_eq!(bytes.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn start_up_errors_are_one_line_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("sealgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    let base = crate::support::app::config_toml("http://127.0.0.1:9", "")
        .replace("env:SECRET", "env:T_SECRET")
        .replace("env:KEY", "env:T_KEY");
    std::fs::write(&path, &base).unwrap();
    let p = path.to_str().unwrap();

    // A short key: names which key and what is wrong.
    let (code, err) = sealgate(
        &["serve", "--config", p],
        &[("T_SECRET", "s"), ("T_KEY", "AAAA")],
    );
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("session key 1") && err.contains("32"), "{err}");

    // An unset secret.
    let (code, err) = sealgate(
        &["serve", "--config", p],
        &[("T_KEY", crate::support::app::KEY)],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("T_SECRET") && err.trim().lines().count() == 1,
        "{err}"
    );

    // An unreachable IdP: discovery fails, refusing to start.
    let (code, err) = sealgate(
        &["serve", "--config", p],
        &[
            ("T_SECRET", "s"),
            ("T_KEY", crate::support::app::KEY),
            ("RUST_LOG", "off"),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("discovery") && err.trim().lines().count() == 1,
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn idp_client_never_follows_redirects() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let client = sealgate::internal::IdpHttpClient::new(std::time::Duration::from_secs(2)).unwrap();
    let req = http::Request::get(format!("http://{addr}/.well-known/openid-configuration"))
        .body(Vec::new())
        .unwrap();
    let err = client.send(req).await.unwrap_err();
    assert!(
        matches!(err, sealgate::internal::HttpError::Redirect(302)),
        "{err:?}"
    );
}

#[tokio::test]
async fn idp_client_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // accept, never answer
        }
    });
    let client =
        sealgate::internal::IdpHttpClient::new(std::time::Duration::from_millis(300)).unwrap();
    let req = http::Request::get(format!("http://{addr}/"))
        .body(Vec::new())
        .unwrap();
    let err = client.send(req).await.unwrap_err();
    assert!(
        matches!(err, sealgate::internal::HttpError::Timeout(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn silent_connections_do_not_hold_connection_slots() {
    let h = Harness::start_with(
        |_| {},
        "server.max_connections = 3\nserver.header_read_timeout = \"1s\"",
    )
    .await;
    let addr = h.running.addr;
    let silent: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut b = h.browser();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        b.get(&Harness::url("/healthz"), &[]),
    )
    .await
    .expect("served once the silent connections timed out");
    assert_eq!(r.status, 200);
    drop(silent);
}

#[test]
fn check_config_reports_errors_with_key_and_line_and_warns_about_risky_settings() {
    let dir = std::env::temp_dir().join(format!("sealgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The example's journal directory (/var/lib/sealgate) need not exist here: check-config
    // now refuses a journal `serve` could not open, so the journal goes to a directory that does.
    let journal = dir.join("revocations.journal");
    let run_with = |path: &std::path::Path, env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .arg("check-config")
            .arg(path)
            .env_remove("SEALGATE_KEY")
            .env_remove("SEALGATE_CLIENT_SECRET")
            .env("SEALGATE__REVOCATION__JOURNAL", &journal)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run = |path: &std::path::Path| run_with(path, &[]);
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let (code, out, _) = run(&example);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("config.example.toml: ok"), "{out}");
    assert!(out.contains("SEALGATE_KEY is not set here"), "{out}");

    let text = std::fs::read_to_string(&example).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("idle_timeout = \"20m\"", "idle_timeout = \"9h\""),
    )
    .unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("idle_timeout"))
        .unwrap()
        + 1;
    let (code, _, err) = run(&bad);
    assert_eq!(code, 1);
    assert!(
        err.contains("session.idle_timeout") && err.contains(&format!("(line {line})")),
        "{err}"
    );

    // Every problem, not just the first, each with its key and line.
    let several = dir.join("several.toml");
    let several_text = format!(
        "{}\n[cluster]\nredis_url = \"redis://:pw@127.0.0.1:6379\"\n",
        text.replace("idle_timeout = \"20m\"", "idle_timeout = \"9h\"")
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"nowhere\"")
            .replace(
                "upstream = \"http://127.0.0.1:5001\"",
                "upstream = \"ftp://127.0.0.1:5001\"",
            )
    );
    std::fs::write(&several, &several_text).unwrap();
    let line_of = |start: &str| {
        several_text
            .lines()
            .position(|l| l.starts_with(start))
            .unwrap()
            + 1
    };
    let (code, _, err) = run(&several);
    assert_eq!(code, 1);
    for (key, start) in [
        ("server.listen", "listen ="),
        ("session.idle_timeout", "idle_timeout"),
        ("routes[0].upstream", "upstream ="),
        ("cluster.redis_url", "redis_url ="),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with("error: ")
                && l.contains(key)
                && l.contains(&format!("(line {})", line_of(start)))),
            "{key} not reported at its line: {err}"
        );
    }
    assert!(err.contains("several.toml: 4 errors"), "{err}");

    let risky = dir.join("risky.toml");
    std::fs::write(
        &risky,
        format!(
            "{text}\n[[routes]]\nprefix = \"/api/public\"\nupstream = \"http://127.0.0.1:5002\"\ntoken = \"none\"\n"
        ),
    )
    .unwrap();
    let (code, out, _) = run(&risky);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("routes[1].prefix") && out.contains("\"/api/public\" has token = \"none\""),
        "{out}"
    );

    // What `serve` will open is checked: a journal directory that does not exist is an error
    // at the journal's line (the file's value, when no variable overrides it).
    let no_dir = dir.join("no-dir.toml");
    let missing = dir.join("missing").join("revocations.journal");
    std::fs::write(
        &no_dir,
        text.replace(
            "journal = \"/var/lib/sealgate/revocations.journal\"",
            &format!("journal = {:?}", missing.display().to_string()),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("check-config")
        .arg(&no_dir)
        .env_remove("SEALGATE__REVOCATION__JOURNAL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let journal_line = text
        .lines()
        .position(|l| l.starts_with("journal ="))
        .unwrap()
        + 1;
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("error: ")
            && l.contains("revocation.journal")
            && l.contains("does not exist")
            && l.contains(&format!("(line {journal_line})"))),
        "{err}"
    );
    assert!(err.contains("no-dir.toml: 1 error"), "{err}");

    // One bad key, one error: a short session key is reported once.
    let (code, _, err) = run_with(&example, &[("SEALGATE_KEY", "AAAA")]);
    assert_eq!(code, 1, "{err}");
    let keys_line = text.lines().position(|l| l.starts_with("keys =")).unwrap() + 1;
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("session.keys") && errors[0].contains(&format!("(line {keys_line})")),
        "{err}"
    );
    assert!(err.contains("config.example.toml: 1 error"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
