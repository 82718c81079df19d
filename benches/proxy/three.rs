//! three: three sealgate processes behind nginx round-robin (no stickiness, one shared cookie
//! key), each with its share of the cores as `workers`, against one sealgate with the default
//! workers behind the same nginx configuration, beside nginx proxying to the upstream itself;
//! the same wrk load and two-chunk session as the default run.

use std::net::SocketAddr;

use crate::load::{Target, WRK_SCRIPT, Wrk, measure};
use crate::outcome::{Outcome, Row, load_row, others_note, per_request_us, val};
use crate::setup::{Stack, cookie_header, nginx_bff_location, nginx_config, nginx_upstream};
use crate::sys::{clock_ticks_per_second, free_port, process_group};
use crate::upstream::{BEARER, UPSTREAM_PATH};
use crate::{Params, Result, Tools};

/// The default run's groups: a two-chunk session.
const GROUPS: usize = 150;

pub(crate) fn run(tools: &Tools, params: &Params, _run: u32) -> Result<Outcome> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let stack = Stack::new()?;
    // The one instance has the default workers (one per core), as on a machine of its own;
    // each of the three its share of the cores, as an operator running three on one machine
    // would configure them (three instances of two workers on two cores would run six worker
    // threads).
    let single = stack.sealgate("sealgate", "")?;
    let share = format!("workers = {}", (cores / 3).max(1));
    let mut sealgates = Vec::new();
    for i in 1..=3 {
        sealgates.push(stack.sealgate(&format!("sealgate{i}"), &share)?);
    }
    let addrs: Vec<SocketAddr> = sealgates.iter().map(|(_, a)| *a).collect();
    // Logged in at the first; the cookie is good at all of them (one key).
    let chunks = stack.session(addrs[0], GROUPS, 2, "/api")?;
    let cookie = cookie_header(&chunks);
    let bearer = BEARER
        .get()
        .ok_or("the upstream recorded no Bearer token")?;

    let (direct, one, three) = (free_port()?, free_port()?, free_port()?);
    // nginx in front of sealgate passes the request as it came (cookie included).
    let pass = |listen: SocketAddr, upstream: &str| {
        format!(
            r#"    server {{
        listen {listen};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
"#
        )
    };
    let body = format!(
        "{}{}{}    server {{\n        listen {direct};\n{}    }}\n{}{}",
        nginx_upstream("api", &[stack.upstream]),
        nginx_upstream("one", &[single.1]),
        nginx_upstream("three", &addrs),
        nginx_bff_location("/api", "api", bearer),
        pass(one, "one"),
        pass(three, "three"),
    );
    let conf = nginx_config(&stack.nginx_dir("nginx"), "auto", 1024, &body);
    let nginx = stack.nginx(
        &tools.nginx,
        "nginx",
        &conf,
        Some((direct, &format!("/api{UPSTREAM_PATH}"))),
    )?;
    let nginx_pids = process_group(nginx.pid());
    let with = |instances: &[&(crate::sys::Proc, SocketAddr)]| {
        let mut p = nginx_pids.clone();
        p.extend(instances.iter().map(|(s, _)| s.pid()));
        p
    };

    let headers = vec![format!("Cookie: {cookie}"), "X-CSRF: 1".to_owned()];
    let targets = [
        Target {
            label: "(b) nginx proxy_pass to the upstream".to_owned(),
            url: format!("http://{direct}/api{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: nginx_pids.clone(),
        },
        Target {
            label: "(1) nginx → one sealgate".to_owned(),
            url: format!("http://{one}/api{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: with(&[&single]),
        },
        Target {
            label: "(3) nginx round-robin → three sealgates".to_owned(),
            url: format!("http://{three}/api{UPSTREAM_PATH}"),
            headers,
            pids: with(&sealgates.iter().collect::<Vec<_>>()),
        },
    ];
    let script = stack.tmp.path.join("histogram.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let wrk = Wrk {
        bin: &tools.wrk,
        script,
        threads: params.threads,
        connections: params.connections,
    };
    let loads = measure(&wrk, &targets, params.seconds, params.warmup)?;
    drop(nginx);
    drop(sealgates);
    drop(single);

    let clk = clock_ticks_per_second();
    let mut rows: Vec<Row> = targets
        .iter()
        .zip(&loads)
        .enumerate()
        .map(|(i, (t, l))| load_row(&t.label, l, clk, (i > 0).then_some(&loads[0])))
        .collect();
    let cpu = |i: usize| per_request_us(loads[i].cpu.proxy.unwrap_or(0), clk, loads[i].requests);
    rows.push(Row {
        label: "(3) ÷ (1)".to_owned(),
        vals: vec![
            val(
                "req/s",
                3,
                loads[2].requests_per_sec() / loads[1].requests_per_sec(),
            ),
            val("CPU µs/req (proxy)", 3, cpu(2) / cpu(1)),
            val(
                "p99 (3) − (1) ms",
                2,
                loads[2].percentile_ms(99.0) - loads[1].percentile_ms(99.0),
            ),
        ],
    });
    Ok(Outcome {
        title: format!(
            "three instances (`{share}` each) behind nginx round-robin against one (default \
             workers) (wrk -t{} -c{}, {}-chunk session, `Cookie` {} bytes; CPU counts nginx and \
             the sealgates)",
            params.threads,
            params.connections,
            chunks.len(),
            cookie.len()
        ),
        rows,
        notes: vec![others_note(&["b", "1", "3"], &loads, cores)],
    })
}
