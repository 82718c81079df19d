//! `[oidc] auth_params`, `token_params`, `login_params` and `par`: defaults, values, and every
//! refusal named by its key and line.

use std::path::Path;

use super::super::check::check_text;
use super::super::settings::ParMode;
use super::super::{Place, Settings};
use super::{EXAMPLE, env};

fn with_oidc(lines: &str) -> String {
    EXAMPLE.replace("[oidc]", &format!("[oidc]\n{lines}"))
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

#[test]
fn defaults() {
    let s = Settings::from_toml(EXAMPLE, &env).unwrap();
    assert!(s.oidc().auth_params.is_empty());
    assert!(s.oidc().token_params.is_empty());
    assert_eq!(
        s.oidc().login_params,
        [
            "prompt",
            "login_hint",
            "acr_values",
            "max_age",
            "ui_locales"
        ]
    );
    assert_eq!(s.oidc().par, ParMode::Auto);
}

#[test]
fn parameters_and_par_are_read() {
    let text = with_oidc(
        r#"auth_params = { audience = "https://api.example.com", access_type = "offline" }
token_params = { resource = "urn:api" }
login_params = ["prompt", "kc_idp_hint"]
par = "always""#,
    );
    let s = Settings::from_toml(&text, &env).unwrap();
    assert_eq!(
        s.oidc().auth_params,
        [
            ("access_type".to_owned(), "offline".to_owned()),
            ("audience".to_owned(), "https://api.example.com".to_owned()),
        ]
    );
    assert_eq!(
        s.oidc().token_params,
        [("resource".to_owned(), "urn:api".to_owned())]
    );
    assert_eq!(s.oidc().login_params, ["prompt", "kc_idp_hint"]);
    assert_eq!(s.oidc().par, ParMode::Always);
    let s = Settings::from_toml(&with_oidc("login_params = []\npar = \"never\""), &env).unwrap();
    assert!(s.oidc().login_params.is_empty());
    assert_eq!(s.oidc().par, ParMode::Never);
}

#[test]
fn owned_names_are_refused_with_their_key_and_line() {
    for (lines, key, at) in [
        (
            r#"auth_params = { state = "x" }"#,
            "oidc.auth_params.state",
            "auth_params",
        ),
        (
            r#"auth_params = { State = "x" }"#,
            "oidc.auth_params.State",
            "auth_params",
        ),
        (
            "[oidc.auth_params]\nredirect_uri = \"https://evil.example\"",
            "oidc.auth_params.redirect_uri",
            "redirect_uri",
        ),
        (
            "[oidc.auth_params]\ncode_challenge_method = \"plain\"",
            "oidc.auth_params.code_challenge_method",
            "code_challenge_method",
        ),
        (
            r#"token_params = { client_assertion_type = "x" }"#,
            "oidc.token_params.client_assertion_type",
            "token_params",
        ),
        (
            r#"token_params = { grant_type = "x" }"#,
            "oidc.token_params.grant_type",
            "token_params",
        ),
        (
            r#"token_params = { CODE_VERIFIER = "x" }"#,
            "oidc.token_params.CODE_VERIFIER",
            "token_params",
        ),
        (
            r#"auth_params = { "" = "x" }"#,
            r#"oidc.auth_params."""#,
            "auth_params",
        ),
        (
            r#"auth_params = { "a b" = "x" }"#,
            r#"oidc.auth_params."a b""#,
            "auth_params",
        ),
        (
            r#"auth_params = { max_age = "soon" }"#,
            "oidc.auth_params.max_age",
            "auth_params",
        ),
        (
            r#"auth_params = { prompt = "none login" }"#,
            "oidc.auth_params.prompt",
            "auth_params",
        ),
        (
            r#"login_params = ["prompt", "nonce"]"#,
            "oidc.login_params[1]",
            "login_params",
        ),
        (
            r#"login_params = ["Scope"]"#,
            "oidc.login_params[0]",
            "login_params",
        ),
        (
            r#"login_params = ["returnUrl"]"#,
            "oidc.login_params[0]",
            "login_params",
        ),
        (
            r#"login_params = ["prompt", "prompt"]"#,
            "oidc.login_params[1]",
            "login_params",
        ),
        (
            r#"login_params = [""]"#,
            "oidc.login_params[0]",
            "login_params",
        ),
        (r#"par = "sometimes""#, "oidc.par", "par ="),
    ] {
        // The refused parameter goes into its own table when `lines` opens one.
        let text = if lines.starts_with('[') {
            EXAMPLE.replace("[session]", &format!("{lines}\n[session]"))
        } else {
            with_oidc(lines)
        };
        let found = errors(&text);
        assert_eq!(found.len(), 1, "{lines}: {found:?}");
        let (message, place) = &found[0];
        assert!(message.contains(key), "{key}: {message}");
        assert_eq!(*place, line(&text, at), "{lines}: {message}");
        // `serve` refuses the same file, naming the same key.
        let first = Settings::from_toml(&text, &env).unwrap_err().to_string();
        assert!(first.contains(key), "{first}");
    }
}

#[test]
fn values_are_strings_and_never_quoted_in_errors() {
    let found = errors(&with_oidc(r#"auth_params = { resource = 5 }"#));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.contains("auth_params"), "{found:?}");
    let found = errors(&with_oidc(r#"auth_params = { client_secret = "hunter2" }"#));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!found[0].0.contains("hunter2"), "{found:?}");
}

#[test]
fn a_whole_table_can_come_from_the_environment() {
    let vars = vec![(
        "SEALGATE__OIDC__TOKEN_PARAMS".to_owned(),
        r#"{ resource = "urn:api" }"#.to_owned(),
    )];
    let s = Settings::from_toml_with_overrides(EXAMPLE, &env, &vars).unwrap();
    assert_eq!(
        s.oidc().token_params,
        [("resource".to_owned(), "urn:api".to_owned())]
    );
}

#[test]
fn logout_params_and_end_session_endpoint_are_read_and_owned_names_refused() {
    let s = Settings::from_toml(EXAMPLE, &env).unwrap();
    assert!(s.oidc().logout_params.is_empty());
    assert!(s.oidc().end_session_endpoint.is_none());
    let text = with_oidc(
        "logout_params = { logout_uri = \"https://app.example.com/\" }\n\
         end_session_endpoint = \"https://auth.example.com/logout\"",
    );
    let s = Settings::from_toml(&text, &env).unwrap();
    assert_eq!(
        s.oidc().logout_params,
        [(
            "logout_uri".to_owned(),
            "https://app.example.com/".to_owned()
        )]
    );
    assert_eq!(
        s.oidc().end_session_endpoint.as_ref().map(url::Url::as_str),
        Some("https://auth.example.com/logout")
    );
    for owned in [
        "id_token_hint",
        "State",
        "client_id",
        "POST_LOGOUT_REDIRECT_URI",
    ] {
        let text = with_oidc(&format!("logout_params = {{ {owned} = \"x\" }}"));
        let found = errors(&text);
        assert!(
            found
                .iter()
                .any(|(e, p)| e.contains(&format!("oidc.logout_params.{owned}"))
                    && *p == line(&text, "logout_params")),
            "{owned}: {found:?}"
        );
    }
    let text = with_oidc("end_session_endpoint = \"http://auth.example.com/logout\"");
    let found = errors(&text);
    assert!(
        found
            .iter()
            .any(|(e, _)| e.contains("oidc.end_session_endpoint")),
        "{found:?}"
    );
}

#[test]
fn revocation_endpoint_is_read_and_must_be_https() {
    let s = Settings::from_toml(EXAMPLE, &env).unwrap();
    assert!(s.oidc().revocation_endpoint.is_none());
    let text = with_oidc("revocation_endpoint = \"https://auth.example.com/o/revoke_token/\"");
    let s = Settings::from_toml(&text, &env).unwrap();
    assert_eq!(
        s.oidc().revocation_endpoint.as_ref().map(url::Url::as_str),
        Some("https://auth.example.com/o/revoke_token/")
    );
    let text = with_oidc("revocation_endpoint = \"http://auth.example.com/o/revoke_token/\"");
    let found = errors(&text);
    assert!(
        found
            .iter()
            .any(|(e, p)| e.contains("oidc.revocation_endpoint")
                && *p == line(&text, "revocation_endpoint")),
        "{found:?}"
    );
}

#[test]
fn provider_is_not_a_login_param() {
    for name in ["provider", "Provider"] {
        let text = with_oidc(&format!("login_params = [\"prompt\", \"{name}\"]"));
        let found = errors(&text);
        assert!(
            found
                .iter()
                .any(|(e, _)| e.contains("oidc.login_params[1]") && e.contains("provider")),
            "{found:?}"
        );
    }
}

#[test]
fn debug_shows_parameter_names_never_their_values() {
    let text = with_oidc(
        "token_params = { api_key = \"s3cr3t-value\" }\n\
         auth_params = { audience = \"https://api.example.com\" }\n\
         logout_params = { logout_uri = \"https://app.example.com/bye\" }",
    );
    let s = Settings::from_toml(&text, &env).unwrap();
    let d = format!("{:?}", s.oidc());
    assert!(d.contains("api_key=<redacted>"), "{d}");
    for value in ["s3cr3t-value", "api.example.com", "/bye"] {
        assert!(!d.contains(value), "{value} in {d}");
    }
}
