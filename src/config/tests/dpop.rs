//! `dpop` in `[oidc]` and in each `[[providers]]` entry.

use super::super::Settings;
use super::{EXAMPLE, env};

#[test]
fn dpop_is_off_unless_asked_for() {
    let s = Settings::from_toml(EXAMPLE, &env).unwrap();
    assert!(!s.oidc().dpop);
    let text = EXAMPLE.replace("[session]", "dpop = true\n[session]");
    let s = Settings::from_toml(&text, &env).unwrap();
    assert!(s.oidc().dpop);
}

#[test]
fn dpop_is_per_provider() {
    let start = EXAMPLE.find("[oidc]").unwrap();
    let end = EXAMPLE.find("[session]").unwrap();
    let providers = r#"[[providers]]
name = "work"
issuer = "https://login.example.com/tenant/v2.0"
client_id = "bff-work"
client_secret = "env:SEALGATE_CLIENT_SECRET"
dpop = true
[[providers]]
name = "customers"
issuer = "https://customers.example.com/"
client_id = "bff-customers"
client_secret = "env:SEALGATE_CLIENT_SECRET"
"#;
    let text = format!("{}{providers}\n{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    let s = Settings::from_toml(&text, &env).unwrap();
    let dpop: Vec<bool> = s.providers.iter().map(|p| p.dpop).collect();
    assert_eq!(dpop, [true, false]);
}

#[test]
fn a_dpop_that_is_not_a_boolean_is_refused_by_name() {
    let text = EXAMPLE.replace("[session]", "dpop = \"yes\"\n[session]");
    let err = Settings::from_toml(&text, &env).unwrap_err().to_string();
    assert!(err.contains("dpop"), "{err}");
}

#[test]
fn check_config_accepts_dpop_and_places_a_bad_one_on_its_line() {
    use std::path::Path;

    use super::super::Place;
    use super::super::check::check_text;
    let check = |text: &str| check_text(Path::new("sealgate.toml"), text, &env, &[]);
    let good = EXAMPLE.replace("[session]", "dpop = true\n[session]");
    let report = check(&good);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let bad = EXAMPLE.replace("[session]", "dpop = 1\n[session]");
    let report = check(&bad);
    assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
    let line = bad.lines().position(|l| l.starts_with("dpop")).unwrap() + 1;
    assert_eq!(
        report.errors[0].place,
        Place::Line(line),
        "{:?}",
        report.errors[0]
    );
}
