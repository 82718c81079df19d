//! Proxy benchmark: the same small upstream and the same `wrk` load, in one run, against
//! (a) the upstream directly, (b) nginx `proxy_pass` as the plain reverse-proxy baseline, and
//! (c) sealgate with a logged-in session whose cookie is two chunks; plus (d), a diagnostic:
//! sealgate proxying a request without any cookie on a `token = "none"` route, which separates
//! the session work (c − d) from the proxying itself; and (e), the session of (c) on a route
//! with its own token (`resource`, minted once before the load and then kept in memory), which
//! shows what a route token costs per request (e − c).
//!
//! Run: `cargo bench --bench proxy`. Needs `nginx` and `wrk` (without them it prints the
//! `apt-get` line and exits 0; the same for each variant below and the programs it needs). Everything listens on 127.0.0.1 only; nginx and sealgate run as
//! child processes in the foreground and are stopped by PID at the end, also on error or panic.
//! About 50 s with the defaults (`PROXY_BENCH_{THREADS,CONNECTIONS,SECONDS,WARMUP}`: 2, 32, 10,
//! 2). `PROXY_BENCH_SEALGATE=PATH` runs that sealgate binary instead of the one built with
//! the bench (a kept copy of an earlier build, to compare two builds alternately in one sitting).
//! `PROXY_BENCH_HOLD=SECONDS` only sets everything up, prints sealgate's PID and the `wrk`
//! command for (c), and waits (for profiling with `perf record -p PID`); with `https-h2` it
//! prints the `h2load` command and nginx's PIDs too, and ends with an error after the wait. The report (markdown) is printed and written to `target/proxy-bench.md`. The targets
//! (c/b ≥ 0.9, p99 within 1 ms of nginx) are reported, never asserted.
//!
//! Variants (`PROXY_BENCH_VARIANTS=default,one-worker,https-h2,idle-10k,logins,three`, in that
//! order or any other; without it only `default`, the run described above). Each variant
//! starts its own upstream, fake IdP, sealgate and nginx, and measures nginx beside sealgate in
//! the same sitting, in the order b c … c b (except where said):
//! - `one-worker`: nginx with `worker_processes 1` serving both the upstream (a `return 200`
//!   location with the same JSON body) and the `proxy_pass` path; sealgate with
//!   `[server] workers = 1`, `/api` proxied to that nginx upstream server; `wrk -t1`,
//!   `PROXY_BENCH_CONNECTIONS` (32) connections; a one-chunk session of about 1.5 KB (the
//!   groups claim sized by two probe logins). Targets (a) nginx's upstream server directly,
//!   (b) nginx `proxy_pass`, (c) sealgate. CPU per request counts the proxy's processes and
//!   nginx (it serves the upstream in (b) and (c) alike); "proxy alone" subtracts (a)'s.
//! - `https-h2`: HTTPS + HTTP/2 with `h2load -t2 -c32 -m10` (Debian `nghttp2-client`) against
//!   sealgate's own TLS listener (`tls_cert`/`tls_key`: tests/support/keys/tls1.*) and nginx
//!   `listen … ssl` with HTTP/2 (`http2 on;` from nginx 1.25.1, the `listen … http2` flag
//!   before) and `proxy_pass` to the in-process upstream; a one-chunk session of about 1.6 KB (made
//!   through a plain-HTTP sealgate with the same key, as the test browser speaks plain HTTP).
//!   h2load prints no percentiles, only min/max/mean/sd; p50 and p99 come from its
//!   `--log-file` (one line per request: start, status, µs until the response ended).
//! - `idle-10k`: `PROXY_BENCH_IDLE` (10,000) keep-alive connections opened by this process
//!   (200 at a time), each after one proxied request with a 1.5 KB cookie, held idle for a
//!   second; (VmRSS with them − VmRSS before) ÷ N for sealgate and for nginx (master + workers).
//!   `RLIMIT_NOFILE` is raised with `setrlimit` up to the hard limit (children inherit it); if
//!   that is too low the variant fails saying so. sealgate runs with `max_connections` N + 100
//!   and `header_read_timeout = "300s"`, nginx with `keepalive_timeout 300s` and
//!   `worker_connections` N + 1,024. A sample of 20 connections must still answer afterwards;
//!   which server goes first alternates from run to run.
//! - `logins`: `PROXY_BENCH_LOGIN_TASKS` (16) tokio tasks each logging in again and again with a
//!   new browser (`/bff/login` → fake IdP authorize → `/bff/callback` → session cookie) for
//!   `SECONDS` after a `WARMUP`; logins/s, CPU per login of sealgate and of this process (the
//!   IdP signs an ID token per login), login p50/p99. No nginx baseline: nginx does no logins.
//! - `three`: three sealgate processes (one shared cookie key), each with its share of the
//!   cores as `workers` (at least one), behind nginx round-robin (no stickiness; nginx passes
//!   the cookie) against one sealgate with the default workers behind the same nginx
//!   configuration, beside nginx `proxy_pass` to the upstream (b); the default run's wrk load
//!   and two-chunk session. CPU per request counts nginx and the sealgates.
//!
//! `PROXY_BENCH_RUNS=N` repeats each selected variant N times; the summary gives each number's
//! median and range (min–max) over the runs (ratios are taken per run, then their median). The
//! summary is printed and written to `target/proxy-bench-summary.md`, every run to
//! `target/proxy-bench-runs.md`; the default variant's full report still goes to
//! `target/proxy-bench.md` (its last run).
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

#[path = "../../tests/support/mod.rs"]
mod support;

mod default;
mod h2;
mod idle;
mod load;
mod logins;
mod one_worker;
mod outcome;
mod setup;
mod sys;
mod three;
mod upstream;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use outcome::Outcome;
use sys::find_tool;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Load parameters; `PROXY_BENCH_{THREADS,CONNECTIONS,SECONDS,WARMUP}` override them.
struct Params {
    threads: u32,
    connections: u32,
    seconds: u32,
    warmup: u32,
}

impl Params {
    fn from_env() -> Params {
        Params {
            threads: env_u32("PROXY_BENCH_THREADS", 2),
            connections: env_u32("PROXY_BENCH_CONNECTIONS", 32),
            seconds: env_u32("PROXY_BENCH_SECONDS", 10).min(30),
            warmup: env_u32("PROXY_BENCH_WARMUP", 2).min(10),
        }
    }
}

/// A positive number from the environment, or `default`.
fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// The external programs, where found.
struct Tools {
    nginx: PathBuf,
    wrk: PathBuf,
    h2load: PathBuf,
}

/// The variants, by the names `PROXY_BENCH_VARIANTS` takes, with the programs each needs.
const VARIANTS: [(&str, &[&str]); 6] = [
    ("default", &["nginx", "wrk"]),
    ("one-worker", &["nginx", "wrk"]),
    ("https-h2", &["nginx", "h2load"]),
    ("idle-10k", &["nginx"]),
    ("logins", &[]),
    ("three", &["nginx", "wrk"]),
];

/// The Debian package of each program.
fn package(tool: &str) -> &'static str {
    match tool {
        "h2load" => "nghttp2-client",
        "wrk" => "wrk",
        _ => "nginx",
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and should not load the
    // machine for a minute.
    if !std::env::args().any(|a| a == "--bench") {
        println!("proxy bench: not run (run it with `cargo bench --bench proxy`)");
        return ExitCode::SUCCESS;
    }
    let wanted = std::env::var("PROXY_BENCH_VARIANTS").unwrap_or_else(|_| "default".to_owned());
    let mut variants = Vec::new();
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match VARIANTS.iter().find(|(n, _)| *n == name) {
            Some(v) => variants.push(*v),
            None => {
                let names: Vec<&str> = VARIANTS.iter().map(|(n, _)| *n).collect();
                eprintln!(
                    "proxy bench: unknown variant {name:?}; known: {}",
                    names.join(",")
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let find = |t: &str| find_tool(t).unwrap_or_default();
    let tools = Tools {
        nginx: find("nginx"),
        wrk: find("wrk"),
        h2load: find("h2load"),
    };
    let runs = env_u32("PROXY_BENCH_RUNS", 1).min(50);
    let mut failed = false;
    let mut raw = String::new();
    let mut summaries = String::new();
    for (name, needs) in variants {
        let missing: Vec<&str> = needs
            .iter()
            .copied()
            .filter(|t| find_tool(t).is_none())
            .collect();
        if !missing.is_empty() {
            let packages: Vec<&str> = missing.iter().map(|t| package(t)).collect();
            println!(
                "proxy bench: variant {name} skipped: it needs {} on PATH.\n\
                 Install with: sudo apt-get update && sudo apt-get install -y {}",
                missing.join(" and "),
                packages.join(" ")
            );
            continue;
        }
        match run_variant(name, &tools, runs, &mut raw) {
            Ok(Some(summary)) => summaries.push_str(&summary),
            Ok(None) => {}
            Err(e) => {
                eprintln!("proxy bench: variant {name} failed: {e}");
                failed = true;
            }
        }
    }
    if !raw.is_empty() {
        // The default run alone prints its full report only, as before the variants.
        if wanted.trim() != "default" || runs > 1 {
            println!("\n{summaries}");
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("proxy-bench-runs.md"), raw))
            .and_then(|()| std::fs::write(dir.join("proxy-bench-summary.md"), &summaries));
        match written {
            Ok(()) => println!(
                "(summary written to target/proxy-bench-summary.md, every run to \
                 target/proxy-bench-runs.md)"
            ),
            Err(e) => eprintln!("proxy bench: cannot write the reports: {e}"),
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs variant `name` `runs` times; appends each run to `raw` and returns the summary
/// (`None` after `PROXY_BENCH_HOLD`).
fn run_variant(name: &str, tools: &Tools, runs: u32, raw: &mut String) -> Result<Option<String>> {
    let params = Params::from_env();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for i in 0..runs {
        eprintln!("proxy bench: variant {name}, run {} of {runs}", i + 1);
        let outcome = match name {
            "default" => match default::run(tools, &params)? {
                Some((outcome, report)) => {
                    // The default run's full report, as before the variants.
                    println!("\n{report}");
                    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/proxy-bench.md");
                    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))?;
                    std::fs::write(&out, &report)?;
                    println!("(written to {})", out.display());
                    outcome
                }
                None => return Ok(None),
            },
            "one-worker" => one_worker::run(tools, &params, i)?,
            "https-h2" => h2::run(tools, &params, i)?,
            "idle-10k" => idle::run(tools, i)?,
            "logins" => logins::run(&params)?,
            _ => three::run(tools, &params, i)?,
        };
        let rendered = outcome.render(&format!("{name}, run {}", i + 1));
        let _ = writeln!(
            raw,
            "{rendered}\n(at {})\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        if name != "default" {
            println!("\n{rendered}");
        }
        outcomes.push(outcome);
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Ok(Some(format!(
        "{}\n({} cores; {})\n\n",
        outcome::summary(name, &outcomes),
        cores,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    )))
}
