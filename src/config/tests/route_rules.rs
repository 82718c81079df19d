//! `[[routes]]` step-up (`acr_values`, `max_auth_age`), `require_claims` and
//! `identity_headers`: values, and every refusal named by its key and line.

use std::path::Path;
use std::time::Duration;

use super::super::check::check_text;
use super::super::settings::{ClaimRule, ClaimValue};
use super::super::{Place, Settings};
use super::{EXAMPLE, env};

/// EXAMPLE with `lines` added to its one `[[routes]]` entry (the last table).
fn with_route(lines: &str) -> String {
    format!("{EXAMPLE}{lines}\n")
}

/// Every error of `check-config`, as `(message, line)`.
fn errors(text: &str) -> Vec<(String, Place)> {
    check_text(Path::new("sealgate.toml"), text, &env, &[])
        .errors
        .iter()
        .map(|p| (p.error.to_string(), p.place.clone()))
        .collect()
}

/// The 1-based line of the first line of `text` starting with `start`.
fn line(text: &str, start: &str) -> Place {
    Place::Line(text.lines().position(|l| l.starts_with(start)).unwrap() + 1)
}

/// Asserts `text` has exactly one problem, about `key`, on the line starting with `at`.
fn refused(text: &str, key: &str, at: &str) {
    let found = errors(text);
    assert_eq!(found.len(), 1, "{text}\n{found:?}");
    let (message, place) = &found[0];
    assert!(
        message.starts_with(&format!("config: {key}: ")),
        "{key}: {message}"
    );
    assert_eq!(*place, line(text, at), "{key}: {message}");
}

#[test]
fn no_rules_by_default() {
    let s = Settings::from_toml(EXAMPLE, &env).unwrap();
    let r = &s.routes[0].rules;
    assert!(!r.step_up() && !r.needs_session());
    assert!(r.identity_headers.is_empty());
}

#[test]
fn every_key_is_read() {
    let text = with_route(
        r#"acr_values = ["urn:example:mfa", "gold"]
max_auth_age = "10m"
require_claims = { groups = ["admins", "ops"], email_verified = true, tenant = "acme", level = 3, ratio = 0.5 }
identity_headers = { "X-User" = "sub", "X-Email" = "email", "x-auth-request-groups" = "groups" }"#,
    );
    let s = Settings::from_toml(&text, &env).unwrap();
    let r = &s.routes[0].rules;
    assert_eq!(r.acr_values, ["urn:example:mfa", "gold"]);
    assert_eq!(r.max_auth_age, Some(Duration::from_secs(600)));
    assert_eq!(
        r.require_claims,
        [
            (
                "email_verified".to_owned(),
                ClaimRule::Equals(ClaimValue::Bool(true))
            ),
            (
                "groups".to_owned(),
                ClaimRule::AnyOf(vec!["admins".into(), "ops".into()])
            ),
            (
                "level".to_owned(),
                ClaimRule::Equals(ClaimValue::Integer(3))
            ),
            (
                "ratio".to_owned(),
                ClaimRule::Equals(ClaimValue::Float(0.5))
            ),
            (
                "tenant".to_owned(),
                ClaimRule::Equals(ClaimValue::Text("acme".into()))
            ),
        ]
    );
    let headers: Vec<(&str, &str)> = r
        .identity_headers
        .iter()
        .map(|(h, c)| (h.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("x-email", "email"),
            ("x-user", "sub"),
            ("x-auth-request-groups", "groups")
        ]
    );
    assert!(r.step_up() && r.needs_session());
}

#[test]
fn rules_read_from_sub_tables_too() {
    let text = with_route(
        "[routes.require_claims]\n\"https://example.com/roles\" = [\"admin\"]\n\
         [routes.identity_headers]\nRemote-User = \"preferred_username\"",
    );
    let s = Settings::from_toml(&text, &env).unwrap();
    let r = &s.routes[0].rules;
    assert_eq!(r.require_claims[0].0, "https://example.com/roles");
    assert_eq!(r.identity_headers[0].0.as_str(), "remote-user");
    assert!(!r.step_up());
    assert!(r.needs_session());
}

#[test]
fn step_up_values_are_refused_with_their_key_and_line() {
    for (lines, key, at) in [
        ("acr_values = []", "routes[0].acr_values", "acr_values"),
        (
            r#"acr_values = ["gold", "a b"]"#,
            "routes[0].acr_values[1]",
            "acr_values",
        ),
        (
            r#"acr_values = ["é"]"#,
            "routes[0].acr_values[0]",
            "acr_values",
        ),
        (
            r#"acr_values = [""]"#,
            "routes[0].acr_values[0]",
            "acr_values",
        ),
        (
            "acr_values = [\n\"ok\",\n\"a\\\"b\"\n]",
            "routes[0].acr_values[1]",
            "\"a",
        ),
        (
            &format!("acr_values = [{}]", vec!["\"a\""; 17].join(", ")),
            "routes[0].acr_values",
            "acr_values",
        ),
        (
            r#"max_auth_age = "soon""#,
            "routes[0].max_auth_age",
            "max_auth_age",
        ),
        (
            r#"max_auth_age = "0s""#,
            "routes[0].max_auth_age",
            "max_auth_age",
        ),
        (
            r#"max_auth_age = "500ms""#,
            "routes[0].max_auth_age",
            "max_auth_age",
        ),
        (
            r#"max_auth_age = "400years""#,
            "routes[0].max_auth_age",
            "max_auth_age",
        ),
    ] {
        refused(&with_route(lines), key, at);
    }
}

#[test]
fn claim_rules_are_refused_with_their_key_and_line() {
    for (lines, key) in [
        (
            "require_claims = { groups = [] }",
            "routes[0].require_claims.groups",
        ),
        (
            "require_claims = { groups = [1, 2] }",
            "routes[0].require_claims.groups",
        ),
        (
            "require_claims = { groups = [\"a\", true] }",
            "routes[0].require_claims.groups",
        ),
        (
            "require_claims = { org = { id = 1 } }",
            "routes[0].require_claims.org",
        ),
        (
            "require_claims = { realm_access.roles = [\"admin\"] }",
            "routes[0].require_claims.realm_access",
        ),
        (
            "require_claims = { level = nan }",
            "routes[0].require_claims.level",
        ),
        (
            "require_claims = { level = inf }",
            "routes[0].require_claims.level",
        ),
        (
            "require_claims = { updated = 1979-05-27T07:32:00Z }",
            "routes[0].require_claims.updated",
        ),
        (
            r#"require_claims = { "" = "x" }"#,
            r#"routes[0].require_claims."""#,
        ),
    ] {
        refused(&with_route(lines), key, "require_claims");
    }
}

#[test]
fn identity_headers_are_refused_with_their_key_and_line() {
    for (name, why) in [
        ("X-Forwarded-For", "forwarding header"),
        ("X-Forwarded-User", "forwarding header"),
        ("Forwarded", "forwarding header"),
        ("X-Real-IP", "forwarding header"),
        ("Authorization", "manages"),
        ("Proxy-Authorization", "hop-by-hop"),
        ("Cookie", "manages"),
        ("Host", "manages"),
        ("Content-Length", "manages"),
        ("Transfer-Encoding", "hop-by-hop"),
        ("Connection", "hop-by-hop"),
        ("TE", "hop-by-hop"),
        ("Upgrade", "hop-by-hop"),
        ("X-Request-Id", "manages"),
        ("Sec-WebSocket-Protocol", "manages"),
        ("X User", "not a valid header name"),
        ("X-Üser", "not a valid header name"),
        ("", "not a valid header name"),
    ] {
        let text = with_route(&format!(r#"identity_headers = {{ "{name}" = "sub" }}"#));
        let found = errors(&text);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        let key = if name.is_empty() || name.contains([' ', 'Ü']) {
            format!("routes[0].identity_headers.{name:?}")
        } else {
            format!("routes[0].identity_headers.{name}")
        };
        let (message, place) = &found[0];
        assert!(
            message.starts_with(&format!("config: {key}: ")),
            "{message}"
        );
        assert!(message.contains(why), "{name}: {message}");
        assert_eq!(*place, line(&text, "identity_headers"), "{name}");
    }
    refused(
        &with_route(r#"identity_headers = { "X-User" = "sub", "x-user" = "email" }"#),
        "routes[0].identity_headers.x-user",
        "identity_headers",
    );
    refused(
        &with_route(r#"identity_headers = { "X-User" = "" }"#),
        "routes[0].identity_headers.X-User",
        "identity_headers",
    );
}

#[test]
fn rules_need_a_user_and_the_id_token() {
    for key in [
        "acr_values = [\"gold\"]",
        "max_auth_age = \"5m\"",
        "require_claims = { groups = [\"admins\"] }",
        "identity_headers = { \"X-User\" = \"sub\" }",
    ] {
        let name = key.split(' ').next().unwrap();
        let text = with_route(key).replace("token = \"user\"", "token = \"none\"");
        refused(&text, &format!("routes[0].{name}"), name);
        let found = errors(&text);
        assert!(found[0].0.contains("token = \"none\""), "{found:?}");

        let text = with_route(key).replace("[session]", "[session]\nstore_id_token = false");
        refused(&text, &format!("routes[0].{name}"), name);
        let found = errors(&text);
        assert!(found[0].0.contains("session.store_id_token"), "{found:?}");

        let optional = with_route(key).replace("token = \"user\"", "token = \"optional\"");
        assert!(Settings::from_toml(&optional, &env).is_ok(), "{key}");
    }
}

#[test]
fn step_up_needs_every_provider_to_pass_its_parameters_on() {
    let text = with_route("acr_values = [\"gold\"]\nmax_auth_age = \"5m\"")
        .replace("[oidc]", "[oidc]\nlogin_params = [\"prompt\", \"max_age\"]");
    refused(&text, "routes[0].acr_values", "acr_values");
    let found = errors(&text);
    assert!(found[0].0.contains("oidc.login_params"), "{found:?}");

    let text = with_route("max_auth_age = \"5m\"")
        .replace("[oidc]", "[oidc]\nlogin_params = [\"acr_values\"]");
    refused(&text, "routes[0].max_auth_age", "max_auth_age");

    // With [[providers]], each one's login_params is named.
    let base = with_route("acr_values = [\"gold\"]");
    let (start, end) = (
        base.find("[oidc]").unwrap(),
        base.find("[session]").unwrap(),
    );
    let providers = r#"[[providers]]
name = "work"
issuer = "https://login.example.com/tenant/v2.0"
client_id = "bff-work"
client_secret = "env:SEALGATE_CLIENT_SECRET"
[[providers]]
name = "customers"
issuer = "https://customers.example.com/"
client_id = "bff-customers"
client_secret = "env:SEALGATE_CLIENT_SECRET"
login_params = ["prompt"]
"#;
    let text = format!("{}{providers}{}", &base[..start], &base[end..]);
    refused(&text, "routes[0].acr_values", "acr_values");
    let found = errors(&text);
    assert!(
        found[0].0.contains("providers[1].login_params"),
        "{found:?}"
    );
}

#[test]
fn check_config_reports_every_rule_problem_each_with_its_line() {
    let text = with_route(
        r#"acr_values = ["a b"]
max_auth_age = "never"
require_claims = { groups = [] }
identity_headers = { "Cookie" = "sub" }"#,
    );
    let found = errors(&text);
    let keys: Vec<(&str, Place)> = found
        .iter()
        .map(|(m, p)| (m.split(": ").nth(1).unwrap(), p.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            ("routes[0].acr_values[0]", line(&text, "acr_values")),
            ("routes[0].max_auth_age", line(&text, "max_auth_age")),
            (
                "routes[0].require_claims.groups",
                line(&text, "require_claims")
            ),
            (
                "routes[0].identity_headers.Cookie",
                line(&text, "identity_headers")
            ),
        ]
    );
}

#[test]
fn a_misspelt_rule_key_is_named() {
    let text = with_route("require_claim = { groups = [\"admins\"] }");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.contains("require_claim"), "{found:?}");
    assert_eq!(found[0].1, line(&text, "require_claim"));
}
