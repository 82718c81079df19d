//! What every variant sets up: the upstream and the fake IdP in this process, sealgate and nginx
//! as child processes, and a session made the real way (login → fake IdP → callback).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::Result;
use crate::support::app::{KEY, PUBLIC};
use crate::support::browser::Browser;
use crate::support::idp::FakeIdp;
use crate::sys::{Proc, TempDir, free_port, http_status, proc_status_field, wait_until};
use crate::upstream::{BODY, UPSTREAM_PATH, start_upstream};

/// sealgate's session cookie (the default name); chunks are `<name>.0`, `<name>.1`, ...
pub(crate) const COOKIE_NAME: &str = "__Host-sealgate";

/// The in-process upstream and IdP, a temp directory, and the runtime they run on. Declare it
/// before the child processes, so it outlives them.
pub(crate) struct Stack {
    pub(crate) tmp: TempDir,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) upstream: SocketAddr,
    pub(crate) idp: FakeIdp,
}

impl Stack {
    pub(crate) fn new() -> Result<Stack> {
        let tmp = TempDir::new()?;
        let rt = tokio::runtime::Runtime::new()?;
        let upstream = rt.block_on(start_upstream())?;
        let idp = rt.block_on(FakeIdp::start());
        idp.set(|b| {
            // No refresh during the run.
            b.access_token_lifetime = 3600;
            // A route token is minted once; the refresh token it was minted with stays valid,
            // so the load's cookie stays current.
            b.rotate_on_route_grants = false;
        });
        Ok(Stack {
            tmp,
            rt,
            upstream,
            idp,
        })
    }

    /// Makes the next logins' ID token carry `n` groups (the cookie grows with them).
    pub(crate) fn set_groups(&self, n: usize) {
        let groups: Vec<String> = (0..n)
            .map(|i| format!("/org/unit-{:02}/team-{i:03}", i % 17))
            .collect();
        self.idp.set(|b| {
            b.extra_claims.insert("groups".into(), json!(groups));
        });
    }

    /// Starts sealgate `name` (the bench's config with `extra_server` lines added to
    /// `[server]`) and waits for `/healthz` (plain HTTP only; `tls` skips that wait for a
    /// listening port).
    pub(crate) fn sealgate(&self, name: &str, extra_server: &str) -> Result<(Proc, SocketAddr)> {
        self.sealgate_to(name, extra_server, self.upstream)
    }

    /// [`Stack::sealgate`] with `/api` proxied to `api` (the other routes, and `/probe`, to the
    /// in-process upstream).
    pub(crate) fn sealgate_to(
        &self,
        name: &str,
        extra_server: &str,
        api: SocketAddr,
    ) -> Result<(Proc, SocketAddr)> {
        let addr = free_port()?;
        let config = self.tmp.path.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            sealgate_config(addr, &self.idp.issuer(), api, self.upstream, extra_server),
        )?;
        let log = self.tmp.path.join(format!("{name}.log"));
        let mut p = Proc::spawn(
            "sealgate",
            Command::new(sealgate_bin())
                .args(["serve", "--config"])
                .arg(&config)
                .env("RUST_LOG", "warn")
                .env("SEALGATE_BENCH_SECRET", self.idp.behaviour().client_secret)
                .env("SEALGATE_BENCH_KEY", KEY),
            &log,
        )?;
        let tls = extra_server.contains("tls_cert");
        wait_until(&mut p, &log, || {
            if tls {
                std::net::TcpStream::connect(addr).is_ok()
            } else {
                http_status(addr, "/healthz") == Some(200)
            }
        })?;
        Ok((p, addr))
    }

    /// Starts nginx with `conf` (from [`nginx_config`]) and waits until `ready` answers 200.
    pub(crate) fn nginx(
        &self,
        bin: &Path,
        name: &str,
        conf: &str,
        ready: Option<(SocketAddr, &str)>,
    ) -> Result<Proc> {
        let dir = self.tmp.path.join(name);
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("nginx.conf");
        std::fs::write(&file, conf)?;
        let log = dir.join("nginx.stderr");
        let mut p = Proc::spawn(
            "nginx",
            Command::new(bin)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&file),
            &log,
        )?;
        wait_until(&mut p, &log, || match ready {
            Some((addr, path)) => http_status(addr, path) == Some(200),
            None => dir.join("nginx.pid").exists(),
        })?;
        Ok(p)
    }

    /// The directory of nginx instance `name` (for its config's paths).
    pub(crate) fn nginx_dir(&self, name: &str) -> PathBuf {
        self.tmp.path.join(name)
    }

    /// Logs in through the sealgate at `addr` with `groups` groups and returns the cookie
    /// chunks, after checking there are `chunks` of them and that a proxied call through
    /// `check` (`/api`, or `/probe` when `/api` goes elsewhere) returns the upstream's answer.
    pub(crate) fn session(
        &self,
        addr: SocketAddr,
        groups: usize,
        chunks: usize,
        check: &str,
    ) -> Result<Vec<(String, String)>> {
        self.set_groups(groups);
        let mut browser = Browser::new();
        browser.map_origin(PUBLIC, &addr.to_string());
        self.rt.block_on(login(&mut browser))?;
        let names = browser.cookie_names(PUBLIC);
        let expected: Vec<String> = (0..chunks).map(|i| format!("{COOKIE_NAME}.{i}")).collect();
        if names != expected {
            return Err(format!(
                "expected exactly the session chunks {expected:?} after login with {groups} \
                 groups, the jar holds {names:?} (adjust the groups)"
            )
            .into());
        }
        let answer = self.rt.block_on(browser.get(
            &format!("{PUBLIC}{check}{UPSTREAM_PATH}"),
            &[("x-csrf", "1")],
        ));
        if answer.status != 200 || answer.body != BODY {
            return Err(format!("proxied check: {} {:?}", answer.status, answer.body).into());
        }
        Ok(browser.export_cookies(PUBLIC))
    }
}

impl Stack {
    /// [`Stack::session`] with as many groups as make the `Cookie` header about `bytes` long
    /// (found from two probe logins: the cookie grows about linearly with the groups).
    pub(crate) fn session_of_size(
        &self,
        addr: SocketAddr,
        bytes: usize,
        chunks: usize,
        check: &str,
    ) -> Result<Vec<(String, String)>> {
        let probe = |groups: usize| -> Result<f64> {
            self.set_groups(groups);
            let mut browser = Browser::new();
            browser.map_origin(PUBLIC, &addr.to_string());
            self.rt.block_on(login(&mut browser))?;
            Ok(cookie_header(&browser.export_cookies(PUBLIC)).len() as f64)
        };
        let (small, large) = (probe(0)?, probe(40)?);
        let per_group = ((large - small) / 40.0).max(1.0);
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a small non-negative count"
        )]
        let groups = ((bytes as f64 - small) / per_group).round().max(0.0) as usize;
        self.session(addr, groups, chunks, check)
    }
}

/// The `Cookie` header value of `chunks`.
pub(crate) fn cookie_header(chunks: &[(String, String)]) -> String {
    chunks
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The sealgate binary: `PROXY_BENCH_SEALGATE`, else the one built with the bench.
fn sealgate_bin() -> std::ffi::OsString {
    std::env::var_os("PROXY_BENCH_SEALGATE")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sealgate").into())
}

pub(crate) fn sealgate_config(
    listen: SocketAddr,
    issuer: &str,
    api: SocketAddr,
    upstream: SocketAddr,
    extra_server: &str,
) -> String {
    let probe = if api == upstream {
        String::new()
    } else {
        format!(
            "\n[[routes]]\nprefix = \"/probe\"\nupstream = \"http://{upstream}\"\ntoken = \"user\"\n"
        )
    };
    format!(
        r#"[server]
listen = "{listen}"
public_url = "{PUBLIC}"
shutdown_grace = "2s"
{extra_server}

[oidc]
issuer = "{issuer}"
client_id = "spa-bff"
client_secret = "env:SEALGATE_BENCH_SECRET"
scopes = ["openid", "profile", "offline_access"]

[session]
keys = ["env:SEALGATE_BENCH_KEY"]
cookie_name = "{COOKIE_NAME}"

[bff]
allowed_origins = ["{PUBLIC}"]

[[routes]]
prefix = "/api"
upstream = "http://{api}"
token = "user"

[[routes]]
prefix = "/open"
upstream = "http://{upstream}"
token = "none"

[[routes]]
prefix = "/orders"
upstream = "http://{upstream}"
resource = "https://orders.example"
{probe}"#
    )
}

/// An nginx configuration: `workers` (`auto` or a number), room for `connections` per worker,
/// and `http_body` (upstream and server blocks) inside the common `http` block.
pub(crate) fn nginx_config(dir: &Path, workers: &str, connections: u32, http_body: &str) -> String {
    let d = dir.display();
    // As root, nginx would switch its workers to `nobody`, who cannot use the temp directory.
    let user = if proc_status_field(std::process::id(), "Uid")
        .is_some_and(|uid| uid.split_whitespace().next() == Some("0"))
    {
        "user root;"
    } else {
        ""
    };
    format!(
        r#"{user}
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {rlimit};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    large_client_header_buffers 4 16k;
    keepalive_requests 1000000;
{http_body}
}}
"#,
        rlimit = connections * 2 + 64,
    )
}

/// An nginx `upstream` block named `name`, pooling connections as sealgate's client does.
pub(crate) fn nginx_upstream(name: &str, servers: &[SocketAddr]) -> String {
    let servers: String = servers
        .iter()
        .map(|s| format!("        server {s};\n"))
        .collect();
    format!(
        "    upstream {name} {{\n{servers}        keepalive 256;\n        keepalive_requests 1000000;\n    }}\n"
    )
}

/// The header work a BFF does, without the crypto: drop the `Cookie`, send the session's
/// access token as a static `Authorization` header, and `X-Forwarded-*`.
pub(crate) fn nginx_bff_location(prefix: &str, upstream: &str, bearer: &str) -> String {
    format!(
        r#"        location {prefix}/ {{
            proxy_pass http://{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Cookie "";
            proxy_set_header Authorization "Bearer {bearer}";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host app.example.com;
        }}
"#
    )
}

/// Logs in (login → IdP authorize → callback); the session cookie is then in the jar.
pub(crate) async fn login(browser: &mut Browser) -> Result<()> {
    let r = browser
        .get(
            &format!("{PUBLIC}/bff/login?returnUrl=%2F"),
            &[("sec-fetch-mode", "navigate")],
        )
        .await;
    let authorize = r
        .location()
        .filter(|_| r.status == 302)
        .ok_or_else(|| format!("/bff/login: {} {}", r.status, r.body))?;
    let r = browser.get(&authorize, &[]).await;
    let callback = r
        .location()
        .filter(|_| r.status == 302)
        .ok_or_else(|| format!("IdP authorize: {} {}", r.status, r.body))?;
    let r = browser.get(&callback, &[]).await;
    if r.status != 302 {
        return Err(format!("/bff/callback: {} {}", r.status, r.body).into());
    }
    Ok(())
}
