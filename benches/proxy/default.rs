//! The default run: (a) the upstream directly, (b) nginx, (c) sealgate with a two-chunk
//! session, (d) sealgate without a cookie on a `token = "none"` route, (e) the session on a
//! route with its own token.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::load::{Load, Target, Wrk, measure};
use crate::outcome::{Outcome, Row, load_row, others_note, val};
use crate::setup::{Stack, cookie_header, nginx_bff_location, nginx_config, nginx_upstream};
use crate::support::app::PUBLIC;
use crate::support::browser::Browser;
use crate::sys::{clock_ticks_per_second, proc_status_kb, process_group};
use crate::upstream::{BEARER, BEARER_REQUESTS, BODY, UPSTREAM_PATH};
use crate::{Params, Result, Tools};

/// Groups claim entries that make the session cookie two chunks (about 6 KB in all).
const GROUPS: usize = 150;

/// One default run: its numbers, and the full report (`target/proxy-bench.md`); `None` after
/// `PROXY_BENCH_HOLD`.
pub(crate) fn run(tools: &Tools, params: &Params) -> Result<Option<(Outcome, String)>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let stack = Stack::new()?;
    let (sealgate, sealgate_addr) = stack.sealgate("sealgate", "")?;
    let chunks = stack.session(sealgate_addr, GROUPS, 2, "/api")?;
    let cookie = cookie_header(&chunks);

    // Check the upstream saw the Bearer token, and the route with its own token.
    let mut browser = Browser::new();
    browser.map_origin(PUBLIC, &sealgate_addr.to_string());
    browser.import_cookies(PUBLIC, chunks.clone());
    let before = BEARER_REQUESTS.load(Ordering::Relaxed);
    let check = stack
        .rt
        .block_on(browser.get(&format!("{PUBLIC}/api{UPSTREAM_PATH}"), &[("x-csrf", "1")]));
    if check.status != 200 || check.body != BODY {
        return Err(format!("proxied check: {} {:?}", check.status, check.body).into());
    }
    if BEARER_REQUESTS.load(Ordering::Relaxed) != before + 1 {
        return Err("proxied check: the upstream saw no Bearer token".into());
    }
    let bearer = BEARER
        .get()
        .ok_or("the upstream recorded no Bearer token")?;
    let own = stack.rt.block_on(browser.get(
        &format!("{PUBLIC}/orders{UPSTREAM_PATH}"),
        &[("x-csrf", "1")],
    ));
    if own.status != 200 || !own.set_cookies().is_empty() {
        return Err(format!("route token check: {} {:?}", own.status, own.body).into());
    }
    let rss_after_login = proc_status_kb(sealgate.pid(), "VmRSS").unwrap_or(0);

    // nginx, with the same access token as a static header.
    let nginx_addr = crate::sys::free_port()?;
    let body = format!(
        "{}    server {{\n        listen {nginx_addr};\n{}    }}",
        nginx_upstream("api", &[stack.upstream]),
        nginx_bff_location("/api", "api", bearer)
    );
    let conf = nginx_config(&stack.nginx_dir("nginx"), "auto", 1024, &body);
    let nginx = stack.nginx(
        &tools.nginx,
        "nginx",
        &conf,
        Some((nginx_addr, &format!("/api{UPSTREAM_PATH}"))),
    )?;
    // The load: identical wrk parameters for all, identical headers for (a), (b) and (c).
    let headers = vec![format!("Cookie: {cookie}"), "X-CSRF: 1".to_owned()];
    let nginx_pids = process_group(nginx.pid());
    let targets = [
        Target {
            label: "(a) upstream directly".to_owned(),
            url: format!("http://{}{UPSTREAM_PATH}", stack.upstream),
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
    let script = stack.tmp.path.join("histogram.lua");
    std::fs::write(&script, crate::load::WRK_SCRIPT)?;
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
        return Ok(None);
    }
    let wrk = Wrk {
        bin: &tools.wrk,
        script,
        threads: params.threads,
        connections: params.connections,
    };
    let loads = measure(&wrk, &targets, params.seconds, params.warmup)?;

    let sealgate_peak = proc_status_kb(sealgate.pid(), "VmHWM").unwrap_or(0);
    let nginx_peak: u64 = nginx_pids
        .iter()
        .filter_map(|&p| proc_status_kb(p, "VmHWM"))
        .sum();
    let token_requests = stack.idp.requests_to("/token").len();
    drop(nginx);
    drop(sealgate);

    let clk_tck = clock_ticks_per_second();
    let report = Report {
        params,
        cores,
        chunk_sizes: chunks.iter().map(|(n, v)| n.len() + 1 + v.len()).collect(),
        cookie_header: cookie.len(),
        targets: &targets,
        loads: &loads,
        clk_tck,
        sealgate_peak,
        rss_after_login,
        nginx_peak,
        token_requests,
        bearer_requests: BEARER_REQUESTS.load(Ordering::Relaxed),
    }
    .render();
    let mut rows: Vec<Row> = targets
        .iter()
        .zip(&loads)
        .enumerate()
        .map(|(i, (t, l))| load_row(&t.label, l, clk_tck, (i >= 2).then_some(&loads[1])))
        .collect();
    rows.push(Row {
        label: "sealgate peak RSS (VmHWM)".to_owned(),
        vals: vec![val("MiB", 1, sealgate_peak as f64 / 1024.0)],
    });
    let outcome = Outcome {
        title: format!(
            "the default run (wrk -t{} -c{}, {}-chunk session, `Cookie` {} bytes)",
            params.threads,
            params.connections,
            chunks.len(),
            cookie.len()
        ),
        rows,
        notes: vec![others_note(&["a", "b", "c", "d", "e"], &loads, cores)],
    };
    Ok(Some((outcome, report)))
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

pub(crate) struct Report<'a> {
    pub(crate) params: &'a Params,
    pub(crate) cores: usize,
    pub(crate) chunk_sizes: Vec<usize>,
    pub(crate) cookie_header: usize,
    /// (a), (b), (c), then the diagnostic (d).
    pub(crate) targets: &'a [Target],
    pub(crate) loads: &'a [Load],
    pub(crate) clk_tck: u64,
    pub(crate) sealgate_peak: u64,
    pub(crate) rss_after_login: u64,
    pub(crate) nginx_peak: u64,
    pub(crate) token_requests: usize,
    pub(crate) bearer_requests: u64,
}

impl Report<'_> {
    pub(crate) fn render(&self) -> String {
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
