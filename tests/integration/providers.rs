//! Several providers (`[[providers]]`): each login, session, refresh, logout and back-channel
//! logout stays with its provider, and a callback is accepted only for the provider its flow
//! was started with (mix-up, RFC 9700 4.4), refused before any token request.

use sealgate::{Clock, Options, Running, Settings};
use serde_json::json;

use crate::support::app::{Harness, PUBLIC, env, init_logs};
use crate::support::browser::{Browser, Resp};
use crate::support::idp::{FakeIdp, peek_jwt};

struct Two {
    work: FakeIdp,
    customers: FakeIdp,
    running: Running,
    clock: Clock,
}

fn provider(name: &str, idp: &FakeIdp) -> String {
    format!(
        r#"[[providers]]
name = "{name}"
issuer = "{}"
client_id = "spa-bff"
client_secret = "env:SECRET"
scopes = ["openid", "offline_access"]
post_logout_redirect_uri = "{PUBLIC}/"
"#,
        idp.issuer()
    )
}

async fn start(providers: &str, clock: Clock, routes: &str) -> Running {
    init_logs();
    let upstream = crate::support::upstream::start().await;
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
public_url = "{PUBLIC}"
{providers}
[session]
keys = ["env:KEY"]
[bff]
allowed_origins = ["{PUBLIC}"]
[[routes]]
prefix = "/api"
upstream = "http://{upstream}"
{}"#,
        routes.replace("UPSTREAM", &upstream.to_string())
    );
    let settings = Settings::from_toml(&toml, &env).expect("test config");
    sealgate::start(
        settings,
        Options {
            clock,
            ..Options::default()
        },
    )
    .await
    .expect("sealgate starts")
}

impl Two {
    async fn start() -> Two {
        Self::start_with("").await
    }

    /// With more `[[routes]]` (`UPSTREAM` stands for the echo upstream's address).
    async fn start_with(routes: &str) -> Two {
        let work = FakeIdp::start().await;
        let customers = FakeIdp::start().await;
        customers.set(|b| {
            b.user_sub = "bob".into();
            b.sid = Some("customers-sid".into());
        });
        let clock = Clock::system();
        let running = start(
            &format!(
                "{}{}",
                provider("work", &work),
                provider("customers", &customers)
            ),
            clock.clone(),
            routes,
        )
        .await;
        Two {
            work,
            customers,
            running,
            clock,
        }
    }

    fn browser(&self) -> Browser {
        let mut b = Browser::new();
        b.map_origin(PUBLIC, &format!("http://{}", self.running.addr));
        b
    }

    /// `/bff/login` with `query`; returns the authorize URL.
    async fn begin(&self, b: &mut Browser, query: &str) -> String {
        let r = b
            .get(
                &Harness::url(&format!("/bff/login?returnUrl=%2Fhome{query}")),
                &[("sec-fetch-mode", "navigate")],
            )
            .await;
        assert_eq!(r.status, 302, "{}", r.body);
        r.location().unwrap()
    }

    /// A full login with `provider`; returns the callback's response.
    async fn login(&self, b: &mut Browser, provider: &str) -> Resp {
        let authorize = self.begin(b, &format!("&provider={provider}")).await;
        let callback = b.get(&authorize, &[]).await.location().unwrap();
        b.get(&callback, &[]).await
    }

    fn token_requests(&self) -> usize {
        self.work.requests_to("/token").len() + self.customers.requests_to("/token").len()
    }
}

async fn user(b: &mut Browser) -> Resp {
    b.get(&Harness::url("/bff/user"), &[("x-csrf", "1")]).await
}

async fn api(b: &mut Browser) -> Resp {
    b.get(&Harness::url("/api/x"), &[("x-csrf", "1")]).await
}

/// The `iss` of the bearer token the upstream received.
fn bearer_issuer(r: &Resp) -> String {
    let auth = r.json()["authorization"].as_str().unwrap().to_owned();
    let (_, claims) = peek_jwt(auth.strip_prefix("Bearer ").unwrap());
    claims["iss"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_provider_logs_in_at_its_own_callback_and_keeps_its_sessions() {
    let t = Two::start().await;
    let mut a = t.browser();
    let authorize = t.begin(&mut a, "&provider=customers").await;
    assert!(authorize.starts_with(&t.customers.issuer()), "{authorize}");
    let callback = a.get(&authorize, &[]).await.location().unwrap();
    assert!(
        callback.starts_with(&format!("{PUBLIC}/bff/callback/customers?")),
        "{callback}"
    );
    assert_eq!(a.get(&callback, &[]).await.status, 302);
    let me = user(&mut a).await.json();
    assert_eq!(
        (me["provider"].clone(), me["sub"].clone()),
        (json!("customers"), json!("bob"))
    );
    let r = api(&mut a).await;
    assert_eq!(r.status, 200);
    assert_eq!(bearer_issuer(&r), t.customers.issuer());

    let mut b = t.browser();
    assert_eq!(t.login(&mut b, "work").await.status, 302);
    let me = user(&mut b).await.json();
    assert_eq!(
        (me["provider"].clone(), me["sub"].clone()),
        (json!("work"), json!("alice"))
    );
    assert_eq!(bearer_issuer(&api(&mut b).await), t.work.issuer());

    // Refresh goes to the session's provider only.
    t.work.clear_requests();
    t.customers.clear_requests();
    t.clock.advance(290);
    let r = api(&mut a).await;
    assert_eq!(r.status, 200);
    assert_eq!(bearer_issuer(&r), t.customers.issuer());
    assert_eq!(t.customers.requests_to("/token").len(), 1);
    assert!(t.work.requests_to("/token").is_empty());

    // So do logout's revocation and end-session redirect.
    let r = a
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    assert!(
        r.location()
            .unwrap()
            .starts_with(&format!("{}/end-session", t.customers.issuer())),
        "{:?}",
        r.location()
    );
    assert_eq!(t.customers.requests_to("/revoke").len(), 1);
    assert!(t.work.requests_to("/revoke").is_empty());
    assert_eq!(
        user(&mut b).await.status,
        200,
        "the other provider's session lives on"
    );
}

#[tokio::test]
async fn without_a_provider_the_first_is_used_and_an_unknown_one_is_refused() {
    let t = Two::start().await;
    let mut b = t.browser();
    let authorize = t.begin(&mut b, "").await;
    assert!(authorize.starts_with(&t.work.issuer()), "{authorize}");
    for query in [
        "&provider=nope",
        "&provider=",
        "&provider=work&provider=customers",
    ] {
        let mut b = t.browser();
        let r = b
            .get(
                &Harness::url(&format!("/bff/login?returnUrl=%2F{query}")),
                &[("sec-fetch-mode", "navigate")],
            )
            .await;
        assert_eq!(r.status, 400, "{query}");
        assert!(r.set_cookies().is_empty(), "{query}: no login cookie");
        assert!(!r.body.contains("nope"), "{query}: {}", r.body);
    }
}

#[tokio::test]
async fn a_flow_of_one_provider_is_refused_at_the_others_callback_before_any_token_request() {
    let t = Two::start().await;
    for (started, other) in [("work", "customers"), ("customers", "work")] {
        let mut b = t.browser();
        let authorize = t.begin(&mut b, &format!("&provider={started}")).await;
        let callback = b.get(&authorize, &[]).await.location().unwrap();
        // The code, state and iss of `started`, delivered to `other`'s callback.
        let crossed = callback.replace(
            &format!("/bff/callback/{started}?"),
            &format!("/bff/callback/{other}?"),
        );
        let before = t.token_requests();
        let r = b.get(&crossed, &[]).await;
        assert_eq!(r.status, 400, "{started} -> {other}: {}", r.body);
        assert_eq!(
            t.token_requests(),
            before,
            "{started} -> {other}: no token request"
        );
        assert_eq!(user(&mut b).await.status, 401);
    }
}

#[tokio::test]
async fn an_iss_of_the_other_provider_is_refused_before_any_token_request() {
    let t = Two::start().await;
    for (started, other) in [("work", "customers"), ("customers", "work")] {
        let (started_idp, other_idp) = if started == "work" {
            (&t.work, &t.customers)
        } else {
            (&t.customers, &t.work)
        };
        let mut b = t.browser();
        let authorize = t.begin(&mut b, &format!("&provider={started}")).await;
        let callback = b.get(&authorize, &[]).await.location().unwrap();
        let own = crate::support::app::urlencode(&started_idp.issuer());
        let foreign = crate::support::app::urlencode(&other_idp.issuer());
        assert!(callback.contains(&own), "{callback}");
        let crossed = callback.replace(&own, &foreign);
        let before = t.token_requests();
        let r = b.get(&crossed, &[]).await;
        assert_eq!(r.status, 400, "{started} with iss of {other}");
        assert_eq!(t.token_requests(), before);
    }
}

#[tokio::test]
async fn a_code_and_state_of_one_provider_with_the_iss_of_the_other_are_refused_at_its_callback() {
    // Only the flow's provider can catch this one: the iss is right for the callback, the code
    // and state come from a flow started for the other provider.
    let t = Two::start().await;
    let param = |url: &str, name: &str| {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    for (started, at, at_idp) in [
        ("work", "customers", &t.customers),
        ("customers", "work", &t.work),
    ] {
        let mut b = t.browser();
        let authorize = t.begin(&mut b, &format!("&provider={started}")).await;
        let callback = b.get(&authorize, &[]).await.location().unwrap();
        let crossed = format!(
            "{PUBLIC}/bff/callback/{at}?code={}&state={}&iss={}",
            param(&callback, "code"),
            param(&callback, "state"),
            crate::support::app::urlencode(&at_idp.issuer()),
        );
        let before = t.token_requests();
        let r = b.get(&crossed, &[]).await;
        assert_eq!(r.status, 400, "{started} at {at}: {}", r.body);
        assert_eq!(t.token_requests(), before, "{started} at {at}");
        assert_eq!(user(&mut b).await.status, 401);
    }
}

#[tokio::test]
async fn back_channel_logout_reaches_the_sessions_of_its_provider_only() {
    let t = Two::start().await;
    // The same subject at both providers: a logout from one ends only that one's session.
    t.customers.set(|b| b.user_sub = "alice".into());
    let mut at_work = t.browser();
    assert_eq!(t.login(&mut at_work, "work").await.status, 302);
    let mut at_customers = t.browser();
    assert_eq!(t.login(&mut at_customers, "customers").await.status, 302);
    let token = t.customers.logout_token(|c| {
        c.remove("sid");
    });
    let form = format!("logout_token={}", crate::support::app::urlencode(&token));
    let r = t
        .browser()
        .post(
            &Harness::url("/bff/backchannel-logout"),
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(user(&mut at_customers).await.status, 401);
    assert_eq!(user(&mut at_work).await.status, 200);
    // A token no provider accepts is refused.
    let forged = t.customers.logout_token(|c| {
        c.insert("iss".into(), json!("https://nobody.example"));
    });
    let r = t
        .browser()
        .post(
            &Harness::url("/bff/backchannel-logout"),
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("logout_token={}", crate::support::app::urlencode(&forged)),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_session_of_a_provider_no_longer_configured_is_refused_and_cleared() {
    let t = Two::start().await;
    let mut b = t.browser();
    assert_eq!(t.login(&mut b, "customers").await.status, 302);
    let cookies = b.export_cookies(PUBLIC);
    // The same keys, with only `work` left.
    let only_work = start(&provider("work", &t.work), t.clock.clone(), "").await;
    let mut again = Browser::new();
    again.map_origin(PUBLIC, &format!("http://{}", only_work.addr));
    again.import_cookies(PUBLIC, cookies);
    let r = user(&mut again).await;
    assert_eq!(r.status, 401);
    assert!(again.cookie_names(PUBLIC).is_empty(), "cleared");

    // The name "customers" given to another IdP: the old sessions are not its sessions (their
    // refresh tokens must never reach the new IdP's token endpoint).
    let other = FakeIdp::start().await;
    let renamed = start(
        &format!(
            "{}{}",
            provider("work", &t.work),
            provider("customers", &other)
        ),
        t.clock.clone(),
        "",
    )
    .await;
    let mut moved = Browser::new();
    moved.map_origin(PUBLIC, &format!("http://{}", renamed.addr));
    moved.import_cookies(PUBLIC, b.export_cookies(PUBLIC));
    assert_eq!(user(&mut moved).await.status, 401);
    t.clock.advance(290);
    assert_eq!(api(&mut moved).await.status, 401);
    assert!(
        other.requests_to("/token").is_empty(),
        "no refresh token reached the other IdP"
    );
}

#[tokio::test]
async fn callback_paths_exist_only_for_configured_providers() {
    let t = Two::start().await;
    for path in [
        "/bff/callback",
        "/bff/callback/",
        "/bff/callback/nope",
        "/bff/callback/work/x",
    ] {
        let r = t.browser().get(&Harness::url(path), &[]).await;
        assert_eq!(r.status, 404, "{path}");
    }
    // A lone [oidc] keeps the plain callback only.
    let h = Harness::start().await;
    let r = h
        .browser()
        .get(&Harness::url("/bff/callback/default"), &[])
        .await;
    assert_eq!(r.status, 404);
    let mut b = h.browser();
    assert_eq!(h.login(&mut b).await.status, 302);
    assert_eq!(h.user(&mut b).await.json()["provider"], "default");
}

#[tokio::test]
async fn a_step_up_link_names_the_sessions_provider_and_its_login_satisfies_the_route() {
    let t = Two::start_with(
        "[[routes]]\nprefix = \"/mfa\"\nupstream = \"http://UPSTREAM\"\nacr_values = [\"gold\"]\n",
    )
    .await;
    let mut b = t.browser();
    assert_eq!(t.login(&mut b, "customers").await.status, 302);
    let r = b.get(&Harness::url("/mfa/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let link = r.json()["login_url"].as_str().unwrap().to_owned();
    assert_eq!(link, "/bff/login?acr_values=gold&provider=customers");

    t.customers.set(|b| {
        b.extra_claims.insert("acr".into(), json!("gold"));
    });
    let authorize = b
        .get(&Harness::url(&link), &[("sec-fetch-mode", "navigate")])
        .await
        .location()
        .unwrap();
    assert!(authorize.starts_with(&t.customers.issuer()), "{authorize}");
    assert!(authorize.contains("acr_values=gold"), "{authorize}");
    let callback = b.get(&authorize, &[]).await.location().unwrap();
    assert_eq!(b.get(&callback, &[]).await.status, 302);
    let r = b.get(&Harness::url("/mfa/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bearer_issuer(&r), t.customers.issuer());
}
