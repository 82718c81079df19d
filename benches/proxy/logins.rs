//! logins: full logins per second (login → fake IdP authorize → callback → session cookie),
//! driven by concurrent tokio tasks for a fixed time. No nginx baseline: nginx does no logins.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::load::Load;
use crate::outcome::{Outcome, Row, per_request_us, val};
use crate::setup::{COOKIE_NAME, Stack, login};
use crate::support::app::PUBLIC;
use crate::support::browser::Browser;
use crate::sys::{Cpu, clock_ticks_per_second};
use crate::{Params, Result, env_u32};

pub(crate) fn run(params: &Params) -> Result<Outcome> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let tasks = env_u32("PROXY_BENCH_LOGIN_TASKS", 16);
    let stack = Stack::new()?;
    stack.set_groups(0);
    let (sealgate, addr) = stack.sealgate("sealgate", "")?;
    let pids = [sealgate.pid()];

    eprintln!("proxy bench: {} s of logins (warm-up)", params.warmup);
    let warm = logins(&stack, addr, tasks, params.warmup, &pids);
    if warm.errors > 0 || warm.requests == 0 {
        return Err(format!("{} of {} warm-up logins failed", warm.errors, warm.requests).into());
    }
    eprintln!("proxy bench: {} s of logins, {tasks} tasks", params.seconds);
    let load = logins(&stack, addr, tasks, params.seconds, &pids);
    drop(sealgate);

    let clk = clock_ticks_per_second();
    let ticks = |t: u64| per_request_us(t, clk, load.requests);
    let others = load.cpu.others() as f64 / load.cpu.machine_total.max(1) as f64 * cores as f64;
    Ok(Outcome {
        title: format!(
            "logins through the fake IdP ({tasks} concurrent tasks, each login a new browser: \
             /bff/login → authorize → /bff/callback)"
        ),
        rows: vec![Row {
            label: "sealgate, full logins".to_owned(),
            vals: vec![
                val("logins/s", 0, load.requests_per_sec()),
                val(
                    "CPU µs/login (sealgate)",
                    0,
                    ticks(load.cpu.proxy.unwrap_or(0)),
                ),
                val(
                    "CPU µs/login (this process: IdP + browsers)",
                    0,
                    ticks(load.cpu.upstream),
                ),
                val("p50 ms", 2, load.percentile_ms(50.0)),
                val("p99 ms", 2, load.percentile_ms(99.0)),
                val("errors", 0, load.errors as f64),
            ],
        }],
        notes: vec![
            format!("processes outside this benchmark during the run: {others:.2} cores"),
            "the fake IdP signs an RS256 ID token per login (the `rsa` crate) in this process, \
             which with the test browsers costs several times sealgate's CPU per login: on a \
             small machine logins/s is bounded by the bench itself; sealgate's CPU per login is \
             the number to compare"
                .to_owned(),
        ],
    })
}

/// `tasks` tasks logging in one after another for `seconds`; counts, latencies and CPU.
fn logins(
    stack: &Stack,
    addr: std::net::SocketAddr,
    tasks: u32,
    seconds: u32,
    pids: &[u32],
) -> Load {
    let errors = Arc::new(AtomicU64::new(0));
    let before = Cpu::sample(pids);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(u64::from(seconds));
    let latencies: Vec<Vec<u64>> = stack.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let errors = errors.clone();
            set.spawn(async move {
                let mut took = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let mut browser = Browser::new();
                    browser.map_origin(PUBLIC, &addr.to_string());
                    let ok = login(&mut browser).await.is_ok()
                        && browser
                            .cookie(PUBLIC, &format!("{COOKIE_NAME}.0"))
                            .is_some();
                    if ok {
                        took.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                took
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.push(r.unwrap_or_default());
        }
        all
    });
    let duration = started.elapsed();
    let cpu = Cpu::sample(pids).since(before);
    // The fake IdP logs every request; the log is not needed here.
    stack.idp.clear_requests();
    let mut latency = BTreeMap::new();
    for us in latencies.into_iter().flatten() {
        *latency.entry(us).or_default() += 1;
    }
    Load {
        requests: latency.values().sum(),
        duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
        errors: errors.load(Ordering::Relaxed),
        latency,
        cpu,
    }
}
