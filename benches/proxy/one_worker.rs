//! one-worker: nginx with one worker serving both the upstream (`return 200` with the same
//! JSON) and the `proxy_pass` path; sealgate with `workers = 1`; wrk with one thread; a
//! one-chunk session of about 1.5 KB.

use crate::load::{Target, WRK_SCRIPT, Wrk, measure};
use crate::outcome::{Outcome, Row, load_row, others_note, per_request_us, val};
use crate::setup::{Stack, cookie_header, nginx_bff_location, nginx_config, nginx_upstream};
use crate::sys::{clock_ticks_per_second, free_port, process_group};
use crate::upstream::{BEARER, BODY, UPSTREAM_PATH};
use crate::{Params, Result, Tools};

/// The `Cookie` header's length to aim at.
const COOKIE_BYTES: usize = 1500;

pub(crate) fn run(tools: &Tools, params: &Params, _run: u32) -> Result<Outcome> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let stack = Stack::new()?;
    let (upstream_addr, proxy_addr) = (free_port()?, free_port()?);
    // sealgate's `/api` goes to nginx's upstream server; `/probe` to the in-process upstream,
    // for the session check (and the Bearer token nginx sends).
    let (sealgate, sealgate_addr) = stack.sealgate_to("sealgate", "workers = 1", upstream_addr)?;
    let chunks = stack.session_of_size(sealgate_addr, COOKIE_BYTES, 1, "/probe")?;
    let cookie = cookie_header(&chunks);
    let bearer = BEARER
        .get()
        .ok_or("the upstream recorded no Bearer token")?;

    let body = format!(
        r#"{upstreams}    server {{
        listen {upstream_addr};
        location / {{
            default_type application/json;
            return 200 '{BODY}';
        }}
    }}
    server {{
        listen {proxy_addr};
{location}    }}"#,
        upstreams = nginx_upstream("api", &[upstream_addr]),
        location = nginx_bff_location("/api", "api", bearer),
    );
    let conf = nginx_config(&stack.nginx_dir("nginx"), "1", 1024, &body);
    let nginx = stack.nginx(
        &tools.nginx,
        "nginx",
        &conf,
        Some((proxy_addr, &format!("/api{UPSTREAM_PATH}"))),
    )?;
    let nginx_pids = process_group(nginx.pid());

    let headers = vec![format!("Cookie: {cookie}"), "X-CSRF: 1".to_owned()];
    let mut sealgate_and_nginx = nginx_pids.clone();
    sealgate_and_nginx.push(sealgate.pid());
    let targets = [
        Target {
            label: "(a) nginx's upstream server directly".to_owned(),
            url: format!("http://{upstream_addr}{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: nginx_pids.clone(),
        },
        Target {
            label: "(b) nginx proxy_pass (1 worker)".to_owned(),
            url: format!("http://{proxy_addr}/api{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: nginx_pids.clone(),
        },
        Target {
            label: "(c) sealgate (workers = 1), 1-chunk session".to_owned(),
            url: format!("http://{sealgate_addr}/api{UPSTREAM_PATH}"),
            headers,
            pids: sealgate_and_nginx,
        },
    ];
    let script = stack.tmp.path.join("histogram.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let wrk = Wrk {
        bin: &tools.wrk,
        script,
        threads: 1,
        connections: params.connections,
    };
    let loads = measure(&wrk, &targets, params.seconds, params.warmup)?;
    drop(nginx);
    drop(sealgate);

    // The proxy's own CPU: what its processes and nginx's upstream server used, less what the
    // upstream server alone costs per request (a).
    let clk = clock_ticks_per_second();
    let serving = |i: usize| {
        let l = &loads[i];
        per_request_us(l.cpu.proxy.unwrap_or(0), clk, l.requests)
    };
    let upstream_alone = serving(0);
    let mut rows: Vec<Row> = Vec::new();
    for (i, (t, l)) in targets.iter().zip(&loads).enumerate() {
        let mut row = load_row(&t.label, l, clk, (i == 2).then_some(&loads[1]));
        for v in &mut row.vals {
            if v.col == "CPU µs/req (proxy)" {
                v.col = "CPU µs/req (proxy + nginx upstream)";
            }
        }
        if i > 0 {
            row.vals.push(val(
                "CPU µs/req (proxy alone: − a)",
                1,
                serving(i) - upstream_alone,
            ));
        }
        rows.push(row);
    }
    let alone = |i: usize| serving(i) - upstream_alone;
    rows.push(Row {
        label: "c ÷ b".to_owned(),
        vals: vec![
            val(
                "req/s",
                3,
                loads[2].requests_per_sec() / loads[1].requests_per_sec(),
            ),
            val("CPU µs/req (proxy alone: − a)", 3, alone(2) / alone(1)),
        ],
    });
    Ok(Outcome {
        title: format!(
            "one worker (nginx `worker_processes 1` serving the upstream too, sealgate `workers = \
             1`, wrk -t1 -c{}, `Cookie` {} bytes in {} chunk)",
            params.connections,
            cookie.len(),
            chunks.len()
        ),
        rows,
        notes: vec![others_note(&["a", "b", "c"], &loads, cores)],
    })
}
