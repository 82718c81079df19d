//! idle-10k: 10,000 keep-alive connections, each after one proxied request with a 1.5 KB
//! session cookie, held idle; the RSS they add to sealgate and to nginx, per connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::outcome::{Outcome, Row, val};
use crate::setup::{Stack, cookie_header, nginx_bff_location, nginx_config, nginx_upstream};
use crate::sys::{free_port, open_fds, process_group, raise_nofile, rss_kb};
use crate::upstream::{BEARER, BODY, UPSTREAM_PATH};
use crate::{Result, Tools, env_u32};

/// The `Cookie` header's length to aim at.
const COOKIE_BYTES: usize = 1500;
/// Connections opened at once.
const OPENING: usize = 200;

pub(crate) fn run(tools: &Tools, run: u32) -> Result<Outcome> {
    let n = env_u32("PROXY_BENCH_IDLE", 10_000) as usize;
    // This process holds the client ends; sealgate and nginx inherit the limit.
    let want = (n as u64) * 2 + 1024;
    let limit = raise_nofile(want);
    if limit < n as u64 + 512 {
        return Err(format!(
            "RLIMIT_NOFILE is {limit} and cannot be raised to {want}: {n} connections cannot be \
             held (raise it with `ulimit -n {want}`, or set PROXY_BENCH_IDLE lower)"
        )
        .into());
    }
    let stack = Stack::new()?;
    // Idle keep-alive connections must outlive the measurement (10 s by default).
    let server = format!(
        "max_connections = {}\nheader_read_timeout = \"300s\"",
        n + 100
    );
    let (sealgate, sealgate_addr) = stack.sealgate("sealgate", &server)?;
    let chunks = stack.session_of_size(sealgate_addr, COOKIE_BYTES, 1, "/api")?;
    let cookie = cookie_header(&chunks);
    let bearer = BEARER
        .get()
        .ok_or("the upstream recorded no Bearer token")?;

    let nginx_addr = free_port()?;
    let body = format!(
        "{}    keepalive_timeout 300s;\n    server {{\n        listen {nginx_addr} backlog=4096;\n{}    }}",
        nginx_upstream("api", &[stack.upstream]),
        nginx_bff_location("/api", "api", bearer)
    );
    let per_worker = u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1024);
    let conf = nginx_config(&stack.nginx_dir("nginx"), "auto", per_worker, &body);
    let nginx = stack.nginx(
        &tools.nginx,
        "nginx",
        &conf,
        Some((nginx_addr, &format!("/api{UPSTREAM_PATH}"))),
    )?;
    let nginx_pids = process_group(nginx.pid());
    let request = format!(
        "GET /api{UPSTREAM_PATH} HTTP/1.1\r\nHost: app.example.com\r\nCookie: {cookie}\r\nX-CSRF: 1\r\n\r\n"
    );

    let mut targets = [
        ("nginx", nginx_addr, nginx_pids),
        ("sealgate", sealgate_addr, vec![sealgate.pid()]),
    ];
    // Alternate which goes first from run to run.
    if run % 2 == 1 {
        targets.reverse();
    }
    let mut found = Vec::new();
    for (name, addr, pids) in &targets {
        eprintln!("proxy bench: {n} idle connections to {name}");
        found.push((*name, hold_idle(&stack, *addr, pids, n, &request)?));
    }
    found.sort_by_key(|(name, _)| *name != "sealgate");
    drop(nginx);
    drop(sealgate);

    let mut rows: Vec<Row> = found
        .iter()
        .map(|(name, h)| Row {
            label: (*name).to_owned(),
            vals: vec![
                val("RSS before MiB", 1, h.rss_before as f64 / 1024.0),
                val("RSS with connections MiB", 1, h.rss_after as f64 / 1024.0),
                val("KiB per connection", 2, h.per_connection_kib(n)),
                val("connections held", 0, h.held as f64),
                val("fds added", 0, h.fds_added as f64),
            ],
        })
        .collect();
    rows.push(Row {
        label: "sealgate ÷ nginx".to_owned(),
        vals: vec![val(
            "KiB per connection",
            3,
            found[0].1.per_connection_kib(n) / found[1].1.per_connection_kib(n),
        )],
    });
    Ok(Outcome {
        title: format!(
            "{n} idle keep-alive connections, each after one proxied request (`Cookie` {} bytes); \
             (RSS with them − RSS before) ÷ {n}",
            cookie.len()
        ),
        rows,
        notes: vec![format!(
            "RLIMIT_NOFILE {limit}; nginx worker_connections {per_worker} per worker; sealgate \
             max_connections {}; order this run: {} first",
            n + 100,
            targets[0].0
        )],
    })
}

/// What holding the connections did to the server's processes.
struct Held {
    rss_before: u64,
    rss_after: u64,
    held: usize,
    fds_added: usize,
}

impl Held {
    fn per_connection_kib(&self, n: usize) -> f64 {
        (self.rss_after as f64 - self.rss_before as f64) / n as f64
    }
}

/// Opens `n` connections to `addr`, sends `request` on each and reads the answer, keeps them
/// open and idle for a second, measures, and closes them.
fn hold_idle(
    stack: &Stack,
    addr: SocketAddr,
    pids: &[u32],
    n: usize,
    request: &str,
) -> Result<Held> {
    std::thread::sleep(Duration::from_millis(500));
    let (rss_before, fds_before) = (rss_kb(pids), open_fds(pids));
    let conns = stack.rt.block_on(open_all(addr, n, request))?;
    std::thread::sleep(Duration::from_secs(1));
    let (rss_after, fds_after) = (rss_kb(pids), open_fds(pids));
    // Still open: a request on a sample of them is answered.
    let held = conns.len();
    let sample = stack.rt.block_on(async {
        let mut ok = 0;
        for mut c in conns.into_iter().step_by((n / 20).max(1)) {
            if exchange(&mut c, request).await.is_ok() {
                ok += 1;
            }
        }
        ok
    });
    if sample < n.min(20) {
        return Err(format!(
            "{addr}: only {sample} of a sample of {} idle connections still answered",
            n.min(20)
        )
        .into());
    }
    std::thread::sleep(Duration::from_secs(1));
    Ok(Held {
        rss_before,
        rss_after,
        held,
        fds_added: fds_after.saturating_sub(fds_before),
    })
}

async fn open_all(addr: SocketAddr, n: usize, request: &str) -> Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = OPENING.min(n - conns.len());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let request = request.to_owned();
            set.spawn(async move {
                let mut c = TcpStream::connect(addr).await?;
                exchange(&mut c, &request).await?;
                Ok::<_, std::io::Error>(c)
            });
        }
        while let Some(r) = set.join_next().await {
            conns.push(r??);
        }
    }
    Ok(conns)
}

/// One request and its whole answer (it ends with the upstream's body).
async fn exchange(c: &mut TcpStream, request: &str) -> std::io::Result<()> {
    c.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    while !buf.ends_with(BODY.as_bytes()) {
        let read = tokio::time::timeout(Duration::from_secs(10), c.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("no answer in 10 s"))??;
        if read == 0 {
            return Err(std::io::Error::other(format!(
                "closed after {:?}",
                String::from_utf8_lossy(&buf)
            )));
        }
        buf.extend_from_slice(&chunk[..read]);
    }
    Ok(())
}
