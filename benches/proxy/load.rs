//! The load generators: wrk (HTTP/1.1) and h2load (HTTPS + HTTP/2), and what they measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Result;
use crate::sys::Cpu;

/// wrk's `done` hook: the summary and the whole latency histogram (µs → count, non-empty
/// buckets only), so runs of one target can be merged exactly.
pub(crate) const WRK_SCRIPT: &str = r#"
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

/// One thing to load: a URL, the headers sent, and the processes whose CPU to count.
pub(crate) struct Target {
    pub(crate) label: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<String>,
    pub(crate) pids: Vec<u32>,
}

/// Something that loads a target for some seconds and says what it measured.
pub(crate) trait Loader {
    fn run(&self, t: &Target, seconds: u32) -> Result<Load>;
}

/// wrk with the `done` hook above.
pub(crate) struct Wrk<'a> {
    pub(crate) bin: &'a Path,
    pub(crate) script: PathBuf,
    pub(crate) threads: u32,
    pub(crate) connections: u32,
}

impl Loader for Wrk<'_> {
    /// One wrk run of `seconds` against `t`, with the CPU used around it.
    fn run(&self, t: &Target, seconds: u32) -> Result<Load> {
        let mut cmd = Command::new(self.bin);
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
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
}

/// h2load (nghttp2): HTTPS with HTTP/2 by ALPN, `streams` concurrent streams per connection.
/// It prints no percentiles, so each request's time comes from its `--log-file`.
pub(crate) struct H2load<'a> {
    pub(crate) bin: &'a Path,
    pub(crate) log: PathBuf,
    pub(crate) threads: u32,
    pub(crate) connections: u32,
    pub(crate) streams: u32,
}

impl Loader for H2load<'_> {
    fn run(&self, t: &Target, seconds: u32) -> Result<Load> {
        let mut cmd = Command::new(self.bin);
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-m{}", self.streams))
            .arg(format!("-D{seconds}"))
            .arg("--log-file")
            .arg(&self.log);
        for h in &t.headers {
            cmd.arg("-H").arg(h);
        }
        let before = Cpu::sample(&t.pids);
        let out = cmd.arg(&t.url).stdin(Stdio::null()).output()?;
        let cpu = Cpu::sample(&t.pids).since(before);
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "h2load {}: {}\n{text}{}",
                t.url,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let log = std::fs::read_to_string(&self.log)?;
        let mut load = Load::parse_h2load(&text, &log)
            .ok_or_else(|| format!("cannot read h2load's output:\n{text}"))?;
        load.cpu = cpu;
        Ok(load)
    }
}

/// Warms every target up (errors there mean a broken setup, not a slow one), then measures
/// each in two halves, in the order a b c … c b a, so that a drift in the machine's background
/// load over the run weighs on every target alike.
pub(crate) fn measure(
    loader: &dyn Loader,
    targets: &[Target],
    seconds: u32,
    warmup: u32,
) -> Result<Vec<Load>> {
    for t in targets {
        eprintln!("proxy bench: warm-up {} ({})", t.url, t.label);
        let warm = loader.run(t, warmup)?;
        if warm.errors > 0 || warm.requests == 0 {
            return Err(format!(
                "{}: {} of {} warm-up requests failed",
                t.url, warm.errors, warm.requests
            )
            .into());
        }
    }
    let half = seconds.div_ceil(2);
    let mut loads: Vec<Load> = targets.iter().map(|_| Load::default()).collect();
    for i in (0..targets.len()).chain((0..targets.len()).rev()) {
        eprintln!(
            "proxy bench: {} s {} ({})",
            half, targets[i].url, targets[i].label
        );
        let load = loader.run(&targets[i], half)?;
        loads[i].add(load);
    }
    Ok(loads)
}

/// What a load generator measured for one target (possibly several runs merged).
#[derive(Default)]
pub(crate) struct Load {
    pub(crate) requests: u64,
    pub(crate) duration_us: u64,
    /// Non-2xx/3xx responses plus socket errors.
    pub(crate) errors: u64,
    /// Latency in µs → requests.
    pub(crate) latency: BTreeMap<u64, u64>,
    pub(crate) cpu: Cpu,
}

impl Load {
    pub(crate) fn parse(text: &str) -> Option<Load> {
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

    pub(crate) fn add(&mut self, other: Load) {
        self.requests += other.requests;
        self.duration_us += other.duration_us;
        self.errors += other.errors;
        for (value, count) in other.latency {
            *self.latency.entry(value).or_default() += count;
        }
        self.cpu = self.cpu.plus(other.cpu);
    }

    pub(crate) fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    /// The latency at percentile `p`, in ms (the rank rule is wrk's own).
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
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

impl Load {
    /// h2load's summary (`finished in 3.00s, …`, `requests: N total, … S succeeded, F failed,
    /// E errored, T timeout`, `status codes: A 2xx, B 3xx, C 4xx, D 5xx`) and its log file
    /// (start µs, status, µs until the response ended; one request a line).
    fn parse_h2load(text: &str, log: &str) -> Option<Load> {
        let mut load = Load::default();
        let number_before = |line: &str, word: &str| -> Option<u64> {
            let words: Vec<&str> = line.split_whitespace().collect();
            let i = words.iter().position(|w| w.trim_end_matches(',') == word)?;
            words.get(i.checked_sub(1)?)?.parse().ok()
        };
        let mut seen = (false, false);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("finished in ") {
                let secs: f64 = rest.split('s').next()?.parse().ok()?;
                load.duration_us = u64::try_from(
                    std::time::Duration::try_from_secs_f64(secs)
                        .ok()?
                        .as_micros(),
                )
                .ok()?;
                seen.0 = true;
            } else if line.starts_with("requests: ") {
                load.requests = number_before(line, "succeeded")?;
                // `failed` includes `errored` and `timeout`.
                load.errors = load.errors.max(number_before(line, "failed")?);
                seen.1 = true;
            } else if line.starts_with("status codes: ") {
                // Responses that are not 2xx or 3xx are also counted as `failed`.
                load.errors = load
                    .errors
                    .max(number_before(line, "4xx")? + number_before(line, "5xx")?);
            }
        }
        for line in log.lines() {
            let mut f = line.split('\t');
            let (_, status, us) = (f.next(), f.next()?, f.next()?);
            if status.starts_with('2') {
                *load.latency.entry(us.trim().parse().ok()?).or_default() += 1;
            }
        }
        (seen.0 && seen.1).then_some(load)
    }
}
