//! `[limits]` and a route's `limits`: rates, trusted proxies, and every refusal named by its
//! key and line.

use std::path::Path;
use std::time::Duration;

use super::super::check::check_text;
use super::super::settings::{Limit, Rate};
use super::super::{Place, Settings};
use super::{EXAMPLE, env};

fn errors(text: &str) -> Vec<(String, Place)> {
    check_text(Path::new("sealgate.toml"), text, &env, &[])
        .errors
        .iter()
        .map(|p| (p.error.to_string(), p.place.clone()))
        .collect()
}

/// Asserts `text` has exactly one problem, about `key`, on the (last) line starting with `at`,
/// whose message contains `says`.
fn refused(text: &str, key: &str, at: &str, says: &str) {
    let found = errors(text);
    assert_eq!(found.len(), 1, "{text}\n{found:?}");
    let (message, place) = &found[0];
    assert!(
        message.starts_with(&format!("config: {key}: ")),
        "{key}: {message}"
    );
    assert!(message.contains(says), "{key}: {message}");
    let lines: Vec<&str> = text.lines().collect();
    let want = Place::Line(lines.iter().rposition(|l| l.starts_with(at)).unwrap() + 1);
    assert_eq!(*place, want, "{key}: {message}");
}

fn per(count: u32, secs: u64) -> Option<Rate> {
    Some(Rate {
        count,
        period: Duration::from_secs(secs),
    })
}

#[test]
fn no_limits_unless_configured() {
    let s = Settings::from_toml(EXAMPLE, &env).unwrap();
    assert_eq!(s.limits.login, Limit::default());
    assert_eq!(s.limits.routes, Limit::default());
    assert!(s.limits.trusted_proxies.is_empty());
    assert_eq!(s.limits.max_clients, 100_000);
    assert_eq!(s.routes[0].limits, None);
}

#[test]
fn endpoints_routes_and_a_routes_own_limits() {
    let text = format!(
        "{EXAMPLE}limits = {{ per_session = \"5/s\" }}\n\n[limits]\n\
         trusted_proxies = [\"10.0.0.0/8\", \"::1\", \"fd00::/8\"]\nmax_clients = 500\n\
         login = {{ per_address = \"10/min\" }}\ncallback = {{ per_address = \"20/min\" }}\n\
         backchannel_logout = {{ per_address = \"100/h\" }}\n\
         routes = {{ per_address = \"600/min\", per_session = \"300/min\" }}\n"
    );
    let s = Settings::from_toml(&text, &env).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(s.limits.max_clients, 500);
    assert_eq!(s.limits.trusted_proxies.len(), 3);
    assert!(s.limits.trusted_proxies[0].contains("10.2.3.4".parse().unwrap()));
    assert_eq!(s.limits.login.per_address, per(10, 60));
    assert_eq!(s.limits.callback.per_address, per(20, 60));
    assert_eq!(s.limits.backchannel_logout.per_address, per(100, 3600));
    assert_eq!(
        s.limits.routes,
        Limit {
            per_address: per(600, 60),
            per_session: per(300, 60)
        }
    );
    assert_eq!(
        s.routes[0].limits,
        Some(Limit {
            per_address: None,
            per_session: per(5, 1)
        })
    );
}

#[test]
fn bad_limits_are_named_with_their_line() {
    let table = |lines: &str| format!("{EXAMPLE}\n[limits]\n{lines}\n");
    refused(
        &table("login = { per_address = \"10/day\" }"),
        "limits.login.per_address",
        "login",
        "is not a rate",
    );
    refused(
        &table("login = { per_address = \"0/s\" }"),
        "limits.login.per_address",
        "login",
        "1 to",
    );
    refused(
        &table("callback = { per_session = \"1/s\" }"),
        "limits.callback.per_session",
        "callback",
        "no session",
    );
    refused(
        &table("routes = {}"),
        "limits.routes",
        "routes",
        "names no rate",
    );
    refused(
        &table("trusted_proxies = [\"10.0.0.1/8\"]"),
        "limits.trusted_proxies",
        "trusted_proxies",
        "host bits",
    );
    refused(
        &table("trusted_proxies = [\"10.0.0.0/33\"]"),
        "limits.trusted_proxies",
        "trusted_proxies",
        "prefix length",
    );
    refused(
        &table("trusted_proxies = [\"proxy.internal\"]"),
        "limits.trusted_proxies",
        "trusted_proxies",
        "not an IP address",
    );
    refused(
        &table("max_clients = 0"),
        "limits.max_clients",
        "max_clients",
        "at least 1",
    );
    refused(
        &format!("{EXAMPLE}limits = {{ per_address = \"fast\" }}\n"),
        "routes[0].limits.per_address",
        "limits",
        "is not a rate",
    );
}
