//! What one run of a variant found (rows of named numbers and notes), and the median and
//! spread of each number over `PROXY_BENCH_RUNS` runs.

use std::fmt::Write as _;

use crate::load::Load;

/// One number of a row: the column it goes in, its decimals, its value.
#[derive(Clone, Copy)]
pub(crate) struct Val {
    pub(crate) col: &'static str,
    pub(crate) decimals: usize,
    pub(crate) v: f64,
}

pub(crate) fn val(col: &'static str, decimals: usize, v: f64) -> Val {
    Val { col, decimals, v }
}

/// One target (or one comparison) and its numbers.
pub(crate) struct Row {
    pub(crate) label: String,
    pub(crate) vals: Vec<Val>,
}

/// One run of a variant.
pub(crate) struct Outcome {
    /// The variant's heading (what was loaded, how).
    pub(crate) title: String,
    pub(crate) rows: Vec<Row>,
    /// Facts of the run (cookie size, limits, the machine's other load).
    pub(crate) notes: Vec<String>,
}

impl Outcome {
    /// The columns in the order they first appear.
    fn columns(rows: &[Row]) -> Vec<&'static str> {
        let mut cols: Vec<&'static str> = Vec::new();
        for v in rows.iter().flat_map(|r| &r.vals) {
            if !cols.contains(&v.col) {
                cols.push(v.col);
            }
        }
        cols
    }

    /// This run alone, as markdown.
    pub(crate) fn render(&self, heading: &str) -> String {
        let cols = Outcome::columns(&self.rows);
        let mut s = format!("### {heading}: {}\n\n", self.title);
        table_head(&mut s, &cols);
        for r in &self.rows {
            let cells = cols.iter().map(|c| {
                r.vals
                    .iter()
                    .find(|v| v.col == *c)
                    .map_or("–".to_owned(), |v| number(v.v, v.decimals))
            });
            table_row(&mut s, &r.label, cells);
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }
}

/// Several runs of one variant: each number's median and its range (min–max).
pub(crate) fn summary(heading: &str, runs: &[Outcome]) -> String {
    let Some(first) = runs.first() else {
        return String::new();
    };
    let cols = Outcome::columns(&first.rows);
    let mut s = format!(
        "### {heading}: {} — median (min–max) of {} runs\n\n",
        first.title,
        runs.len()
    );
    table_head(&mut s, &cols);
    for (i, r) in first.rows.iter().enumerate() {
        let cells = cols.iter().map(|c| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|o| o.rows.get(i)?.vals.iter().find(|v| v.col == *c))
                .map(|v| v.v)
                .filter(|v| v.is_finite())
                .collect();
            let decimals = r.vals.iter().find(|v| v.col == *c).map(|v| v.decimals);
            match (decimals, values.is_empty()) {
                (Some(d), false) => {
                    values.sort_by(f64::total_cmp);
                    let (lo, hi) = (values[0], values[values.len() - 1]);
                    if runs.len() == 1 {
                        number(lo, d)
                    } else {
                        format!(
                            "**{}** ({}–{})",
                            number(median(&values), d),
                            number(lo, d),
                            number(hi, d)
                        )
                    }
                }
                _ => "–".to_owned(),
            }
        });
        table_row(&mut s, &r.label, cells);
    }
    s
}

/// The median of sorted `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn number(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".to_owned()
    }
}

fn table_head(s: &mut String, cols: &[&str]) {
    let _ = writeln!(s, "| target | {} |", cols.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(cols.len()));
}

fn table_row(s: &mut String, label: &str, cells: impl Iterator<Item = String>) {
    let _ = writeln!(s, "| {label} | {} |", cells.collect::<Vec<_>>().join(" | "));
}

/// CPU µs per request (or per login) from `ticks`.
pub(crate) fn per_request_us(ticks: u64, clk_tck: u64, requests: u64) -> f64 {
    ticks as f64 * 1e6 / clk_tck as f64 / requests.max(1) as f64
}

/// The usual numbers of a loaded target: req/s, proxy CPU per request (the processes named by
/// the target; `–` for none), p50, p99, errors, and req/s and CPU against `baseline` (nginx).
pub(crate) fn load_row(label: &str, load: &Load, clk_tck: u64, baseline: Option<&Load>) -> Row {
    let cpu = |l: &Load| {
        l.cpu
            .proxy
            .map_or(f64::NAN, |t| per_request_us(t, clk_tck, l.requests))
    };
    let mut vals = vec![
        val("req/s", 0, load.requests_per_sec()),
        val("CPU µs/req (proxy)", 1, cpu(load)),
        val(
            "CPU µs/req (this process)",
            1,
            per_request_us(load.cpu.upstream, clk_tck, load.requests),
        ),
        val(
            "CPU µs/req (load generator)",
            1,
            per_request_us(load.cpu.wrk, clk_tck, load.requests),
        ),
        val("p50 ms", 2, load.percentile_ms(50.0)),
        val("p99 ms", 2, load.percentile_ms(99.0)),
        val("errors", 0, load.errors as f64),
    ];
    if let Some(b) = baseline {
        vals.push(val(
            "req/s ÷ nginx",
            3,
            load.requests_per_sec() / b.requests_per_sec(),
        ));
        vals.push(val("CPU ÷ nginx", 3, cpu(load) / cpu(b)));
        vals.push(val(
            "p99 − nginx ms",
            2,
            load.percentile_ms(99.0) - b.percentile_ms(99.0),
        ));
    }
    Row {
        label: label.to_owned(),
        vals,
    }
}

/// The machine's load outside the benchmark during `loads`, in cores (a note for the report).
pub(crate) fn others_note(labels: &[&str], loads: &[Load], cores: usize) -> String {
    let parts: Vec<String> = labels
        .iter()
        .zip(loads)
        .map(|(l, r)| {
            let c = |t: u64| t as f64 / r.cpu.machine_total.max(1) as f64 * cores as f64;
            format!("{l} {:.2}", c(r.cpu.others()))
        })
        .collect();
    format!(
        "processes outside this benchmark during each target's runs, in cores: {}",
        parts.join("; ")
    )
}
