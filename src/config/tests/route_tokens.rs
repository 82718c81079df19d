//! `[[routes]]` `resource`, `scopes`, `exchange`, `provider` and the `client` /
//! `user_or_client` token policies, and `[session] route_token_cache`: values, and every
//! refusal named by its key and line.

use std::path::Path;

use super::super::check::check_text;
use super::super::settings::{RouteToken, TokenPolicy};
use super::super::{Place, Settings};
use super::{EXAMPLE, env};

/// EXAMPLE with `lines` added to its one `[[routes]]` entry (the last table), whose
/// `token = "user"` line is replaced by `token`.
fn with_route(token: &str, lines: &str) -> String {
    let text = EXAMPLE.replace("token = \"user\"", &format!("token = \"{token}\""));
    format!("{text}{lines}\n")
}

/// Every error of `check-config`, as `(message, line)`.
fn errors(text: &str) -> Vec<(String, Place)> {
    check_text(Path::new("sealgate.toml"), text, &env, &[])
        .errors
        .iter()
        .map(|p| (p.error.to_string(), p.place.clone()))
        .collect()
}

/// The 1-based line of the last line of `text` starting with `start` (the route is last).
fn line(text: &str, start: &str) -> Place {
    let lines: Vec<&str> = text.lines().collect();
    Place::Line(lines.iter().rposition(|l| l.starts_with(start)).unwrap() + 1)
}

/// Asserts `text` has exactly one problem, about `key`, on the line starting with `at`, whose
/// message contains `says`.
fn refused(text: &str, key: &str, at: &str, says: &str) {
    let found = errors(text);
    assert_eq!(found.len(), 1, "{text}\n{found:?}");
    let (message, place) = &found[0];
    assert!(
        message.starts_with(&format!("config: {key}: ")),
        "{key}: {message}"
    );
    assert!(message.contains(says), "{key}: {message}");
    assert_eq!(*place, line(text, at), "{key}: {message}");
}

fn route_of(text: &str) -> crate::config::RouteSettings {
    let s = Settings::from_toml(text, &env).unwrap_or_else(|e| panic!("{text}\n{e:?}"));
    s.routes.into_iter().next().unwrap()
}

#[test]
fn a_route_sends_the_sessions_token_by_default() {
    let s = Settings::from_toml(EXAMPLE, &env).unwrap();
    let r = &s.routes[0];
    assert_eq!(r.route_token, RouteToken::Default);
    assert_eq!((r.provider.as_deref(), r.index), (None, 0));
    assert_eq!(s.session.route_token_cache, 4096);
}

#[test]
fn every_key_is_read() {
    let r = route_of(&with_route(
        "user",
        "resource = \"api://orders\"\nscopes = [\"orders.read\", \"orders.write\"]",
    ));
    assert_eq!(
        r.route_token,
        RouteToken::Grant {
            resource: Some("api://orders".into()),
            scope: Some("orders.read orders.write".into()),
        }
    );
    let r = route_of(&with_route(
        "optional",
        "scopes = [\"api://billing/.default\"]",
    ));
    assert_eq!(
        r.route_token,
        RouteToken::Grant {
            resource: None,
            scope: Some("api://billing/.default".into()),
        }
    );
    let r = route_of(&with_route(
        "user",
        "exchange = { audience = \"ledger\", resource = \"https://ledger.example/\", scope = \"read write\" }",
    ));
    assert_eq!(
        r.route_token,
        RouteToken::Exchange {
            audience: Some("ledger".into()),
            resource: Some("https://ledger.example/".into()),
            scope: Some("read write".into()),
        }
    );
    let r = route_of(&with_route(
        "user",
        "[routes.exchange]\naudience = \"ledger\"",
    ));
    assert!(matches!(r.route_token, RouteToken::Exchange { .. }));
    let r = route_of(&with_route(
        "client",
        "resource = \"urn:reports\"\nprovider = \"default\"",
    ));
    assert_eq!(r.token, TokenPolicy::Client);
    assert_eq!(r.provider.as_deref(), Some("default"));
    let r = route_of(&with_route("user_or_client", ""));
    assert_eq!(r.token, TokenPolicy::UserOrClient);
    assert_eq!(r.route_token, RouteToken::Default);
    let text = EXAMPLE.replace("[bff]", "route_token_cache = 0\n[bff]");
    let s = Settings::from_toml(&text, &env).unwrap();
    assert_eq!(s.session.route_token_cache, 0);
}

#[test]
fn malformed_values_are_refused_with_their_key_and_line() {
    for (lines, key, at, says) in [
        (
            "resource = \"orders\"",
            "routes[0].resource",
            "resource",
            "absolute URI",
        ),
        (
            "resource = \"https://a.example/#x\"",
            "routes[0].resource",
            "resource",
            "fragment",
        ),
        (
            "resource = \"https://a.example/ b\"",
            "routes[0].resource",
            "resource",
            "spaces",
        ),
        ("scopes = []", "routes[0].scopes", "scopes", "1 to 32"),
        (
            "scopes = [\"a\", \"b c\"]",
            "routes[0].scopes[1]",
            "scopes",
            "no space",
        ),
        (
            "scopes = [\"a\", \"\"]",
            "routes[0].scopes[1]",
            "scopes",
            "1 to 256",
        ),
        (
            "scopes = [\"a\\\"b\"]",
            "routes[0].scopes[0]",
            "scopes",
            "quote",
        ),
        (
            "scopes = [\"a\", \"a\"]",
            "routes[0].scopes[1]",
            "scopes",
            "listed twice",
        ),
        (
            "exchange = {}",
            "routes[0].exchange",
            "exchange",
            "must name an audience",
        ),
        (
            "exchange = { audience = \"\" }",
            "routes[0].exchange.audience",
            "exchange",
            "1 to 2048",
        ),
        (
            "exchange = { resource = \"x\" }",
            "routes[0].exchange.resource",
            "exchange",
            "absolute URI",
        ),
        (
            "exchange = { scope = \"a  b\" }",
            "routes[0].exchange.scope",
            "exchange",
            "single spaces",
        ),
        (
            "exchange = { scope = \"\" }",
            "routes[0].exchange.scope",
            "exchange",
            "single spaces",
        ),
    ] {
        refused(&with_route("user", lines), key, at, says);
    }
    let text = with_route("user", "exchange = { subject_token = \"x\" }");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.contains("subject_token"), "{found:?}");
    let text = EXAMPLE.replace("[bff]", "route_token_cache = 1000001\n[bff]");
    refused(
        &text,
        "session.route_token_cache",
        "route_token_cache",
        "at most",
    );
}

#[test]
fn keys_that_do_not_fit_the_token_policy_are_refused() {
    for (token, lines, key, says) in [
        (
            "none",
            "resource = \"urn:x\"",
            "routes[0].resource",
            "sends no token",
        ),
        (
            "none",
            "scopes = [\"x\"]",
            "routes[0].scopes",
            "sends no token",
        ),
        (
            "none",
            "exchange = { audience = \"x\" }",
            "routes[0].exchange",
            "sends no token",
        ),
        (
            "none",
            "provider = \"default\"",
            "routes[0].provider",
            "sends no token",
        ),
        (
            "user",
            "resource = \"urn:x\"\nexchange = { audience = \"x\" }",
            "routes[0].exchange",
            "not with this route's resource or scopes",
        ),
        (
            "user",
            "exchange = { audience = \"x\" }\nscopes = [\"y\"]",
            "routes[0].exchange",
            "not with this route's resource or scopes",
        ),
        (
            "client",
            "exchange = { audience = \"x\" }",
            "routes[0].exchange",
            "token = \"client\"",
        ),
        (
            "user_or_client",
            "exchange = { audience = \"x\" }",
            "routes[0].exchange",
            "token = \"user_or_client\"",
        ),
        (
            "user",
            "provider = \"default\"",
            "routes[0].provider",
            "only for token = \"client\"",
        ),
        (
            "optional",
            "provider = \"default\"",
            "routes[0].provider",
            "only for token",
        ),
        (
            "client",
            "provider = \"okta\"",
            "routes[0].provider",
            "\"okta\" is not a provider",
        ),
        (
            "client",
            "require_claims = { groups = [\"admins\"] }",
            "routes[0].require_claims",
            "not with token = \"client\"",
        ),
        (
            "client",
            "identity_headers = { \"X-User\" = \"sub\" }",
            "routes[0].identity_headers",
            "not with token = \"client\"",
        ),
        (
            "client",
            "max_auth_age = \"5m\"",
            "routes[0].max_auth_age",
            "not with token = \"client\"",
        ),
    ] {
        let at = key.rsplit('.').next().unwrap();
        refused(&with_route(token, lines), key, at, says);
    }
}

#[test]
fn an_unknown_token_policy_lists_the_new_ones() {
    let text = with_route("app", "");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].0.contains("\"client\" or \"user_or_client\""),
        "{}",
        found[0].0
    );
}

#[test]
fn a_minted_route_token_without_offline_access_is_warned_about() {
    let text = with_route("user", "resource = \"urn:orders\"")
        .replace("\"email\", \"offline_access\"", "\"email\"");
    let report = check_text(Path::new("sealgate.toml"), &text, &env, &[]);
    assert!(report.is_ok(), "{:#?}", report.errors);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("routes[0].resource") && w.contains("offline_access")),
        "{:#?}",
        report.warnings
    );
    // Not for a client route, which has no session.
    let text = with_route("client", "resource = \"urn:orders\"")
        .replace("\"email\", \"offline_access\"", "\"email\"");
    let report = check_text(Path::new("sealgate.toml"), &text, &env, &[]);
    assert!(
        !report.warnings.iter().any(|w| w.contains("offline_access")),
        "{:#?}",
        report.warnings
    );
}
