//! What the soak counts and what it calls a violation.
//!
//! Every request a simulated user makes has an expected answer (a step's status). Anything
//! else is an error, classified by kind (`"api 502"`, `"callback connect failed"`, …) and
//! judged by these rules, the only ones that excuse an error:
//!
//! - **Instance kill** (SIGKILL, then restart): nginx retries a request on the next instance
//!   when the connection fails before a response header (`proxy_next_upstream error
//!   timeout`), except a non-idempotent one (POST) it had already sent. So while an instance
//!   is being killed (from the kill until it is ready again, plus [`GRACE`]), a *logout POST*
//!   may fail, and so may a *callback*: nginx does retry that GET, but the authorization code
//!   it carries is single-use, and the killed instance may have redeemed it already. A
//!   back-channel logout POSTed to the killed instance itself fails (refused, or reset in
//!   flight); the IdP posts it again to another instance (as an IdP retries), which must
//!   succeed. An API call in flight at the moment of the kill may end its session (401):
//!   when the killed instance was refreshing that session, it may have redeemed the refresh
//!   token and died before it stored the result; nginx retries the call on another instance,
//!   which waits for the dead instance's refresh lock (15 s) and then finds the refresh token
//!   spent (see [`Oracle::check_refreshes`]).
//! - **Redis fault** (from the fault until every instance is ready again, plus [`GRACE`]):
//!   with `on_store_unavailable = "refuse"`, 503 is the designed answer to authenticated
//!   requests while an instance sees the store unavailable.
//!
//! Every other error is a violation; so is a logged-out cookie served (2xx) by any instance at
//! any time after its logout was acknowledged (a logout is answered only once every instance
//! applied it or lost its lease), and a refresh token redeemed twice at the IdP (see
//! [`Oracle::check_refreshes`] for the one crash case that cannot be avoided).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::idp::FakeIdp;

/// How long after a fault's recovery its excuses still hold.
pub const GRACE: Duration = Duration::from_secs(2);

/// The faults the soak injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill,
    Redis,
}

/// One fault, from its start to the moment everything was ready again.
#[derive(Clone, Debug)]
pub struct Window {
    pub fault: Fault,
    pub start: Instant,
    pub end: Option<Instant>,
    pub what: String,
}

/// The steps of a simulated user, each with the status it expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Login,
    Authorize,
    Callback,
    Api,
    Logout,
    BackChannel,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Login => "login",
            Step::Authorize => "authorize (IdP)",
            Step::Callback => "callback",
            Step::Api => "api",
            Step::Logout => "logout",
            Step::BackChannel => "back-channel logout",
        }
    }

    pub fn expected(self) -> u16 {
        match self {
            Step::Login | Step::Authorize | Step::Callback | Step::Logout => 302,
            Step::Api | Step::BackChannel => 200,
        }
    }
}

#[derive(Default)]
struct Counts {
    /// Requests through nginx (the users' own), with their latency in microseconds.
    latencies: Vec<u32>,
    /// Other requests: to the IdP, back-channel logouts and replays straight to instances.
    other_requests: u64,
    logins: u64,
    logouts: u64,
    back_channel: u64,
    replays: u64,
    /// By kind: how many, and the first and last time one was sent.
    errors: BTreeMap<String, (u64, Instant, Instant)>,
    allowed: BTreeMap<String, u64>,
    violations: BTreeMap<String, u64>,
    /// The first few violations, described.
    examples: Vec<String>,
}

/// The soak's books, shared by every user.
pub struct Oracle {
    started: Instant,
    windows: Mutex<Vec<Window>>,
    counts: Mutex<Counts>,
}

impl Oracle {
    pub fn new() -> Oracle {
        Oracle {
            started: Instant::now(),
            windows: Mutex::new(Vec::new()),
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Seconds since the start, for messages.
    pub fn at(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.started).as_secs_f64()
    }

    /// A fault begins; returns its index for [`Oracle::end_fault`].
    pub fn begin_fault(&self, fault: Fault, what: String) -> usize {
        let mut w = self.windows.lock().unwrap();
        w.push(Window {
            fault,
            start: Instant::now(),
            end: None,
            what,
        });
        w.len() - 1
    }

    pub fn end_fault(&self, index: usize) {
        self.windows.lock().unwrap()[index].end = Some(Instant::now());
    }

    /// Names what the fault was (once known).
    pub fn describe_fault(&self, index: usize, what: String) {
        self.windows.lock().unwrap()[index].what = what;
    }

    pub fn windows(&self) -> Vec<Window> {
        self.windows.lock().unwrap().clone()
    }

    /// Whether `[from, to]` overlaps a window of `fault` (with [`GRACE`] after its end).
    pub fn during(&self, fault: Fault, from: Instant, to: Instant) -> bool {
        self.windows
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.fault == fault)
            .any(|w| w.start <= to && w.end.is_none_or(|e| from <= e + GRACE))
    }

    /// Whether a fault of `fault` began while a request was in flight (`[from, to]`).
    fn in_flight_at(&self, fault: Fault, from: Instant, to: Instant) -> bool {
        self.windows
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.fault == fault && from <= w.start && w.start <= to)
    }

    pub fn count_user_request(&self, sent: Instant) {
        let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.counts.lock().unwrap().latencies.push(micros);
    }

    pub fn count_other_request(&self) {
        self.counts.lock().unwrap().other_requests += 1;
    }

    pub fn count_login(&self) {
        self.counts.lock().unwrap().logins += 1;
    }

    pub fn count_logout(&self, back_channel: bool) {
        let mut c = self.counts.lock().unwrap();
        if back_channel {
            c.back_channel += 1;
        } else {
            c.logouts += 1;
        }
    }

    pub fn count_replay(&self) {
        self.counts.lock().unwrap().replays += 1;
    }

    /// Judges a step's answer that was not the expected one (`got`: a status or a transport
    /// failure) for a request sent at `sent`; returns whether it was excused.
    pub fn error(&self, step: Step, sent: Instant, got: &str, who: &str) -> bool {
        let now = Instant::now();
        let kind = format!("{} {got}", step.name());
        let excuse = if self.during(Fault::Kill, sent, now)
            && matches!(step, Step::Logout | Step::Callback)
        {
            Some("in flight at an instance kill, not retryable")
        } else if self.during(Fault::Kill, sent, now)
            && step == Step::BackChannel
            && got.parse::<u16>().is_err()
        {
            Some("posted to the killed instance; posted again to another")
        } else if step == Step::Api && got == "401" && self.in_flight_at(Fault::Kill, sent, now) {
            Some("in flight at the kill: its refresh died with the killed instance")
        } else if self.during(Fault::Redis, sent, now) && got == "503" {
            Some("store unavailable during the Redis fault (policy refuse)")
        } else {
            None
        };
        let mut c = self.counts.lock().unwrap();
        let e = c.errors.entry(kind.clone()).or_insert((0, sent, sent));
        e.0 += 1;
        e.1 = e.1.min(sent);
        e.2 = e.2.max(sent);
        match excuse {
            Some(why) => {
                *c.allowed.entry(format!("{kind}: {why}")).or_default() += 1;
                true
            }
            None => {
                *c.violations.entry(kind.clone()).or_default() += 1;
                // A few of each kind: one frequent kind must not hide the others.
                if c.examples.len() < 40 && c.violations[&kind] <= 5 {
                    let at = self.at(sent);
                    c.examples
                        .push(format!("{kind} ({who}, sent at {at:.1} s)"));
                }
                false
            }
        }
    }

    /// Records a violation that is not a failed step.
    pub fn violation(&self, kind: &str, detail: String) {
        let mut c = self.counts.lock().unwrap();
        *c.violations.entry(kind.to_owned()).or_default() += 1;
        if c.examples.len() < 40 && c.violations[kind] <= 5 {
            c.examples.push(detail);
        }
    }

    /// Every refresh token redeemed at the IdP at most once. The one excused case: the first
    /// redemption happened within a second of an instance's kill, before or after (the IdP
    /// logs a request when it handles it, which can be just after its sender died): that
    /// instance redeemed it and died before it could store the result in Redis or answer, and
    /// the IdP's rotation is not idempotent, so nothing can recover the new token. The second
    /// redemption may come much later (a request waiting for the dead instance's lock, or the
    /// user's next call). Returns (refresh calls, tokens redeemed twice).
    pub fn check_refreshes(&self, idp: &FakeIdp) -> (usize, usize) {
        let mut seen: HashMap<String, Instant> = HashMap::new();
        let (mut calls, mut twice) = (0, 0);
        let kills: Vec<Instant> = self
            .windows()
            .iter()
            .filter(|w| w.fault == Fault::Kill)
            .map(|w| w.start)
            .collect();
        for r in idp.requests_to("/token") {
            if r.form_param("grant_type") != Some("refresh_token") {
                continue;
            }
            calls += 1;
            let Some(token) = r.form_param("refresh_token") else {
                continue;
            };
            match seen.get(token) {
                None => {
                    seen.insert(token.to_owned(), r.at);
                }
                Some(&first) => {
                    twice += 1;
                    let crash = kills
                        .iter()
                        .any(|&k| first.max(k) - first.min(k) <= Duration::from_secs(1));
                    let detail = format!(
                        "a refresh token redeemed again at {:.1} s (first at {:.1} s)",
                        self.at(r.at),
                        self.at(first)
                    );
                    if crash {
                        let mut c = self.counts.lock().unwrap();
                        *c.allowed
                            .entry("refresh token redeemed twice: first within 1 s of an instance's kill".into())
                            .or_default() += 1;
                    } else {
                        self.violation("refresh token redeemed twice", detail);
                    }
                }
            }
        }
        (calls, twice)
    }

    pub fn violations(&self) -> u64 {
        self.counts.lock().unwrap().violations.values().sum()
    }

    /// The report.
    pub fn report(&self, header: &str, refresh: (usize, usize), rss: &[(String, u64)]) -> String {
        let c = self.counts.lock().unwrap();
        let mut lat = c.latencies.clone();
        lat.sort_unstable();
        // Nearest rank; `per_mille` 500 is the median.
        let pct = |per_mille: usize| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() - 1) * per_mille).div_ceil(1000);
            f64::from(lat[i]) / 1000.0
        };
        let errors: u64 = c.errors.values().map(|e| e.0).sum();
        let mut out = String::new();
        let _ = writeln!(out, "soak: {header}");
        let _ = writeln!(
            out,
            "requests: {} through nginx, {} other (IdP, back-channel, replays to instances)",
            lat.len(),
            c.other_requests
        );
        let _ = writeln!(
            out,
            "users' flows: {} logins, {} logouts, {} back-channel logouts, {} replays of logged-out cookies",
            c.logins, c.logouts, c.back_channel, c.replays
        );
        let _ = writeln!(out, "errors: {errors}");
        for (kind, (n, first, last)) in &c.errors {
            let (first, last) = (self.at(*first), self.at(*last));
            let _ = writeln!(
                out,
                "  {n:6}  {kind} (sent from {first:.1} s to {last:.1} s)"
            );
        }
        let _ = writeln!(out, "excused:");
        for (kind, n) in &c.allowed {
            let _ = writeln!(out, "  {n:6}  {kind}");
        }
        let _ = writeln!(
            out,
            "refresh calls at the IdP: {} (refresh tokens redeemed twice: {})",
            refresh.0, refresh.1
        );
        let _ = writeln!(
            out,
            "latency through nginx: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} slower than 5 s",
            pct(500),
            pct(990),
            pct(1000),
            lat.iter().filter(|&&l| l > 5_000_000).count()
        );
        let rss: Vec<String> = rss
            .iter()
            .map(|(name, kb)| format!("{name} {:.1} MiB", *kb as f64 / 1024.0))
            .collect();
        let _ = writeln!(out, "max RSS (VmRSS, sampled): {}", rss.join(", "));
        for w in self.windows() {
            let took = w
                .end
                .map(|e| (e - w.start).as_secs_f64())
                .unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "fault at {:.1} s: {} (recovered after {took:.1} s)",
                self.at(w.start),
                w.what
            );
        }
        let violations: u64 = c.violations.values().sum();
        if violations == 0 {
            let _ = writeln!(out, "oracle: PASS (no violation)");
        } else {
            let _ = writeln!(out, "oracle: FAIL ({violations} violations)");
            for (kind, n) in &c.violations {
                let _ = writeln!(out, "  {n:6}  {kind}");
            }
            for e in &c.examples {
                let _ = writeln!(out, "  e.g. {e}");
            }
        }
        out
    }
}
