//! `[session] revalidate_every`: off by default, bounded, and a warning when the scopes do not
//! ask for refresh tokens.

use std::path::Path;
use std::time::Duration;

use super::super::check::check_text;
use super::{EXAMPLE, env, parse};

fn with(value: &str) -> String {
    EXAMPLE.replace(
        "login_timeout = \"10m\"",
        &format!("login_timeout = \"10m\"\nrevalidate_every = {value}"),
    )
}

fn revalidate_warnings(text: &str) -> Vec<String> {
    check_text(Path::new("sealgate.toml"), text, &env, &[])
        .warnings
        .into_iter()
        .filter(|w| w.contains("revalidate_every"))
        .collect()
}

#[test]
fn revalidation_is_off_unless_configured() {
    assert_eq!(parse(EXAMPLE).unwrap().session.revalidate_every, None);
    assert!(revalidate_warnings(EXAMPLE).is_empty());
}

#[test]
fn revalidate_every_is_read_with_its_bounds() {
    let s = parse(&with("\"5m\"")).unwrap();
    assert_eq!(s.session.revalidate_every, Some(Duration::from_secs(300)));
    // The bounds themselves: a minute; just under the absolute timeout (8h).
    let s = parse(&with("\"1m\"")).unwrap();
    assert_eq!(s.session.revalidate_every, Some(Duration::from_secs(60)));
    let s = parse(&with("\"7h 59m 59s\"")).unwrap();
    assert_eq!(
        s.session.revalidate_every,
        Some(Duration::from_secs(8 * 3600 - 1))
    );
    for (bad, says) in [
        ("\"59s\"", "at least"),
        ("\"0s\"", "greater than zero"),
        ("\"8h\"", "shorter than session.absolute_timeout"),
        ("\"9h\"", "shorter than session.absolute_timeout"),
        ("\"soon\"", "not a duration"),
        ("300", "invalid type"),
    ] {
        let err = parse(&with(bad)).unwrap_err().to_string();
        assert!(
            err.contains("revalidate_every") && err.contains(says),
            "{bad}: {err}"
        );
    }
    // A refresh result is reused for refresh_grace: the interval must be longer.
    let text = with("\"2m\"").replace(
        "login_timeout = \"10m\"",
        "login_timeout = \"10m\"\nrefresh_grace = \"2m\"",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("session.revalidate_every") && err.contains("refresh_grace"),
        "{err}"
    );
}

#[test]
fn check_config_names_the_line_of_a_bad_interval() {
    let text = with("\"10s\"");
    let report = check_text(Path::new("sealgate.toml"), &text, &env, &[]);
    assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
    let line = text
        .lines()
        .position(|l| l.starts_with("revalidate_every"))
        .unwrap()
        + 1;
    assert_eq!(
        report.errors[0].place,
        super::super::Place::Line(line),
        "{}",
        report.errors[0]
    );
}

#[test]
fn without_offline_access_check_config_warns_that_revalidation_needs_refresh_tokens() {
    // The example asks for offline_access: no warning.
    assert!(revalidate_warnings(&with("\"5m\"")).is_empty());
    let text = with("\"5m\"").replace(", \"offline_access\"", "");
    let w = revalidate_warnings(&text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("refresh tokens"), "{w:?}");
}
