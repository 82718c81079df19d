//! A route's rules about the signed-in user, applied to the session's ID token claims (pure):
//! claim rules (403 when one fails), step-up (401 with what to log in with), and the identity
//! headers the upstream gets (403 when a claim cannot be sent as it is).
//!
//! Claim values never reach a response body or the log: they may be personal data. The log
//! names the claim and why it failed.

use http::header::REFERER;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::config::{ClaimRule, ClaimValue, RouteRules, Settings};
use crate::error::StepUp;
use crate::oidc::{check_auth_time, numeric_date};
use crate::return_url::ReturnUrl;

/// Longest identity header value sent (bytes): a claim beyond it is refused, not cut.
pub(crate) const MAX_IDENTITY_VALUE: usize = 4096;

/// Why the rules refuse a request (for the log: claim names, never values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A claim rule failed, or an identity header's claim cannot be sent: 403.
    Denied(String),
    /// The login is not strong or recent enough: 401 with a step-up challenge.
    StepUp(String),
}

/// Checks `claims` against `rules` at `now` (`skew`: the provider's tolerated clock
/// difference, applied to `auth_time` as the callback applies it to a login's `max_age`), and
/// returns the identity headers to send.
///
/// # Errors
/// The first rule that fails: claim rules, then step-up, then identity headers.
pub(super) fn apply(
    rules: &RouteRules,
    claims: &Map<String, Value>,
    now: i64,
    skew: i64,
) -> Result<Vec<(HeaderName, HeaderValue)>, Refusal> {
    for (name, rule) in &rules.require_claims {
        match claims.get(name) {
            None => return Err(Refusal::Denied(format!("claim {name:?} is missing"))),
            Some(value) if !holds(rule, value) => {
                return Err(Refusal::Denied(format!(
                    "claim {name:?} does not satisfy require_claims"
                )));
            }
            Some(_) => {}
        }
    }
    if !rules.acr_values.is_empty() {
        let acr = claims.get("acr").and_then(Value::as_str);
        if !acr.is_some_and(|acr| rules.acr_values.iter().any(|a| a == acr)) {
            let why = if acr.is_some() {
                "acr is not one of the route's acr_values"
            } else {
                "no acr claim"
            };
            return Err(Refusal::StepUp(why.into()));
        }
    }
    if let Some(max) = rules.max_auth_age {
        let auth_time = claims.get("auth_time").and_then(numeric_date);
        check_auth_time(auth_time, max.as_secs(), now, skew)
            .map_err(|why| Refusal::StepUp(why.replace("requested max_age", "max_auth_age")))?;
    }
    rules
        .identity_headers
        .iter()
        .filter_map(|(header, claim)| claims.get(claim).map(|v| (header, claim, v)))
        .map(|(header, claim, value)| {
            let value = header_value(value).map_err(|why| {
                Refusal::Denied(format!("identity header {header}: claim {claim:?} {why}"))
            })?;
            Ok((header.clone(), value))
        })
        .collect()
}

/// Whether `value` satisfies `rule`: equal (same JSON type; numbers by value), or for a list,
/// a string claim equal to one entry or an array claim holding one entry.
fn holds(rule: &ClaimRule, value: &Value) -> bool {
    match rule {
        ClaimRule::Equals(ClaimValue::Text(t)) => value.as_str() == Some(t.as_str()),
        ClaimRule::Equals(ClaimValue::Bool(b)) => value.as_bool() == Some(*b),
        ClaimRule::Equals(ClaimValue::Integer(i)) => {
            value.as_i64() == Some(*i)
                || (value.is_f64() && value.as_f64().is_some_and(|f| same_number(f, *i)))
        }
        ClaimRule::Equals(ClaimValue::Float(f)) => value.as_f64() == Some(*f),
        ClaimRule::AnyOf(list) => match value {
            Value::String(s) => list.contains(s),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .any(|s| list.iter().any(|l| l == s)),
            _ => false,
        },
    }
}

/// Whether float `f` is exactly the integer `i` (`5.0` and `5`).
fn same_number(f: f64, i: i64) -> bool {
    #[allow(
        clippy::cast_precision_loss,
        reason = "compared only after checking the float is integral; a large i64 that rounds \
                  is compared back exactly below"
    )]
    let as_float = i as f64;
    #[allow(
        clippy::cast_possible_truncation,
        reason = "as_float is within i64 range (it came from one)"
    )]
    let back = as_float as i64;
    f == as_float && back == i
}

/// The header value for a claim: a string sent byte for byte (UTF-8 as it is), a number or a
/// boolean as JSON writes it. Refused (never altered): any other type; a string with a
/// control character (CR, LF, tab, …), a zero-width or bidirectional formatting character, or
/// leading or trailing whitespace (HTTP would strip it); more than [`MAX_IDENTITY_VALUE`]
/// bytes.
///
/// # Errors
/// Why the claim cannot be sent, without its value.
pub(crate) fn header_value(claim: &Value) -> Result<HeaderValue, &'static str> {
    let text = match claim {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => {
            return Err("is not a string, number or boolean");
        }
    };
    if text.len() > MAX_IDENTITY_VALUE {
        return Err("is too long for a header");
    }
    if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        return Err("has leading or trailing whitespace");
    }
    if !text.chars().all(header_safe_char) {
        return Err("has a character that is not header-safe");
    }
    let mut value =
        HeaderValue::from_bytes(text.as_bytes()).map_err(|_| "is not a header value")?;
    // Personal data: never kept in an HTTP/2 compression table.
    value.set_sensitive(true);
    Ok(value)
}

/// Visible characters and the space: no control (C0, DEL, C1), and none of the invisible
/// formatting characters that make a value read differently from what it is.
fn header_safe_char(c: char) -> bool {
    !c.is_control()
        && !matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// What a step-up answer tells the SPA: the route's `acr_values` and `max_auth_age` (as
/// `max_age`), and a `/bff/login` link with them, the session's provider (`provider`, its
/// `[[providers]]` name; empty for a lone `[oidc]`) and `return_url` when one is known.
pub(super) fn step_up(
    rules: &RouteRules,
    bff_prefix: &str,
    provider: &str,
    return_url: Option<&str>,
) -> StepUp {
    let acr_values = (!rules.acr_values.is_empty()).then(|| rules.acr_values.join(" "));
    let max_age = rules.max_auth_age.map(|d| d.as_secs());
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(acr) = &acr_values {
        query.append_pair("acr_values", acr);
    }
    if let Some(age) = max_age {
        query.append_pair("max_age", &age.to_string());
    }
    if !provider.is_empty() {
        query.append_pair("provider", provider);
    }
    if let Some(back) = return_url {
        query.append_pair("returnUrl", back);
    }
    StepUp {
        acr_values,
        max_age,
        login_url: format!("{bff_prefix}/login?{}", query.finish()),
    }
}

/// The page the API call came from, as a return URL: the `Referer` (browsers send the page's
/// URL with same-origin calls), when it is on `server.public_url`'s origin and a return URL
/// `/bff/login` accepts (a local path, not under `bff.prefix`). `None` otherwise.
pub(super) fn referer_return_url(settings: &Settings, headers: &HeaderMap) -> Option<String> {
    let referer = url::Url::parse(headers.get(REFERER)?.to_str().ok()?).ok()?;
    if referer.origin() != settings.server.public_url.origin() {
        return None;
    }
    let mut local = referer.path().to_owned();
    if let Some(q) = referer.query() {
        local.push('?');
        local.push_str(q);
    }
    let back = ReturnUrl::parse(&local).ok()?;
    (!back.is_under(&settings.bff.prefix)).then(|| back.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn rules_with(claims: &[(&str, ClaimRule)]) -> RouteRules {
        RouteRules {
            require_claims: claims
                .iter()
                .map(|(n, r)| ((*n).to_owned(), r.clone()))
                .collect(),
            ..RouteRules::default()
        }
    }

    #[test]
    fn equal_values_hold_with_their_json_type() {
        let c = claims(json!({
            "email_verified": true, "tenant": "acme", "level": 3, "ratio": 0.5, "five": 5.0,
            "text_bool": "true"
        }));
        let ok = |name: &str, v: ClaimValue| {
            apply(&rules_with(&[(name, ClaimRule::Equals(v))]), &c, 0, 0).is_ok()
        };
        assert!(ok("email_verified", ClaimValue::Bool(true)));
        assert!(!ok("email_verified", ClaimValue::Bool(false)));
        assert!(ok("tenant", ClaimValue::Text("acme".into())));
        assert!(!ok("tenant", ClaimValue::Text("Acme".into())));
        assert!(ok("level", ClaimValue::Integer(3)));
        assert!(!ok("level", ClaimValue::Integer(4)));
        assert!(ok("five", ClaimValue::Integer(5)), "5.0 is 5");
        assert!(ok("ratio", ClaimValue::Float(0.5)));
        assert!(
            !ok("text_bool", ClaimValue::Bool(true)),
            "\"true\" is not true"
        );
        assert!(!ok("missing", ClaimValue::Bool(true)));
    }

    #[test]
    fn a_list_needs_the_claim_to_hold_one_of_its_values() {
        let rule = ClaimRule::AnyOf(vec!["admins".into(), "ops".into()]);
        let rules = rules_with(&[("groups", rule)]);
        for ok in [
            json!({"groups": ["users", "ops"]}),
            json!({"groups": "admins"}),
            json!({"groups": [1, "admins"]}),
        ] {
            assert_eq!(apply(&rules, &claims(ok.clone()), 0, 0), Ok(vec![]), "{ok}");
        }
        for refused in [
            json!({"groups": ["users"]}),
            json!({"groups": []}),
            json!({"groups": "admin"}),
            json!({"groups": {"admins": true}}),
            json!({"groups": null}),
            json!({}),
        ] {
            assert!(
                matches!(
                    apply(&rules, &claims(refused.clone()), 0, 0),
                    Err(Refusal::Denied(_))
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn refusals_name_the_claim_never_its_value() {
        let rules = rules_with(&[(
            "email",
            ClaimRule::Equals(ClaimValue::Text("boss@example.test".into())),
        )]);
        let r = apply(&rules, &claims(json!({"email": "jane@example.test"})), 0, 0);
        let Err(Refusal::Denied(why)) = r else {
            panic!("{r:?}")
        };
        assert!(why.contains("\"email\""), "{why}");
        assert!(!why.contains("jane") && !why.contains("boss"), "{why}");
    }

    #[test]
    fn step_up_checks_acr_then_auth_time() {
        let rules = RouteRules {
            acr_values: vec!["urn:mfa".into(), "gold".into()],
            max_auth_age: Some(Duration::from_secs(600)),
            ..RouteRules::default()
        };
        let now = 10_000;
        let at = |acr: Value, auth_time: Value| {
            apply(
                &rules,
                &claims(json!({"acr": acr, "auth_time": auth_time})),
                now,
                0,
            )
        };
        assert_eq!(at(json!("gold"), json!(now - 600)), Ok(vec![]));
        assert!(matches!(
            at(json!("gold"), json!(now - 601)),
            Err(Refusal::StepUp(_))
        ));
        assert!(matches!(
            at(json!("silver"), json!(now)),
            Err(Refusal::StepUp(_))
        ));
        assert!(matches!(
            at(json!(["gold"]), json!(now)),
            Err(Refusal::StepUp(_))
        ));
        assert!(matches!(
            at(json!("gold"), json!("9999")),
            Err(Refusal::StepUp(_))
        ));
        assert!(matches!(
            apply(&rules, &claims(json!({"acr": "gold"})), now, 0),
            Err(Refusal::StepUp(_))
        ));
        // The provider's clock skew, as the callback applies it to a login's max_age.
        let skewed = apply(
            &rules,
            &claims(json!({"acr": "gold", "auth_time": now - 660})),
            now,
            60,
        );
        assert_eq!(skewed, Ok(vec![]));
        assert!(matches!(
            apply(
                &rules,
                &claims(json!({"acr": "gold", "auth_time": now + 61})),
                now,
                60
            ),
            Err(Refusal::StepUp(_))
        ));
    }

    #[test]
    fn claim_rules_come_before_step_up() {
        let rules = RouteRules {
            acr_values: vec!["gold".into()],
            ..rules_with(&[("groups", ClaimRule::AnyOf(vec!["admins".into()]))])
        };
        assert!(matches!(
            apply(&rules, &claims(json!({"groups": "users"})), 0, 0),
            Err(Refusal::Denied(_))
        ));
    }

    #[test]
    fn identity_headers_carry_scalar_claims_and_skip_missing_ones() {
        let rules = RouteRules {
            identity_headers: vec![
                (HeaderName::from_static("x-user"), "sub".into()),
                (HeaderName::from_static("x-name"), "name".into()),
                (
                    HeaderName::from_static("x-verified"),
                    "email_verified".into(),
                ),
                (HeaderName::from_static("x-level"), "level".into()),
                (HeaderName::from_static("x-missing"), "nickname".into()),
            ],
            ..RouteRules::default()
        };
        let c = claims(json!({
            "sub": "alice", "name": "José Müller", "email_verified": true, "level": 3
        }));
        let sent = apply(&rules, &c, 0, 0).unwrap();
        let shown: Vec<(&str, &[u8])> = sent
            .iter()
            .map(|(h, v)| (h.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(
            shown,
            [
                ("x-user", &b"alice"[..]),
                ("x-name", "José Müller".as_bytes()),
                ("x-verified", b"true"),
                ("x-level", b"3"),
            ]
        );
        assert!(sent.iter().all(|(_, v)| v.is_sensitive()));
    }

    #[test]
    fn unsafe_claim_values_are_refused_not_mangled() {
        for bad in [
            json!("alice\r\nX-Admin: yes"),
            json!("a\nb"),
            json!("a\tb"),
            json!("a\u{0}b"),
            json!("a\u{7f}b"),
            json!("a\u{85}b"),
            json!("a\u{202E}b"),
            json!("a\u{200B}b"),
            json!(" alice"),
            json!("alice "),
            json!("x".repeat(MAX_IDENTITY_VALUE + 1)),
            json!(["alice"]),
            json!({"a": 1}),
            json!(null),
        ] {
            assert!(header_value(&bad).is_err(), "{bad}");
        }
        assert!(header_value(&json!("")).is_ok());
        assert!(header_value(&json!("x".repeat(MAX_IDENTITY_VALUE))).is_ok());
    }

    #[test]
    fn a_step_up_link_carries_the_route_values_provider_and_return_url() {
        let rules = RouteRules {
            acr_values: vec!["urn:mfa".into(), "gold".into()],
            max_auth_age: Some(Duration::from_secs(300)),
            ..RouteRules::default()
        };
        let s = step_up(&rules, "/bff", "work", Some("/orders?id=1&x=y"));
        assert_eq!(s.acr_values.as_deref(), Some("urn:mfa gold"));
        assert_eq!(s.max_age, Some(300));
        assert_eq!(
            s.login_url,
            "/bff/login?acr_values=urn%3Amfa+gold&max_age=300&provider=work&returnUrl=%2Forders%3Fid%3D1%26x%3Dy"
        );
        let only_age = RouteRules {
            max_auth_age: Some(Duration::from_secs(60)),
            ..RouteRules::default()
        };
        let s = step_up(&only_age, "/auth", "", None);
        assert_eq!((s.acr_values, s.max_age), (None, Some(60)));
        assert_eq!(s.login_url, "/auth/login?max_age=60");
    }

    proptest! {
        /// Whatever the claim string, it is sent exactly as it is, or refused; what is sent
        /// never holds a control character (CR and LF included) and survives HTTP's
        /// whitespace trimming.
        #[test]
        fn identity_values_are_sent_exactly_or_refused(
            s in prop_oneof![any::<String>(), "[ -~\\t\\r\\n\\x00\\x7f\\u{85}\\u{a0}\\u{202e}]{0,40}"]
        ) {
            if let Ok(v) = header_value(&Value::String(s.clone())) {
                prop_assert_eq!(v.as_bytes(), s.as_bytes());
                prop_assert!(!s.chars().any(char::is_control));
                prop_assert!(!s.contains(['\r', '\n']));
                prop_assert_eq!(s.trim(), s.as_str());
            }
        }
    }
}
