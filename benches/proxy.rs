//! Proxy benchmark: the same small upstream and the same `wrk` load, in one run, against
//! (a) the upstream directly, (b) nginx `proxy_pass` as the plain reverse-proxy baseline, and
//! (c) sealgate with a logged-in session whose cookie is two chunks; plus (d), a diagnostic:
//! sealgate proxying a request without any cookie on a `token = "none"` route, which separates
//! the session work (c − d) from the proxying itself; and (e), the session of (c) on a route
//! with its own token (`resource`, minted once before the load and then kept in memory), which
//! shows what a route token costs per request (e − c).
//!
//! Run: `cargo bench --bench proxy`. Needs `nginx` and `wrk` (without them it prints the
//! `apt-get` line and exits 0). Everything listens on 127.0.0.1 only; nginx and sealgate run as
//! child processes in the foreground and are stopped by PID at the end, also on error or panic.
//! About 50 s with the defaults (`PROXY_BENCH_{THREADS,CONNECTIONS,SECONDS,WARMUP}`: 2, 32, 10,
//! 2). `PROXY_BENCH_SEALGATE=PATH` runs that sealgate binary instead of the one built with
//! the bench (a kept copy of an earlier build, to compare two builds alternately in one sitting).
//! `PROXY_BENCH_HOLD=SECONDS` only sets everything up, prints sealgate's PID and the `wrk`
//! command for (c), and waits (for profiling with `perf record -p PID`). The report (markdown) is printed and written to `target/proxy-bench.md`. The targets
//! (c/b ≥ 0.9, p99 within 1 ms of nginx) are reported, never asserted.
//!
//! How it measures:
//! - Before any load, the session is made the real way (login → fake IdP → callback, through
//!   sealgate), the jar must hold exactly the chunks `.0` and `.1`, and one proxied call must
//!   return 200 with the upstream seeing a Bearer token. Each target's warm-up must be
//!   error-free; errors there mean a broken setup and fail the run.
//! - Each target is measured for `SECONDS` in two halves, in the order a b c d e e d c b a, so a
//!   drift in the machine's background load weighs on every target alike. A wrk `done` hook
//!   prints the whole latency histogram, so the halves merge exactly (p50/p99 of all requests).
//! - CPU time per request comes from `/proc`: the proxy's processes, this process (the
//!   upstream) and wrk; the machine's busy time tells how much went to processes outside the
//!   benchmark (on a shared machine, that is noise in every other number).
//! - sealgate's peak RSS is `VmHWM` from `/proc/PID/status` at the end.
//!
//! Fairness decisions:
//! - The upstream is a tiny hyper HTTP/1.1 server in this process (a fixed 59-byte JSON body),
//!   the same for every target, so its cost is in every number. The in-process fake IdP beside
//!   it is idle during the load.
//! - nginx runs `worker_processes auto` (one worker per core), as sealgate's tokio runtime uses
//!   every core. It pools upstream connections (`keepalive`, HTTP/1.1, `Connection ""`) as
//!   sealgate's client does, and never closes a client's or upstream keep-alive connection
//!   after N requests (`keepalive_requests`), which sealgate does not do either.
//! - nginx does the header work a BFF does, without the crypto: it drops the `Cookie` header
//!   and sends `Authorization: Bearer <the same access token>` and `X-Forwarded-*`, so the
//!   upstream receives essentially the same request from (b) and (c).
//! - wrk sends the same headers to (a), (b) and (c) (both cookie chunks, `X-CSRF: 1`), so the
//!   requests are the same size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

use support::app::{KEY, PUBLIC};
use support::browser::Browser;
use support::idp::FakeIdp;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The upstream's whole answer.
const BODY: &str = r#"{"id":42,"name":"widget","price":9.99,"tags":["a","b","c"]}"#;
/// The path every target is asked for (nginx and sealgate map `/api/x` to upstream `/x`).
const UPSTREAM_PATH: &str = "/items/42";
/// sealgate's session cookie (the default name); chunks are `<name>.0`, `<name>.1`, ...
const COOKIE_NAME: &str = "__Host-sealgate";
/// Groups claim entries that make the session cookie two chunks (about 6 KB in all).
const GROUPS: usize = 150;

/// Load parameters; `PROXY_BENCH_{THREADS,CONNECTIONS,SECONDS,WARMUP}` override them.
struct Params {
    threads: u32,
    connections: u32,
    seconds: u32,
    warmup: u32,
}

impl Params {
    fn from_env() -> Params {
        let get = |name: &str, default: u32| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Params {
            threads: get("PROXY_BENCH_THREADS", 2),
            connections: get("PROXY_BENCH_CONNECTIONS", 32),
            seconds: get("PROXY_BENCH_SECONDS", 10).min(30),
            warmup: get("PROXY_BENCH_WARMUP", 2).min(10),
        }
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and should not load the
    // machine for a minute.
    if !std::env::args().any(|a| a == "--bench") {
        println!("proxy bench: not run (run it with `cargo bench --bench proxy`)");
        return ExitCode::SUCCESS;
    }
    let (Some(nginx), Some(wrk)) = (find_tool("nginx"), find_tool("wrk")) else {
        println!(
            "proxy bench skipped: it needs nginx and wrk on PATH.\n\
             Install them with: sudo apt-get update && sudo apt-get install -y nginx wrk"
        );
        return ExitCode::SUCCESS;
    };
    match run(&nginx, &wrk) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(nginx_bin: &Path, wrk_bin: &Path) -> Result<()> {
    let params = Params::from_env();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // Declared first so it is removed last, after the children are gone.
    let tmp = TempDir::new()?;
    let runtime = tokio::runtime::Runtime::new()?;

    // The upstream and the IdP live in this process.
    let upstream = runtime.block_on(start_upstream())?;
    let idp = runtime.block_on(FakeIdp::start());
    idp.set(|b| {
        // No refresh during the run; the ID token's claims make the cookie two chunks.
        b.access_token_lifetime = 3600;
        // (e)'s route token: minted once; the refresh token it was minted with stays valid,
        // so wrk's cookie stays current (a rotation would re-seal it once, in the warm-up).
        b.rotate_on_route_grants = false;
        let groups: Vec<String> = (0..GROUPS)
            .map(|i| format!("/org/unit-{:02}/team-{i:03}", i % 17))
            .collect();
        b.extra_claims.insert("groups".into(), json!(groups));
    });

    // sealgate, as a child process.
    let sealgate_addr = free_port()?;
    let config = tmp.path.join("sealgate.toml");
    std::fs::write(
        &config,
        sealgate_config(sealgate_addr, &idp.issuer(), upstream),
    )?;
    let sealgate_log = tmp.path.join("sealgate.log");
    let mut sealgate = Proc::spawn(
        "sealgate",
        Command::new(
            std::env::var_os("PROXY_BENCH_SEALGATE")
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_sealgate").into()),
        )
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env("SEALGATE_BENCH_SECRET", idp.behaviour().client_secret)
        .env("SEALGATE_BENCH_KEY", KEY),
        &sealgate_log,
    )?;
    wait_until(&mut sealgate, &sealgate_log, || {
        http_status(sealgate_addr, "/healthz") == Some(200)
    })?;

    // Log in through sealgate as a browser would; check the cookie and one proxied call.
    let mut browser = Browser::new();
    browser.map_origin(PUBLIC, &sealgate_addr.to_string());
    let chunks = runtime.block_on(login(&mut browser))?;
    let cookie: String = chunks
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let before = BEARER_REQUESTS.load(Ordering::Relaxed);
    let check =
        runtime.block_on(browser.get(&format!("{PUBLIC}/api{UPSTREAM_PATH}"), &[("x-csrf", "1")]));
    if check.status != 200 || check.body != BODY {
        return Err(format!("proxied check: {} {:?}", check.status, check.body).into());
    }
    if BEARER_REQUESTS.load(Ordering::Relaxed) != before + 1 {
        return Err("proxied check: the upstream saw no Bearer token".into());
    }
    let bearer = BEARER
        .get()
        .ok_or("the upstream recorded no Bearer token")?;
    let own = runtime.block_on(browser.get(
        &format!("{PUBLIC}/orders{UPSTREAM_PATH}"),
        &[("x-csrf", "1")],
    ));
    if own.status != 200 || !own.set_cookies().is_empty() {
        return Err(format!("route token check: {} {:?}", own.status, own.body).into());
    }
    let rss_after_login = proc_status_kb(sealgate.pid(), "VmRSS").unwrap_or(0);

    // nginx, as a child process, with the same access token as a static header.
    let nginx_addr = free_port()?;
    let nginx_conf = tmp.path.join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        nginx_config(&tmp.path, nginx_addr, upstream, bearer),
    )?;
    let nginx_log = tmp.path.join("nginx.stderr");
    let mut nginx = Proc::spawn(
        "nginx",
        Command::new(nginx_bin)
            .arg("-e")
            .arg(tmp.path.join("error.log"))
            .arg("-p")
            .arg(&tmp.path)
            .arg("-c")
            .arg(&nginx_conf),
        &nginx_log,
    )?;
    wait_until(&mut nginx, &nginx_log, || {
        http_status(nginx_addr, &format!("/api{UPSTREAM_PATH}")) == Some(200)
    })?;

    // The load: identical wrk parameters for all, identical headers for (a), (b) and (c).
    let headers = vec![format!("Cookie: {cookie}"), "X-CSRF: 1".to_owned()];
    let nginx_pids = process_group(nginx.pid());
    let targets = [
        Target {
            label: "(a) upstream directly".to_owned(),
            url: format!("http://{upstream}{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: Vec::new(),
        },
        Target {
            label: format!(
                "(b) nginx proxy_pass ({} workers)",
                nginx_pids.len().saturating_sub(1)
            ),
            url: format!("http://{nginx_addr}/api{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: nginx_pids.clone(),
        },
        Target {
            label: format!("(c) sealgate, {}-chunk session", chunks.len()),
            url: format!("http://{sealgate_addr}/api{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: vec![sealgate.pid()],
        },
        // Diagnostic: sealgate's proxying alone, with no cookie to open.
        Target {
            label: "(d) diagnostic: sealgate, no cookie, `token = \"none\"` route".to_owned(),
            url: format!("http://{sealgate_addr}/open{UPSTREAM_PATH}"),
            headers: headers[1..].to_vec(),
            pids: vec![sealgate.pid()],
        },
        Target {
            label: "(e) sealgate, the same session, a route with its own token (`resource`)"
                .to_owned(),
            url: format!("http://{sealgate_addr}/orders{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: vec![sealgate.pid()],
        },
    ];
    let script = tmp.path.join("histogram.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    // For profiling: keep the setup up, print how to load (c), and wait.
    if let Some(secs) = std::env::var("PROXY_BENCH_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let c = &targets[2];
        let header_args: String = c.headers.iter().map(|h| format!(" -H '{h}'")).collect();
        println!(
            "proxy bench: holding for {secs} s; sealgate PID {}; load (c) with:\n  wrk -t{} -c{} -d10s{header_args} {}",
            sealgate.pid(),
            params.threads,
            params.connections,
            c.url
        );
        std::thread::sleep(Duration::from_secs(secs));
        return Ok(());
    }
    let wrk = Wrk {
        bin: wrk_bin,
        script,
        params: &params,
    };
    let loads = wrk.measure(&targets)?;

    let sealgate_peak = proc_status_kb(sealgate.pid(), "VmHWM").unwrap_or(0);
    let nginx_peak: u64 = nginx_pids
        .iter()
        .filter_map(|&p| proc_status_kb(p, "VmHWM"))
        .sum();
    let token_requests = idp.requests_to("/token").len();
    drop(nginx);
    drop(sealgate);

    let report = Report {
        params: &params,
        cores,
        chunk_sizes: chunks.iter().map(|(n, v)| n.len() + 1 + v.len()).collect(),
        cookie_header: cookie.len(),
        targets: &targets,
        loads: &loads,
        clk_tck: clock_ticks_per_second(),
        sealgate_peak,
        rss_after_login,
        nginx_peak,
        token_requests,
        bearer_requests: BEARER_REQUESTS.load(Ordering::Relaxed),
    }
    .render();
    println!("\n{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/proxy-bench.md");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &report)?;
    println!("(written to {})", out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The upstream
// ---------------------------------------------------------------------------------------------

/// Requests the upstream received with a Bearer token.
static BEARER_REQUESTS: AtomicU64 = AtomicU64::new(0);
/// The first Bearer token the upstream received (nginx sends it as a static header).
static BEARER: OnceLock<String> = OnceLock::new();

async fn start_upstream() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
) -> std::result::Result<http::Response<Full<Bytes>>, Infallible> {
    if let Some(token) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        BEARER_REQUESTS.fetch_add(1, Ordering::Relaxed);
        if BEARER.get().is_none() {
            let _ = BEARER.set(token.to_owned());
        }
    }
    let mut response = http::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// sealgate and nginx
// ---------------------------------------------------------------------------------------------

fn sealgate_config(listen: SocketAddr, issuer: &str, upstream: SocketAddr) -> String {
    format!(
        r#"[server]
listen = "{listen}"
public_url = "{PUBLIC}"
shutdown_grace = "2s"

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
upstream = "http://{upstream}"
token = "user"

[[routes]]
prefix = "/open"
upstream = "http://{upstream}"
token = "none"

[[routes]]
prefix = "/orders"
upstream = "http://{upstream}"
resource = "https://orders.example"
"#
    )
}

fn nginx_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr, bearer: &str) -> String {
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
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    large_client_header_buffers 4 16k;
    keepalive_requests 1000000;
    upstream api {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location /api/ {{
            proxy_pass http://api/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Cookie "";
            proxy_set_header Authorization "Bearer {bearer}";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host app.example.com;
        }}
    }}
}}
"#
    )
}

/// Logs in (login → IdP authorize → callback) and returns the session cookie chunks.
async fn login(browser: &mut Browser) -> Result<Vec<(String, String)>> {
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
    let names = browser.cookie_names(PUBLIC);
    let expected = [format!("{COOKIE_NAME}.0"), format!("{COOKIE_NAME}.1")];
    if names != expected {
        return Err(format!(
            "expected exactly the session chunks {expected:?} after login, the jar holds {names:?} \
             (adjust GROUPS)"
        )
        .into());
    }
    Ok(browser.export_cookies(PUBLIC))
}

// ---------------------------------------------------------------------------------------------
// The load generator
// ---------------------------------------------------------------------------------------------

/// wrk's `done` hook: the summary and the whole latency histogram (µs → count, non-empty
/// buckets only), so runs of one target can be merged exactly.
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SGB summary %d %d %d %d\n", summary.duration, summary.requests,
    e.status, e.connect + e.read + e.write + e.timeout))
  for i = 1, #latency do
    local value, count = latency(i)
    io.write(string.format("SGB lat %d %d\n", value, count))
  end
end
"#;

/// One thing to load: a URL, the headers wrk sends, and the processes whose CPU to count.
struct Target {
    label: String,
    url: String,
    headers: Vec<String>,
    pids: Vec<u32>,
}

struct Wrk<'a> {
    bin: &'a Path,
    script: PathBuf,
    params: &'a Params,
}

impl Wrk<'_> {
    /// One wrk run of `seconds` against `t`, with the CPU used around it.
    fn run(&self, t: &Target, seconds: u32) -> Result<Load> {
        let p = self.params;
        let mut cmd = Command::new(self.bin);
        cmd.arg(format!("-t{}", p.threads))
            .arg(format!("-c{}", p.connections))
            .arg(format!("-d{seconds}s"))
            .arg("-s")
            .arg(&self.script);
        for h in &t.headers {
            cmd.arg("-H").arg(h);
        }
        let before = Cpu::sample(&t.pids);
        let out = cmd.arg(&t.url).stdin(Stdio::null()).output()?;
        let cpu = Cpu::sample(&t.pids).since(before);
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "wrk {}: {}\n{text}{}",
                t.url,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let mut load =
            Load::parse(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))?;
        load.cpu = cpu;
        Ok(load)
    }

    /// Warms every target up (errors there mean a broken setup, not a slow one), then measures
    /// each in two halves, in the order a b c d e e d c b a, so that a drift in the machine's
    /// background load over the run weighs on every target alike.
    fn measure(&self, targets: &[Target]) -> Result<Vec<Load>> {
        for t in targets {
            eprintln!("proxy bench: warm-up {}", t.url);
            let warm = self.run(t, self.params.warmup)?;
            if warm.errors > 0 || warm.requests == 0 {
                return Err(format!(
                    "{}: {} of {} warm-up requests failed",
                    t.url, warm.errors, warm.requests
                )
                .into());
            }
        }
        let half = self.params.seconds.div_ceil(2);
        let mut loads: Vec<Load> = targets.iter().map(|_| Load::default()).collect();
        for i in (0..targets.len()).chain((0..targets.len()).rev()) {
            eprintln!("proxy bench: {} s {}", half, targets[i].url);
            let load = self.run(&targets[i], half)?;
            loads[i].add(load);
        }
        Ok(loads)
    }
}

/// What wrk measured for one target (possibly several runs merged).
#[derive(Default)]
struct Load {
    requests: u64,
    duration_us: u64,
    /// Non-2xx/3xx responses plus socket errors.
    errors: u64,
    /// Latency in µs → requests.
    latency: BTreeMap<u64, u64>,
    cpu: Cpu,
}

impl Load {
    fn parse(text: &str) -> Option<Load> {
        let mut load = Load::default();
        let mut summary = false;
        for line in text.lines() {
            let mut w = line.split_whitespace();
            if w.next() != Some("SGB") {
                continue;
            }
            let kind = w.next()?;
            let v: Vec<u64> = w
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()
                .ok()?;
            match (kind, v.as_slice()) {
                ("summary", &[duration, requests, status, socket]) => {
                    (load.duration_us, load.requests, load.errors) =
                        (duration, requests, status + socket);
                    summary = true;
                }
                ("lat", &[value, count]) => *load.latency.entry(value).or_default() += count,
                _ => return None,
            }
        }
        summary.then_some(load)
    }

    fn add(&mut self, other: Load) {
        self.requests += other.requests;
        self.duration_us += other.duration_us;
        self.errors += other.errors;
        for (value, count) in other.latency {
            *self.latency.entry(value).or_default() += count;
        }
        self.cpu = self.cpu.plus(other.cpu);
    }

    fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    /// The latency at percentile `p`, in ms (the rank rule is wrk's own).
    fn percentile_ms(&self, p: f64) -> f64 {
        let total: u64 = self.latency.values().sum();
        let rank = ((p / 100.0) * total as f64 + 0.5).round();
        let mut seen = 0;
        for (&value, &count) in &self.latency {
            seen += count;
            if seen as f64 >= rank {
                return value as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

/// CPU time (clock ticks) during measured runs, by whom.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// The proxy's processes (none for the direct runs).
    proxy: Option<u64>,
    /// This process: the upstream (and the idle fake IdP).
    upstream: u64,
    /// wrk (a waited-for child of this process).
    wrk: u64,
    /// Every CPU of the machine, busy (not idle or waiting for I/O).
    machine_busy: u64,
    /// Every CPU of the machine, in hard and soft interrupts (loopback packets are delivered
    /// there; not charged to any process).
    machine_irq: u64,
    /// Every CPU of the machine, in all.
    machine_total: u64,
}

impl Cpu {
    fn sample(pids: &[u32]) -> Cpu {
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

    fn since(self, before: Cpu) -> Cpu {
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

    fn plus(self, other: Cpu) -> Cpu {
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
    fn others(self) -> u64 {
        self.machine_busy
            .saturating_sub(self.machine_irq + self.proxy.unwrap_or(0) + self.upstream + self.wrk)
    }
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

struct Report<'a> {
    params: &'a Params,
    cores: usize,
    chunk_sizes: Vec<usize>,
    cookie_header: usize,
    /// (a), (b), (c), then the diagnostic (d).
    targets: &'a [Target],
    loads: &'a [Load],
    clk_tck: u64,
    sealgate_peak: u64,
    rss_after_login: u64,
    nginx_peak: u64,
    token_requests: usize,
    bearer_requests: u64,
}

impl Report<'_> {
    fn render(&self) -> String {
        let p = self.params;
        let [a, b, c, d, e] = self.loads else {
            return "expected five targets".to_owned();
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Proxy benchmark ({}, {} cores, wrk -t{} -c{}, {} s per target in two halves \
             (order a b c d e e d c b a) after a {} s warm-up each)\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            self.cores,
            p.threads,
            p.connections,
            p.seconds.div_ceil(2) * 2,
            p.warmup,
        );
        let _ = writeln!(
            s,
            "| target | req/s | p50 | p99 | req/s vs (a) | CPU per request: proxy | upstream | wrk | errors |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for (t, r) in self.targets.iter().zip(self.loads) {
            let per_request = |ticks: u64| {
                format!(
                    "{:.1} µs",
                    ticks as f64 * 1e6 / self.clk_tck as f64 / r.requests.max(1) as f64
                )
            };
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} | {} | {} | {} | {} |",
                t.label,
                r.requests_per_sec(),
                r.percentile_ms(50.0),
                r.percentile_ms(99.0),
                r.requests_per_sec() / a.requests_per_sec(),
                r.cpu.proxy.map_or("–".to_owned(), per_request),
                per_request(r.cpu.upstream),
                per_request(r.cpu.wrk),
                r.errors,
            );
        }
        let cb = c.requests_per_sec() / b.requests_per_sec();
        let dp99 = c.percentile_ms(99.0) - b.percentile_ms(99.0);
        let _ = writeln!(
            s,
            "\n- c/b = **{cb:.3}** (target ≥ 0.9: {}), c/a = {:.3}",
            met(cb >= 0.9),
            c.requests_per_sec() / a.requests_per_sec()
        );
        let _ = writeln!(
            s,
            "- p99(c) − p99(b) = **{dp99:+.2} ms** (target ≤ +1 ms: {}); p50(c) − p50(b) = {:+.2} ms",
            met(dp99 <= 1.0),
            c.percentile_ms(50.0) - b.percentile_ms(50.0)
        );
        let _ = writeln!(
            s,
            "- sealgate peak RSS (VmHWM at the end): **{:.1} MiB** (RSS after login, before the \
             load: {:.1} MiB); nginx master + workers, summed VmHWM: {:.1} MiB",
            self.sealgate_peak as f64 / 1024.0,
            self.rss_after_login as f64 / 1024.0,
            self.nginx_peak as f64 / 1024.0,
        );
        let cpu_per_request = |r: &Load| {
            r.cpu.proxy.unwrap_or(0) as f64 * 1e6 / self.clk_tck as f64 / r.requests.max(1) as f64
        };
        let _ = writeln!(
            s,
            "- proxy CPU per request, nginx ÷ sealgate (b/c; steadier than req/s when other \
             processes share the machine): **{:.3}**; sealgate with the session minus without \
             (c − d): {:+.1} µs; sealgate minus nginx (c − b): {:+.1} µs",
            cpu_per_request(b) / cpu_per_request(c),
            cpu_per_request(c) - cpu_per_request(d),
            cpu_per_request(c) - cpu_per_request(b),
        );
        let _ = writeln!(
            s,
            "- a route with its own token, kept in memory (e) against the session's token (c): \
             req/s e/c = **{:.3}**; CPU per request e − c: {:+.1} µs; p99(e) − p99(c) = {:+.2} ms",
            e.requests_per_sec() / c.requests_per_sec(),
            cpu_per_request(e) - cpu_per_request(c),
            e.percentile_ms(99.0) - c.percentile_ms(99.0),
        );
        let _ = writeln!(
            s,
            "- session cookie: {} chunks of {} bytes (`Cookie` header value {} bytes); IdP token \
             requests: {} (the login and (e)'s route token; more would mean a refresh); Bearer requests \
             the upstream saw: {}",
            self.chunk_sizes.len(),
            self.chunk_sizes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" + "),
            self.cookie_header,
            self.token_requests,
            self.bearer_requests,
        );
        // The share of all CPUs' time during the target's runs, in cores.
        let cores = |ticks: u64, r: &Load| {
            ticks as f64 / r.cpu.machine_total.max(1) as f64 * self.cores as f64
        };
        let _ = writeln!(
            s,
            "- the machine during each target's runs, in cores (busy / interrupts / processes \
             outside this benchmark): {}",
            self.loads
                .iter()
                .zip(["a", "b", "c", "d", "e"])
                .map(|(r, t)| format!(
                    "({t}) {:.2} / {:.2} / {:.2}",
                    cores(r.cpu.machine_busy, r),
                    cores(r.cpu.machine_irq, r),
                    cores(r.cpu.others(), r)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        s
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

// ---------------------------------------------------------------------------------------------
// Processes and small helpers
// ---------------------------------------------------------------------------------------------

/// A child process that is stopped by PID when dropped: SIGTERM (nginx's master then stops its
/// workers; sealgate drains), SIGKILL if it is still there after 5 s.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let out = std::fs::File::create(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc { name, child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
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
fn wait_until(p: &mut Proc, log: &Path, ready: impl Fn() -> bool) -> Result<()> {
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
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<TempDir> {
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
fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The status of one `GET path` (HTTP/1.1, `Connection: close`), or `None`.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
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

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // nginx lives in /usr/sbin, which is not on every user's PATH.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn proc_status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    proc_status_field(pid, field)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The fields of `/proc/PID/stat` after the command name (field 3, `state`, is index 0).
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = proc_stat(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Busy, interrupt and total ticks of all CPUs together (`/proc/stat`).
fn machine_ticks() -> Option<(u64, u64, u64)> {
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
fn process_group(pid: u32) -> Vec<u32> {
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

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}
