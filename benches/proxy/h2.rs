//! https-h2: HTTPS with HTTP/2 (h2load, `-c32 -m10`) against sealgate's own TLS listener and
//! nginx `ssl` + HTTP/2 + `proxy_pass`, both to the in-process upstream; a one-chunk session of
//! about 1.6 KB.

use std::path::Path;
use std::process::Command;

use crate::load::{H2load, Target, measure};
use crate::outcome::{Outcome, load_row, others_note};
use crate::setup::{Stack, cookie_header, nginx_bff_location, nginx_config, nginx_upstream};
use crate::sys::{clock_ticks_per_second, free_port, process_group};
use crate::upstream::{BEARER, UPSTREAM_PATH};
use crate::{Params, Result, Tools};

/// The `Cookie` header's length to aim at.
const COOKIE_BYTES: usize = 1600;
/// h2load's concurrent streams per connection.
const STREAMS: u32 = 10;
/// The test certificate (for `localhost`, `127.0.0.1`; see tests/support/keys/README.md).
const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/keys/tls1.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/keys/tls1.key");

pub(crate) fn run(tools: &Tools, params: &Params, _run: u32) -> Result<Outcome> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let stack = Stack::new()?;
    // The session is made through a plain-HTTP sealgate with the same key and IdP (the test
    // browser speaks plain HTTP); a sealed cookie is good at any instance with the key.
    let chunks = {
        let (_login, login_addr) = stack.sealgate("login", "")?;
        stack.session_of_size(login_addr, COOKIE_BYTES, 1, "/api")?
    };
    let cookie = cookie_header(&chunks);
    let bearer = BEARER
        .get()
        .ok_or("the upstream recorded no Bearer token")?;
    let tls = format!("tls_cert = \"{CERT}\"\ntls_key = \"{KEY}\"");
    let (sealgate, sealgate_addr) = stack.sealgate("sealgate", &tls)?;

    let nginx_addr = free_port()?;
    let listen = if nginx_has_http2_directive(&tools.nginx) {
        format!("listen {nginx_addr} ssl;\n        http2 on;")
    } else {
        format!("listen {nginx_addr} ssl http2;")
    };
    let body = format!(
        r#"{upstreams}    server {{
        {listen}
        ssl_certificate {CERT};
        ssl_certificate_key {KEY};
{location}    }}"#,
        upstreams = nginx_upstream("api", &[stack.upstream]),
        location = nginx_bff_location("/api", "api", bearer),
    );
    let conf = nginx_config(&stack.nginx_dir("nginx"), "auto", 1024, &body);
    let nginx = stack.nginx(&tools.nginx, "nginx", &conf, None)?;
    let nginx_pids = process_group(nginx.pid());

    let headers = vec![format!("cookie: {cookie}"), "x-csrf: 1".to_owned()];
    let targets = [
        Target {
            label: format!(
                "(b) nginx ssl + http2, proxy_pass ({} workers)",
                nginx_pids.len().saturating_sub(1)
            ),
            url: format!("https://{nginx_addr}/api{UPSTREAM_PATH}"),
            headers: headers.clone(),
            pids: nginx_pids,
        },
        Target {
            label: "(c) sealgate's TLS listener (h2 by ALPN), 1-chunk session".to_owned(),
            url: format!("https://{sealgate_addr}/api{UPSTREAM_PATH}"),
            headers,
            pids: vec![sealgate.pid()],
        },
    ];
    // For profiling: keep the setup up, print how to load (c), and wait.
    if let Some(secs) = std::env::var("PROXY_BENCH_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let c = &targets[1];
        let header_args: String = c.headers.iter().map(|h| format!(" -H '{h}'")).collect();
        println!(
            "proxy bench: holding for {secs} s; sealgate PID {}, nginx PIDs {:?}; load with:\n  \
             h2load -t{} -c{} -m{STREAMS} -D10{header_args} {}\n  (nginx: {})",
            sealgate.pid(),
            targets[0].pids,
            params.threads,
            params.connections,
            c.url,
            targets[0].url
        );
        std::thread::sleep(std::time::Duration::from_secs(secs));
        return Err("held for profiling; nothing measured".into());
    }
    let h2load = H2load {
        bin: &tools.h2load,
        log: stack.tmp.path.join("h2load.log"),
        threads: params.threads,
        connections: params.connections,
        streams: STREAMS,
    };
    let loads = measure(&h2load, &targets, params.seconds, params.warmup)?;
    drop(nginx);
    drop(sealgate);

    let clk = clock_ticks_per_second();
    let rows = targets
        .iter()
        .zip(&loads)
        .enumerate()
        .map(|(i, (t, l))| load_row(&t.label, l, clk, (i == 1).then_some(&loads[0])))
        .collect();
    Ok(Outcome {
        title: format!(
            "HTTPS + HTTP/2 (h2load -t{} -c{} -m{STREAMS}; latency from its per-request log; \
             `cookie` {} bytes in {} chunk)",
            params.threads,
            params.connections,
            cookie.len(),
            chunks.len()
        ),
        rows,
        notes: vec![others_note(&["b", "c"], &loads, cores)],
    })
}

/// nginx 1.25.1 and later configure HTTP/2 with `http2 on;` (the `listen … http2` flag is
/// deprecated there); earlier ones only with the flag.
fn nginx_has_http2_directive(nginx: &Path) -> bool {
    let Ok(out) = Command::new(nginx).arg("-v").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stderr);
    let version: Vec<u32> = text
        .split("nginx/")
        .nth(1)
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .filter_map(|p| p.parse().ok())
        .collect();
    version >= vec![1, 25, 1]
}
