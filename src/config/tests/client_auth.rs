//! `[oidc]` client authentication: the secret methods and `private_key_jwt`, the key read from
//! `env:` or `file:` and parsed at load, and every credential a method does not use refused.

use std::path::Path;

use super::super::check::check_text;
use super::super::settings::{AssertionAudience, ClientAssertion, TokenEndpointAuth};
use super::super::{ConfigError, Settings};
use super::{EXAMPLE, client_secret, env, parse};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/keys");
const SECRET_LINE: &str = "client_secret = \"env:SEALGATE_CLIENT_SECRET\"\n";

fn key_path(name: &str) -> String {
    format!("{KEYS}/{name}")
}

/// The example with its `client_secret` line replaced by `lines`.
fn with_auth(lines: &str) -> String {
    assert!(EXAMPLE.contains(SECRET_LINE));
    EXAMPLE.replace(SECRET_LINE, &format!("{lines}\n"))
}

fn jwt_config(key: &str, extra: &str) -> String {
    with_auth(&format!(
        "token_endpoint_auth = \"private_key_jwt\"\nclient_assertion_key = \"{key}\"\n{extra}"
    ))
}

fn assertion(s: &Settings) -> &ClientAssertion {
    match &s.oidc().token_endpoint_auth {
        TokenEndpointAuth::PrivateKeyJwt(a) => a,
        other => panic!("not private_key_jwt: {}", other.name()),
    }
}

fn refused(text: &str) -> String {
    let err: ConfigError = parse(text).unwrap_err();
    err.to_string()
}

#[test]
fn client_secret_basic_is_the_default_and_post_keeps_the_secret() {
    let s = parse(EXAMPLE).unwrap();
    assert_eq!(s.oidc().token_endpoint_auth.name(), "client_secret_basic");
    let text = EXAMPLE.replace(
        SECRET_LINE,
        &format!("{SECRET_LINE}token_endpoint_auth = \"client_secret_post\"\n"),
    );
    let s = parse(&text).unwrap();
    assert!(matches!(
        s.oidc().token_endpoint_auth,
        TokenEndpointAuth::Post(_)
    ));
    assert_eq!(client_secret(&s), "s3cret");
}

#[test]
fn private_key_jwt_reads_the_key_from_a_file_with_defaults() {
    for (file, alg) in [
        ("client_rsa.pem", "RS256"),
        ("client_rsa_pkcs1.pem", "RS256"),
        ("client_ec256.pem", "ES256"),
        ("client_ec384.pem", "ES384"),
    ] {
        let s = parse(&jwt_config(&format!("file:{}", key_path(file)), "")).unwrap();
        let a = assertion(&s);
        assert_eq!(a.key.alg().name(), alg, "{file}");
        assert_eq!(a.key.kid(), None, "no kid unless configured");
        assert_eq!(
            a.audience,
            AssertionAudience::TokenEndpoint,
            "the default audience"
        );
    }
}

#[test]
fn private_key_jwt_reads_the_key_from_the_environment_with_kid_and_audience() {
    let pem = std::fs::read_to_string(key_path("client_ec256.pem")).unwrap();
    let env = move |name: &str| match name {
        "CLIENT_KEY" => Some(pem.clone()),
        other => env(other),
    };
    let text = jwt_config(
        "env:CLIENT_KEY",
        "client_assertion_kid = \"sealgate-2025\"\nclient_assertion_audience = \"issuer\"",
    );
    let s = Settings::from_toml(&text, &env).unwrap();
    let a = assertion(&s);
    assert_eq!(a.key.alg().name(), "ES256");
    assert_eq!(a.key.kid(), Some("sealgate-2025"));
    assert_eq!(a.audience, AssertionAudience::Issuer);
    // Debug names the method and key type, never the key.
    let shown = format!("{s:?}");
    assert!(shown.contains("PrivateKeyJwt"), "{shown}");
    let material = std::fs::read_to_string(key_path("client_ec256.pem")).unwrap();
    for line in material.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!shown.contains(line), "{shown}");
    }
}

#[test]
fn private_key_jwt_needs_a_key_and_no_secret() {
    let err = refused(&with_auth("token_endpoint_auth = \"private_key_jwt\""));
    assert!(
        err.contains("oidc.client_assertion_key") && err.contains("missing"),
        "{err}"
    );
    let key = format!("file:{}", key_path("client_rsa.pem"));
    let text = jwt_config(&key, SECRET_LINE.trim_end());
    let err = refused(&text);
    assert!(
        err.contains("oidc.client_secret") && err.contains("not used with"),
        "{err}"
    );
}

#[test]
fn secret_methods_need_a_secret_and_refuse_assertion_keys() {
    let err = refused(&with_auth(""));
    assert!(
        err.contains("oidc.client_secret") && err.contains("missing"),
        "{err}"
    );
    let key = format!("file:{}", key_path("client_rsa.pem"));
    for (line, name) in [
        (
            format!("client_assertion_key = \"{key}\""),
            "oidc.client_assertion_key",
        ),
        (
            "client_assertion_kid = \"k1\"".to_owned(),
            "oidc.client_assertion_kid",
        ),
        (
            "client_assertion_audience = \"issuer\"".to_owned(),
            "oidc.client_assertion_audience",
        ),
    ] {
        for method in ["client_secret_basic", "client_secret_post"] {
            let text = with_auth(&format!(
                "{SECRET_LINE}token_endpoint_auth = \"{method}\"\n{line}"
            ));
            let err = refused(&text);
            assert!(
                err.contains(name) && err.contains("only used with"),
                "{method}: {err}"
            );
        }
    }
}

#[test]
fn unreadable_or_unusable_keys_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.pem");
    let err = refused(&jwt_config(&format!("file:{}", missing.display()), ""));
    assert!(
        err.contains("oidc.client_assertion_key") && err.contains("cannot read"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let err = refused(&jwt_config(&format!("file:{}", garbage.display()), ""));
    assert!(
        err.contains("oidc.client_assertion_key") && err.contains("no private key found"),
        "{err}"
    );
    for (file, why) in [
        ("client_ec256_sec1.pem", "openssl pkcs8 -topk8 -nocrypt"),
        ("client_rsa1024.pem", "2048"),
        ("client_ed25519.pem", "P-256"),
        ("client_rsa.pub.pem", "no private key found"),
    ] {
        let err = refused(&jwt_config(&format!("file:{}", key_path(file)), ""));
        assert!(
            err.contains("oidc.client_assertion_key") && err.contains(why),
            "{file}: {err}"
        );
    }
}

#[test]
fn an_inline_key_is_refused_and_never_echoed() {
    let pem = std::fs::read_to_string(key_path("client_ec256.pem")).unwrap();
    let body = pem.lines().nth(1).unwrap();
    let text = with_auth(&format!(
        "token_endpoint_auth = \"private_key_jwt\"\nclient_assertion_key = \"\"\"\n{pem}\"\"\""
    ));
    let err = refused(&text);
    assert!(
        err.contains("oidc.client_assertion_key") && err.contains("never inline"),
        "{err}"
    );
    assert!(!err.contains(body), "{err}");
    // A key of the wrong type (a table, a number) is not echoed either.
    let text = with_auth(&format!(
        "token_endpoint_auth = \"private_key_jwt\"\nclient_assertion_key = [\"{body}\"]"
    ));
    let err = refused(&text);
    assert!(
        err.contains("oidc.client_assertion_key") && !err.contains(body),
        "{err}"
    );
}

#[test]
fn bad_kid_and_audience_are_named() {
    let key = format!("file:{}", key_path("client_ec256.pem"));
    let err = refused(&jwt_config(&key, "client_assertion_kid = \"\""));
    assert!(err.contains("oidc.client_assertion_kid"), "{err}");
    let err = refused(&jwt_config(&key, "client_assertion_kid = \"a\\nb\""));
    assert!(err.contains("oidc.client_assertion_kid"), "{err}");
    let err = refused(&jwt_config(&key, "client_assertion_audience = \"both\""));
    assert!(
        err.contains("oidc.client_assertion_audience") && err.contains("\"issuer\""),
        "{err}"
    );
    let err = refused(&with_auth("token_endpoint_auth = \"client_secret_jwt\""));
    assert!(
        err.contains("oidc.token_endpoint_auth") && err.contains("\"private_key_jwt\""),
        "{err}"
    );
}

#[test]
fn check_config_without_the_key_variable_warns_instead_of_failing() {
    let text = jwt_config("env:SEALGATE_CLIENT_KEY", "");
    let report = check_text(Path::new("sealgate.toml"), &text, &env, &[]);
    assert!(report.is_ok(), "{:#?}", report.errors);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("SEALGATE_CLIENT_KEY")),
        "{:?}",
        report.warnings
    );
    // With the variable set to something that is not a key, it is an error with its line.
    let env = |name: &str| match name {
        "SEALGATE_CLIENT_KEY" => Some("not a key".to_owned()),
        other => env(other),
    };
    let report = check_text(Path::new("sealgate.toml"), &text, &env, &[]);
    let problems: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("oidc.client_assertion_key") && problems[0].contains("line"),
        "{problems:?}"
    );
}

#[test]
fn a_client_certificate_is_read_for_its_thumbprints_and_refused_when_unusable() {
    let key = format!("file:{}", key_path("client_rsa.pem"));
    let cert = key_path("client_rsa.cert.pem");
    let s = parse(&jwt_config(
        &key,
        &format!("client_assertion_cert = \"{cert}\""),
    ))
    .unwrap();
    assert!(
        format!("{:?}", assertion(&s).key).contains("RcS5E0OvR2_C7GLuPVZlP4k9i5o"),
        "the x5t is computed at load"
    );
    let s = parse(&jwt_config(
        &key,
        &format!("client_assertion_cert = \"file:{cert}\""),
    ))
    .unwrap();
    assert!(format!("{:?}", assertion(&s).key).contains("x5t: Some"));
    for bad in [key_path("missing.pem"), key_path("client_rsa.pem")] {
        let err = parse(&jwt_config(
            &key,
            &format!("client_assertion_cert = \"{bad}\""),
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("oidc.client_assertion_cert"), "{err}");
    }
    // Only with private_key_jwt.
    let text = EXAMPLE.replace(
        SECRET_LINE,
        &format!("{SECRET_LINE}client_assertion_cert = \"{cert}\"\n"),
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("oidc.client_assertion_cert"), "{err}");
}
