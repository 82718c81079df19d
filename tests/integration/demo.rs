//! `sealgate demo` end to end: the page, login through the development IdP's form, /bff/user,
//! the demo API reached through the proxy with the token (and without the cookie), logout; and
//! the `sealgate demo` command itself, as a new user runs it.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devidp::demo::Demo;
use sealgate::Settings;
use sealgate::{Options, Running};

use crate::support::app::{init_logs, urlencode};
use crate::support::browser::Browser;

/// The demo as `sealgate demo` assembles it (see `src/demo.rs`), with sealgate on `listener`.
async fn start_demo(listener: TcpListener) -> (Demo, Running) {
    let any = "127.0.0.1:0".parse().unwrap();
    let demo = Demo::start(listener.local_addr().unwrap(), any, any)
        .await
        .unwrap();
    let settings = Settings::from_toml(demo.config(), &|name: &str| demo.secret(name)).unwrap();
    let running = sealgate::start(
        settings,
        Options {
            listener: Some(listener),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    (demo, running)
}

fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in html.split("<input type=\"hidden\"").skip(1) {
        let attr = |name: &str| {
            let start = chunk.find(&format!("{name}=\""))? + name.len() + 2;
            let end = chunk[start..].find('"')? + start;
            Some(
                chunk[start..end]
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'"),
            )
        };
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            out.push((n, v));
        }
    }
    out
}

#[tokio::test]
async fn demo_login_user_api_and_logout() {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (demo, running) = start_demo(listener).await;
    let public = demo.public.clone();
    let mut b = Browser::new();
    b.map_origin(&public, &format!("http://{}", running.addr));

    let home = b.navigate(&format!("{public}/")).await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("not for production"),
        "the demo page is labelled"
    );
    // The page is served by `[static]`, with its default CSP: no inline script, so the script
    // and the style are files; the browser finds an icon and logs no 404 for it.
    assert!(
        home.header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );
    for (path, content_type) in [
        ("/demo.js", "text/javascript; charset=utf-8"),
        ("/demo.css", "text/css; charset=utf-8"),
        ("/favicon.ico", "image/x-icon"),
    ] {
        let asset = b.get(&format!("{public}{path}"), &[]).await;
        assert_eq!(asset.status, 200, "{path}");
        assert_eq!(asset.header("content-type").as_deref(), Some(content_type));
    }

    // Login: sealgate → the development IdP's login page (a form asking for a name).
    let page = b.navigate(&format!("{public}/bff/login?returnUrl=/")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("not for production"));
    let mut form: Vec<String> = hidden_fields(&page.body)
        .into_iter()
        .map(|(k, v)| format!("{}={}", urlencode(&k), urlencode(&v)))
        .collect();
    form.push("name=Ada%20Lovelace".into());
    form.push("action=approve".into());
    let back = b
        .submit(
            &format!("{}/authorize", demo.idp.issuer()),
            &[],
            &form.join("&"),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(
        back.url,
        format!("{public}/"),
        "landed on the page after the callback"
    );
    assert!(b.cookie(&public, "__Host-sealgate.0").is_some());

    let user = b
        .get(&format!("{public}/bff/user"), &[("x-csrf", "1")])
        .await;
    assert_eq!(user.status, 200, "{}", user.body);
    let user = user.json();
    assert_eq!(user["claims"]["name"], "Ada Lovelace");

    // The API received the access token from sealgate, and never the browser's cookie.
    let api = b
        .get(&format!("{public}/api/whoami"), &[("x-csrf", "1")])
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    let api = api.json();
    assert_eq!(api["token_claims"]["sub"], user["sub"]);
    assert_eq!(api["cookie_header_received"], false);
    assert_eq!(
        api["path"], "/whoami",
        "the route prefix maps onto the upstream base URL"
    );

    // Logout through the link /bff/user gave, then the IdP's end-session back to the page.
    let out = b
        .navigate(&format!("{public}{}", user["logout_url"].as_str().unwrap()))
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(
        b.get(&format!("{public}/bff/user"), &[("x-csrf", "1")])
            .await
            .status,
        401
    );
    assert_eq!(
        b.get(&format!("{public}/api/whoami"), &[("x-csrf", "1")])
            .await
            .status,
        401
    );
    running.shutdown().await;
    drop(demo);
}

/// `sealgate demo --port N` as a child process, its stderr in a file; killed on drop.
struct DemoProcess {
    child: Child,
    port: u16,
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DemoProcess {
    /// Starts `sealgate demo` on three free consecutive ports.
    fn spawn(log: &std::path::Path) -> DemoProcess {
        for _ in 0..20 {
            let Some(port) = free_port_triple() else {
                continue;
            };
            let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
                .args(["demo", "--port", &port.to_string()])
                // The defaults a new user has: no filter, no NO_COLOR.
                .env_remove("RUST_LOG")
                .env_remove("NO_COLOR")
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
                .spawn()
                .unwrap();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                if child.try_wait().unwrap().is_some() {
                    break; // a port was taken after all: try others
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return DemoProcess { child, port };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "sealgate demo did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Ends it as Ctrl-C would (SIGINT), so that it drains and removes its directory.
    fn interrupt(mut self) {
        #[cfg(unix)]
        {
            let pid = self.child.id().to_string();
            let sent = Command::new("kill").args(["-INT", &pid]).status();
            if sent.is_ok_and(|s| s.success()) {
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    if self.child.try_wait().unwrap().is_some() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port N such that N, N+1 and N+2 were free a moment ago.
fn free_port_triple() -> Option<u16> {
    let first = TcpListener::bind("127.0.0.1:0").ok()?;
    let port = first.local_addr().ok()?.port();
    let _next: Vec<TcpListener> = (1..=2)
        .map(|n| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port.checked_add(n)?))).ok())
        .collect::<Option<_>>()?;
    Some(port)
}

#[tokio::test]
async fn the_demo_command_serves_an_icon_and_logs_plainly_without_alarm() {
    let log = std::env::temp_dir().join(format!("sealgate-demo-{}.log", std::process::id()));
    let demo = DemoProcess::spawn(&log);
    let public = format!("http://localhost:{}", demo.port);
    let mut b = Browser::new();
    b.map_origin(&public, &format!("http://127.0.0.1:{}", demo.port));
    assert_eq!(b.navigate(&format!("{public}/")).await.status, 200);
    assert_eq!(
        b.get(&format!("{public}/favicon.ico"), &[]).await.status,
        200
    );
    assert_eq!(
        b.get(&format!("{public}/bff/user"), &[("x-csrf", "1")])
            .await
            .status,
        401
    );
    demo.interrupt();

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        text.contains("development IdP (NOT FOR PRODUCTION) listening"),
        "the IdP's lines are logged at the default level: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "a redirected log has no colour codes: {text}"
    );
    assert!(
        !text.contains("no [revocation] journal"),
        "the demo journals its revocations: {text}"
    );
}
