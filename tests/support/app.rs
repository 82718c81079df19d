//! Starts sealgate against a [`FakeIdp`] on loopback, with a controllable clock.

use sealgate::Clock;
use sealgate::Settings;
use sealgate::{Options, Running, StartError};

use super::browser::{Browser, Resp};
use super::idp::{Behaviour, FakeIdp};

/// The origin the browser thinks it talks to.
pub const PUBLIC: &str = "https://app.example.com";
/// The session key used in tests.
pub const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

/// sealgate + fake IdP.
pub struct Harness {
    pub idp: FakeIdp,
    pub running: Running,
    pub clock: Clock,
    pub actual: String,
}

pub fn config_toml(issuer: &str, extra: &str) -> String {
    config_toml_with_upstream(issuer, extra, "127.0.0.1:9")
}

pub fn config_toml_with_upstream(issuer: &str, extra: &str, upstream: &str) -> String {
    // `extra` holds section-qualified keys (`oidc.x = …`), each written into its section;
    // `static.*` keys create a `[static]` table.
    let static_keys = section(extra, "static");
    let static_table = if static_keys.is_empty() {
        String::new()
    } else {
        format!("[static]\n{static_keys}\n")
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{PUBLIC}"
{server_extra}
[oidc]
issuer = "{issuer}"
client_id = "spa-bff"
client_secret = "env:SECRET"
scopes = ["openid", "profile", "offline_access"]
post_logout_redirect_uri = "{PUBLIC}/"
jwks_refetch_cooldown = "30s"
{oidc_extra}
[session]
keys = ["env:KEY"]
{session_extra}
[bff]
allowed_origins = ["{PUBLIC}", "https://spa.example.com"]
{bff_extra}
[[routes]]
prefix = "/api"
upstream = "http://{upstream}"
forward_cookies = ["theme"]
[[routes]]
prefix = "/kept"
upstream = "http://{upstream}/base"
strip_prefix = false
methods = ["GET"]
timeout = "1s"
token = "optional"
forward_cookies = "all"
[[routes]]
prefix = "/open"
upstream = "http://{upstream}"
token = "none"
[[routes]]
prefix = "/down"
upstream = "http://127.0.0.1:9"
token = "none"
{static_table}
{toml_extra}
"#,
        oidc_extra = section(extra, "oidc"),
        session_extra = section(extra, "session"),
        server_extra = section(extra, "server"),
        bff_extra = section(extra, "bff"),
        toml_extra = section(extra, "toml"),
    )
}

/// Lines of `extra` written as `oidc.key = value` / `session.key = value` / …, for that section;
/// `toml.` lines are appended verbatim at the end (e.g. `toml.[[routes]]`).
fn section(extra: &str, name: &str) -> String {
    extra
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{name}.")))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("test-secret".into()),
        "KEY" => Some(KEY.into()),
        _ => None,
    }
}

/// Logs go through the test writer (shown for failing tests), filtered by `RUST_LOG`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sealgate=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

pub async fn try_start(idp: &FakeIdp, extra: &str, clock: Clock) -> Result<Running, StartError> {
    try_start_edited(idp, extra, clock, |toml| toml).await
}

/// [`try_start`] with the configuration text passed through `edit` first (to remove a line).
pub async fn try_start_edited(
    idp: &FakeIdp,
    extra: &str,
    clock: Clock,
    edit: impl FnOnce(String) -> String,
) -> Result<Running, StartError> {
    init_logs();
    let upstream = super::upstream::start().await;
    let toml = edit(config_toml_with_upstream(
        &idp.issuer(),
        extra,
        &upstream.to_string(),
    ));
    let settings = Settings::from_toml(&toml, &env).expect("test config");
    sealgate::start(
        settings,
        Options {
            clock,
            ..Options::default()
        },
    )
    .await
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}, "").await
    }

    /// `setup` adjusts the IdP; `extra` holds lines like `oidc.use_userinfo = true`.
    pub async fn start_with(setup: impl FnOnce(&mut Behaviour), extra: &str) -> Self {
        Self::start_edited(setup, extra, |toml| toml).await
    }

    /// [`Harness::start_with`], the configuration text passed through `edit` first.
    pub async fn start_edited(
        setup: impl FnOnce(&mut Behaviour),
        extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        let idp = FakeIdp::start().await;
        idp.set(setup);
        let clock = Clock::system();
        let running = try_start_edited(&idp, extra, clock.clone(), edit)
            .await
            .expect("sealgate starts");
        let actual = format!("http://{}", running.addr);
        Self {
            idp,
            running,
            clock,
            actual,
        }
    }

    pub fn browser(&self) -> Browser {
        let mut b = Browser::new();
        b.map_origin(PUBLIC, &self.actual);
        b
    }

    pub fn url(path: &str) -> String {
        format!("{PUBLIC}{path}")
    }

    /// Starts a login; returns the IdP authorize URL sealgate redirected to.
    pub async fn begin_login(&self, b: &mut Browser, return_url: &str) -> String {
        let r = b
            .get(
                &Self::url(&format!("/bff/login?returnUrl={}", urlencode(return_url))),
                &[("sec-fetch-mode", "navigate")],
            )
            .await;
        assert_eq!(r.status, 302, "login: {}", r.body);
        r.location().expect("login Location")
    }

    /// Visits the IdP's authorize URL; returns the callback URL the IdP redirected to.
    pub async fn authorize(&self, b: &mut Browser, authorize_url: &str) -> String {
        let r = b.get(authorize_url, &[]).await;
        assert_eq!(r.status, 302, "authorize: {}", r.body);
        r.location().expect("authorize Location")
    }

    /// Runs login through to the callback response (not following its redirect).
    pub async fn login(&self, b: &mut Browser) -> Resp {
        let auth = self.begin_login(b, "/home").await;
        let cb = self.authorize(b, &auth).await;
        b.get(&cb, &[]).await
    }

    pub async fn user(&self, b: &mut Browser) -> Resp {
        b.get(&Self::url("/bff/user"), &[("x-csrf", "1")]).await
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
