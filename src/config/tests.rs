use super::*;

const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

fn env(name: &str) -> Option<String> {
    match name {
        "SEALGATE_CLIENT_SECRET" => Some("s3cret".into()),
        "SEALGATE_KEY" => Some(KEY.into()),
        "SHORT_KEY" => Some("AAAA".into()),
        _ => None,
    }
}

/// The configuration from the issue, verbatim.
pub(crate) const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://app.example.com"
[oidc]
issuer = "https://idp.example.com"
client_id = "spa-bff"
client_secret = "env:SEALGATE_CLIENT_SECRET"
scopes = ["openid", "profile", "email", "offline_access"]
post_logout_redirect_uri = "https://app.example.com/"
timeout = "10s"
jwks_refetch_cooldown = "30s"
[session]
keys = ["env:SEALGATE_KEY"]
cookie_name = "__Host-sealgate"
idle_timeout = "20m"
absolute_timeout = "8h"
login_timeout = "10m"
[bff]
prefix = "/bff"
allowed_origins = ["https://app.example.com"]
[[routes]]
prefix = "/api"
upstream = "http://127.0.0.1:5001"
token = "user"
"#;

fn parse(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml(text, &env)
}

#[test]
fn example_parses_into_typed_settings() {
    let s = parse(EXAMPLE).unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.oidc.client_secret.expose(), "s3cret");
    assert_eq!(s.session.idle_timeout, Duration::from_secs(1200));
    assert_eq!(s.session.absolute_timeout, Duration::from_secs(8 * 3600));
    assert_eq!(s.redirect_uri(), "https://app.example.com/bff/callback");
    assert_eq!(s.routes[0].token, TokenPolicy::User);
    assert_eq!(
        s.bff.allowed_origins,
        vec!["https://app.example.com".to_string()]
    );
    assert_eq!(s.oidc.token_endpoint_auth, TokenEndpointAuth::Basic);
}

#[test]
fn the_committed_example_file_parses() {
    let text = include_str!("../../config.example.toml");
    parse(text).unwrap();
}

#[test]
fn unknown_keys_are_named() {
    let text = EXAMPLE.replace("login_timeout", "login_timeuot");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("login_timeuot"), "{err}");
}

#[test]
fn inline_secrets_are_refused() {
    let text = EXAMPLE.replace("env:SEALGATE_CLIENT_SECRET", "hunter2");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("oidc.client_secret") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn missing_env_and_bad_keys_name_the_key() {
    let text = EXAMPLE.replace("env:SEALGATE_KEY", "env:NOPE");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("session.keys[0]") && err.contains("NOPE"),
        "{err}"
    );
    let text = EXAMPLE.replace(
        r#"keys = ["env:SEALGATE_KEY"]"#,
        r#"keys = ["env:SEALGATE_KEY", "env:SHORT_KEY"]"#,
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("session key 2") && err.contains("3 bytes"),
        "{err}"
    );
}

#[test]
fn secrets_from_files() {
    let dir = std::env::temp_dir().join(format!("sealgate-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, "from-file\n").unwrap();
    let text = EXAMPLE.replace(
        "env:SEALGATE_CLIENT_SECRET",
        &format!("file:{}", path.display()),
    );
    assert_eq!(
        parse(&text).unwrap().oidc.client_secret.expose(),
        "from-file"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn plain_http_only_for_loopback() {
    let text = EXAMPLE.replace("https://idp.example.com", "http://idp.example.com");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("oidc.issuer") && err.contains("loopback"),
        "{err}"
    );
    let text = EXAMPLE.replace("http://127.0.0.1:5001", "http://api.internal:5001");
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("routes[0].upstream")
    );
    let text = EXAMPLE.replace("https://idp.example.com", "http://localhost:9000");
    assert!(parse(&text).is_ok());
}

#[test]
fn bad_values_are_named() {
    for (from, to, key) in [
        (
            r#"idle_timeout = "20m""#,
            r#"idle_timeout = "soon""#,
            "session.idle_timeout",
        ),
        (
            r#"idle_timeout = "20m""#,
            r#"idle_timeout = "9h""#,
            "session.idle_timeout",
        ),
        ("__Host-sealgate", "sealgate", "session.cookie_name"),
        (
            r#"prefix = "/api""#,
            r#"prefix = "/bff/x""#,
            "routes[0].prefix",
        ),
        (
            r#"prefix = "/api""#,
            r#"prefix = "/a/../b""#,
            "routes[0].prefix",
        ),
        (r#"token = "user""#, r#"token = "admin""#, "routes[0].token"),
        (
            r#"listen = "127.0.0.1:8080""#,
            r#"listen = "nowhere""#,
            "server.listen",
        ),
        (
            r#"public_url = "https://app.example.com""#,
            r#"public_url = "https://app.example.com/x""#,
            "server.public_url",
        ),
        (
            r#"token = "user""#,
            r#"token = "user"
forward_cookies = "some""#,
            "routes[0].forward_cookies",
        ),
        (
            r#"token = "user""#,
            r#"token = "user"
forward_cookies = ["a;b"]"#,
            "routes[0].forward_cookies",
        ),
        (
            r#"prefix = "/bff""#,
            r#"prefix = "/bff"
csrf_mode = "cookie""#,
            "bff.csrf_mode",
        ),
    ] {
        let text = EXAMPLE.replacen(from, to, 1);
        assert_ne!(text, EXAMPLE, "{from}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
    let text = EXAMPLE.replace("login_timeout", "max_chunks = 9\nlogin_timeout");
    assert!(parse(&text).unwrap_err().to_string().contains("431"));
    let text = EXAMPLE.replace("__Host-sealgate", &format!("__Host-{}", "s".repeat(60)));
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("session.cookie_name")
    );
    let text = EXAMPLE.replace("[oidc]", "[oidc]\nid_token_signing_algs = [\"HS256\"]");
    assert!(parse(&text).unwrap_err().to_string().contains("HS256"));
}

#[test]
fn logout_token_settings_default_and_bounds() {
    let s = parse(EXAMPLE).unwrap();
    assert_eq!(s.oidc.max_logout_token_age, Duration::from_secs(300));
    assert!(!s.oidc.strict_logout_token_typ);
    let text = EXAMPLE.replace(
        "[oidc]",
        "[oidc]\nmax_logout_token_age = \"2m\"\nstrict_logout_token_typ = true",
    );
    let s = parse(&text).unwrap();
    assert_eq!(s.oidc.max_logout_token_age, Duration::from_secs(120));
    assert!(s.oidc.strict_logout_token_typ);
    let text = EXAMPLE.replace("[oidc]", "[oidc]\nmax_logout_token_age = \"2h\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("oidc.max_logout_token_age"), "{err}");
}

#[test]
fn route_and_anti_forgery_options() {
    let s = parse(EXAMPLE).unwrap();
    assert_eq!(s.routes[0].forward_cookies, CookieForwarding::None);
    assert!(!s.routes[0].websocket);
    assert_eq!(s.bff.csrf_mode, CsrfMode::Header);
    let text = EXAMPLE
        .replace(
            r#"token = "user""#,
            "token = \"user\"\nwebsocket = true\nforward_cookies = [\"theme\", \"lang\"]",
        )
        .replace(
            r#"prefix = "/bff""#,
            "prefix = \"/bff\"\ncsrf_mode = \"double-submit\"",
        );
    let s = parse(&text).unwrap();
    assert!(s.routes[0].websocket);
    assert!(s.routes[0].forward_cookies.allows("lang"));
    assert!(!s.routes[0].forward_cookies.allows("other"));
    assert_eq!(s.bff.csrf_mode, CsrfMode::DoubleSubmit);
    let all = EXAMPLE.replace(
        r#"token = "user""#,
        "token = \"user\"\nforward_cookies = \"all\"",
    );
    assert_eq!(
        parse(&all).unwrap().routes[0].forward_cookies,
        CookieForwarding::All
    );
}

#[test]
fn debug_does_not_print_secrets() {
    let s = parse(EXAMPLE).unwrap();
    let d = format!("{s:?}");
    assert!(!d.contains("s3cret") && !d.contains(KEY), "{d}");
}
