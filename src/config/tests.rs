use std::path::PathBuf;
use std::time::Duration;

use super::settings::*;
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

/// The client secret of a `client_secret_*` method.
fn client_secret(s: &Settings) -> &str {
    match &s.oidc().token_endpoint_auth {
        TokenEndpointAuth::Basic(secret) | TokenEndpointAuth::Post(secret) => secret.expose(),
        TokenEndpointAuth::PrivateKeyJwt(_) => panic!("no client secret with private_key_jwt"),
    }
}

#[test]
fn example_parses_into_typed_settings() {
    let s = parse(EXAMPLE).unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(client_secret(&s), "s3cret");
    assert_eq!(s.session.idle_timeout, Duration::from_secs(1200));
    assert_eq!(s.session.absolute_timeout, Duration::from_secs(8 * 3600));
    assert_eq!(
        s.redirect_uri(s.oidc()),
        "https://app.example.com/bff/callback"
    );
    assert_eq!(s.routes[0].token, TokenPolicy::User);
    assert_eq!(
        s.bff.allowed_origins,
        vec!["https://app.example.com".to_string()]
    );
    assert!(matches!(
        s.oidc().token_endpoint_auth,
        TokenEndpointAuth::Basic(_)
    ));
}

#[test]
fn the_committed_example_file_parses() {
    let text = include_str!("../../config.example.toml");
    parse(text).unwrap();
}

#[test]
fn the_kubernetes_example_config_parses() {
    let yaml = include_str!("../../deploy/kubernetes/sealgate.yaml");
    let text: String = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("config.toml: |"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    let env = |name: &str| match name {
        "SEALGATE_CLIENT_SECRET" => Some("s".to_owned()),
        "SEALGATE_KEY" => Some(KEY.to_owned()),
        _ => None,
    };
    let s = Settings::from_toml(&text, &env).unwrap();
    assert!(s.cluster.is_some(), "the example runs several replicas");
    assert_eq!(s.routes.len(), 1);
}

/// The `(section, key)` pairs of `config.example.toml`, commented-out tables and keys included.
fn example_keys() -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in include_str!("../../config.example.toml").lines() {
        let line = line.trim_start_matches('#').trim();
        if line.starts_with('[') {
            section = line
                .split(']')
                .next()
                .unwrap_or("")
                .trim_start_matches('[')
                .to_owned();
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !section.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            keys.push((section.clone(), key.to_owned()));
        }
    }
    keys
}

#[test]
fn every_example_key_is_documented() {
    let docs = include_str!("../../docs/configuration.md");
    let keys = example_keys();
    assert!(keys.len() > 50, "{keys:?}");
    for (section, key) in keys {
        let row = docs
            .lines()
            .find(|l| {
                l.starts_with(&format!("| `[{section}]`"))
                    || l.starts_with(&format!("| `[[{section}]]`"))
            })
            .unwrap_or_else(|| {
                panic!("docs/configuration.md's summary table has no row for [{section}]")
            });
        assert!(
            row.contains(&format!("`{key}`")),
            "docs/configuration.md's [{section}] row does not document `{key}`"
        );
    }
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
    assert_eq!(client_secret(&parse(&text).unwrap()), "from-file");
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
fn the_registered_signing_algorithm_defaults_to_rs256_and_the_old_list_still_starts() {
    let with = |lines: &str| EXAMPLE.replace("[oidc]", &format!("[oidc]\n{lines}"));
    let signing_warnings = |s: &Settings| -> Vec<(String, String)> {
        s.warnings()
            .into_iter()
            .filter(|(k, _)| k.contains("signing_algs"))
            .collect()
    };
    let s = parse(EXAMPLE).unwrap();
    assert_eq!(s.oidc().id_token_signing_algs, vec!["RS256"]);
    assert!(signing_warnings(&s).is_empty());
    let s = parse(&with(
        r#"id_token_signed_response_alg = ["ES256", "PS256"]"#,
    ))
    .unwrap();
    assert_eq!(s.oidc().id_token_signing_algs, vec!["ES256", "PS256"]);
    let s = parse(&with(r#"id_token_signed_response_alg = "PS256""#)).unwrap();
    assert_eq!(s.oidc().id_token_signing_algs, vec!["PS256"]);
    let err = parse(&with(r#"id_token_signed_response_alg = "HS256""#))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HS256") && err.contains("id_token_signed_response_alg"),
        "{err}"
    );
    // The older list alone still starts, with a warning when it allows several algorithms.
    let s = parse(&with(r#"id_token_signing_algs = ["RS256", "ES256"]"#)).unwrap();
    assert_eq!(s.oidc().id_token_signing_algs, vec!["RS256", "ES256"]);
    let w = signing_warnings(&s);
    assert!(
        w.len() == 1 && w[0].1.contains("id_token_signed_response_alg"),
        "{w:?}"
    );
    let s = parse(&with(r#"id_token_signing_algs = ["RS256"]"#)).unwrap();
    assert!(signing_warnings(&s).is_empty());
    // Both: the registered one wins; the list is reported as ignored.
    let s = parse(&with(
        "id_token_signed_response_alg = \"RS256\"\nid_token_signing_algs = [\"ES256\"]",
    ))
    .unwrap();
    assert_eq!(s.oidc().id_token_signing_algs, vec!["RS256"]);
    let w = signing_warnings(&s);
    assert!(w.len() == 1 && w[0].1.contains("ignored"), "{w:?}");
}

#[test]
fn revocation_clock_skew_defaults_to_a_second_and_is_bounded() {
    let s = parse(EXAMPLE).unwrap();
    assert_eq!(s.revocation.clock_skew, Duration::from_secs(1));
    let with =
        |value: &str| EXAMPLE.to_owned() + &format!("\n[revocation]\nclock_skew = {value}\n");
    let s = parse(&with("\"250ms\"")).unwrap();
    assert_eq!(s.revocation.clock_skew, Duration::from_millis(250));
    assert_eq!(
        parse(&with("\"5m\"")).unwrap().revocation.clock_skew,
        Duration::from_secs(300)
    );
    for bad in ["\"6m\"", "\"0s\"", "\"soon\"", "3"] {
        let err = parse(&with(bad)).unwrap_err().to_string();
        assert!(err.contains("revocation.clock_skew"), "{bad}: {err}");
    }
}

#[test]
fn logout_token_settings_default_and_bounds() {
    let s = parse(EXAMPLE).unwrap();
    assert_eq!(s.oidc().max_logout_token_age, Duration::from_secs(300));
    assert!(!s.oidc().strict_logout_token_typ);
    let text = EXAMPLE.replace(
        "[oidc]",
        "[oidc]\nmax_logout_token_age = \"2m\"\nstrict_logout_token_typ = true",
    );
    let s = parse(&text).unwrap();
    assert_eq!(s.oidc().max_logout_token_age, Duration::from_secs(120));
    assert!(s.oidc().strict_logout_token_typ);
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

/// A scratch directory for `[static]` tests, removed on drop.
struct StaticDir(PathBuf);

impl StaticDir {
    fn new(name: &str, index: Option<&str>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("sealgate-cfg-static-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(index) = index {
            std::fs::write(dir.join(index), "<!doctype html>").unwrap();
        }
        Self(dir)
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "{EXAMPLE}\n[static]\ndir = {:?}\n{extra}",
            self.0.display().to_string()
        )
    }
}

impl Drop for StaticDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn static_is_off_unless_configured() {
    assert!(parse(EXAMPLE).unwrap().static_files.is_none());
}

#[test]
fn static_dir_is_canonicalized_with_defaults() {
    let d = StaticDir::new("defaults", Some("index.html"));
    // A non-canonical spelling of the same directory.
    let spelled = d.0.join("..").join(d.0.file_name().unwrap());
    let text = format!(
        "{EXAMPLE}\n[static]\ndir = {:?}\n",
        spelled.display().to_string()
    );
    let s = parse(&text).unwrap().static_files.unwrap();
    assert_eq!(s.root, std::fs::canonicalize(&d.0).unwrap());
    assert!(s.root.is_absolute());
    assert_eq!(s.index, "index.html");
    assert_eq!(s.csp.to_str().unwrap(), DEFAULT_CSP);
    assert!(DEFAULT_CSP.contains("frame-ancestors 'none'") && !DEFAULT_CSP.contains("  "));
}

#[test]
fn static_index_and_csp_can_be_changed() {
    let d = StaticDir::new("custom", Some("index.csr.html"));
    let s = parse(&d.config(
        "index = \"index.csr.html\"\ncsp = \"default-src 'self'; style-src 'self' 'unsafe-inline'\"",
    ))
    .unwrap()
    .static_files
    .unwrap();
    assert_eq!(s.index, "index.csr.html");
    assert_eq!(
        s.csp.to_str().unwrap(),
        "default-src 'self'; style-src 'self' 'unsafe-inline'"
    );
}

#[test]
fn static_problems_are_named() {
    let no_index = StaticDir::new("no-index", None);
    let err = parse(&no_index.config("")).unwrap_err().to_string();
    assert!(
        err.contains("static.dir") && err.contains("index.html"),
        "{err}"
    );

    let missing = no_index.0.join("nope");
    let text = format!(
        "{EXAMPLE}\n[static]\ndir = {:?}\n",
        missing.display().to_string()
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("static.dir"), "{err}");

    let file = StaticDir::new("file", Some("index.html"));
    let text = format!(
        "{EXAMPLE}\n[static]\ndir = {:?}\n",
        file.0.join("index.html").display().to_string()
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("static.dir") && err.contains("not a directory"),
        "{err}"
    );

    let err = parse(&format!("{EXAMPLE}\n[static]\nindex = \"index.html\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dir"), "the table needs dir: {err}");
    let err = parse(&format!("{EXAMPLE}\n[static]\ndir = \"/\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("static.dir"), "{err}");

    let d = StaticDir::new("bad-values", Some("index.html"));
    for (extra, key) in [
        ("fallback = true", "fallback"),
        ("index = \"../index.html\"", "static.index"),
        ("index = \"a/index.html\"", "static.index"),
        ("index = \".index.html\"", "static.index"),
        ("index = \"missing.html\"", "static.dir"),
        ("csp = \"\"", "static.csp"),
        ("csp = \"default-src 'self'\\nX-Evil: 1\"", "static.csp"),
    ] {
        let err = parse(&d.config(extra)).unwrap_err().to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn static_index_symlinked_outside_is_refused() {
    let outside = StaticDir::new("outside", Some("index.html"));
    let d = StaticDir::new("symlinked-index", None);
    std::os::unix::fs::symlink(outside.0.join("index.html"), d.0.join("index.html")).unwrap();
    let err = parse(&d.config("")).unwrap_err().to_string();
    assert!(err.contains("static.dir"), "{err}");
}

#[test]
fn static_and_a_catch_all_route_conflict() {
    let d = StaticDir::new("catch-all", Some("index.html"));
    let text = d
        .config("")
        .replace(r#"prefix = "/api""#, r#"prefix = "/""#);
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("static.dir") && err.contains("\"/\""), "{err}");
}

#[test]
fn cluster_settings() {
    assert!(parse(EXAMPLE).unwrap().cluster.is_none());
    let with = |table: &str| parse(&format!("{EXAMPLE}\n[cluster]\n{table}"));
    let c = with("redis_url = \"redis://127.0.0.1:6379/0\"")
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(c.on_store_unavailable, StorePolicy::Refuse);
    assert_eq!(c.key_prefix, "sealgate");
    let c = with("redis_url = \"env:SEALGATE_CLIENT_SECRET\"\non_store_unavailable = \"allow\"");
    // The env var holds no URL: refused as not a redis:// URL, after being resolved.
    assert!(c.unwrap_err().to_string().contains("cluster.redis_url"));
    for (table, key) in [
        (
            "redis_url = \"redis://:hunter2@127.0.0.1/0\"",
            "cluster.redis_url",
        ),
        (
            "redis_url = \"rediss://127.0.0.1/0#insecure\"",
            "cluster.redis_url",
        ),
        ("redis_url = \"http://127.0.0.1/\"", "cluster.redis_url"),
        ("redis_url = \"env:UNSET\"", "cluster.redis_url"),
        (
            "redis_url = \"redis://127.0.0.1/0\"\non_store_unavailable = \"maybe\"",
            "cluster.on_store_unavailable",
        ),
        (
            "redis_url = \"redis://127.0.0.1/0\"\nkey_prefix = \"a b\"",
            "cluster.key_prefix",
        ),
    ] {
        let err = with(table).unwrap_err().to_string();
        assert!(err.contains(key), "{table}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn environment_overrides_every_key_by_path() {
    let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let s = Settings::from_toml_with_overrides(
        EXAMPLE,
        &env,
        &vars(&[
            ("SEALGATE__SERVER__LISTEN", "0.0.0.0:9000"),
            ("SEALGATE__SERVER__MAX_CONNECTIONS", "12"),
            ("SEALGATE__SESSION__IDLE_TIMEOUT", "5m"),
            (
                "SEALGATE__BFF__ALLOWED_ORIGINS",
                r#"["https://a.example", "https://b.example"]"#,
            ),
            ("SEALGATE__ROUTES__0__UPSTREAM", "http://127.0.0.1:7000"),
            ("SEALGATE__ROUTES__0__WEBSOCKET", "true"),
            ("SEALGATE__LOG__FORMAT", "json"),
            ("SEALGATE__METRICS__LISTEN", "127.0.0.1:9090"),
        ]),
    )
    .unwrap();
    assert_eq!(s.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(s.server.max_connections, 12);
    assert_eq!(s.session.idle_timeout, Duration::from_secs(300));
    assert_eq!(s.bff.allowed_origins.len(), 2);
    assert_eq!(s.routes[0].upstream.as_str(), "http://127.0.0.1:7000/");
    assert!(s.routes[0].websocket);
    assert_eq!(s.log.format, LogFormat::Json);
    assert!(s.metrics.listen.is_some());

    for (name, value, says) in [
        ("SEALGATE__SERVER__LISTN", "x", "listn"),
        (
            "SEALGATE__ROUTES__3__UPSTREAM",
            "http://127.0.0.1:1",
            "SEALGATE__ROUTES__3__UPSTREAM",
        ),
        (
            "SEALGATE__ROUTES__UPSTREAM",
            "http://127.0.0.1:1",
            "SEALGATE__ROUTES__UPSTREAM",
        ),
        (
            "SEALGATE__SERVER____LISTEN",
            "x",
            "SEALGATE__SERVER____LISTEN",
        ),
        (
            "SEALGATE__SERVER__LISTEN__X",
            "1",
            "SEALGATE__SERVER__LISTEN__X",
        ),
    ] {
        let err = Settings::from_toml_with_overrides(EXAMPLE, &env, &vars(&[(name, value)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{name}: {err}");
    }
}

mod check_config;
mod client_auth;
mod cluster;
mod dpop;
mod limits;
mod providers;
mod request_params;
mod revalidate;
mod route_rules;
mod route_tokens;
