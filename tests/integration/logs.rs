//! Logs: JSON lines with request ids, and no secret in them even at debug level for every crate.

use crate::support::app::{KEY, PUBLIC};
use crate::support::idp::FakeIdp;
use crate::support::process::{Sealgate, Spawn};

#[tokio::test]
async fn debug_logs_of_login_api_refresh_and_logout_hold_no_secret() {
    let idp = FakeIdp::start().await;
    idp.set(|b| b.sid = Some("idp-session-1".into()));
    let upstream = crate::support::upstream::start().await;
    let log = std::env::temp_dir().join(format!("sealgate-logs-{}.jsonl", std::process::id()));
    let sealgate = Sealgate::spawn(
        &idp,
        upstream,
        Spawn {
            // Every proxied call refreshes (the access token is always "about to expire").
            extra: "session.refresh_before = \"1h\"\ntoml.[log]\ntoml.format = \"json\"",
            rust_log: "debug",
            log_file: Some(log.clone()),
        },
    )
    .await;
    let mut b = sealgate.browser();
    let callback = sealgate.login(&mut b).await;
    let cookies = b.export_cookies(PUBLIC);
    let api = b
        .get(
            &format!("{PUBLIC}/api/orders"),
            &[("x-csrf", "1"), ("x-request-id", "req-42")],
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(api.header("x-request-id").as_deref(), Some("req-42"));
    let bearer = api.json()["authorization"].as_str().unwrap().to_owned();
    let refreshed = b.export_cookies(PUBLIC);
    let logout = b
        .post(&format!("{PUBLIC}/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(logout.status, 302);
    drop(sealgate); // flushes and closes its stderr

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.len() > 20,
        "debug logging was on: {} lines",
        lines.len()
    );
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["id"] == "req-42" && l["span"]["route"] == "/api"),
        "lines carry the request span"
    );
    assert!(
        idp.requests_to("/token")
            .iter()
            .any(|r| r.form_param("grant_type") == Some("refresh_token")),
        "a refresh happened"
    );

    // Everything secret this flow touched.
    let url = url::Url::parse(&callback).unwrap();
    let query = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let mut secrets = vec![
        ("authorization code", query("code")),
        ("state", query("state")),
        ("client secret", "test-secret".to_owned()),
        ("session key", KEY.to_owned()),
        (
            "access token",
            bearer.trim_start_matches("Bearer ").to_owned(),
        ),
    ];
    for r in idp.requests_to("/token") {
        for field in ["code_verifier", "refresh_token", "code"] {
            if let Some(v) = r.form_param(field) {
                secrets.push(("token request field", v.to_owned()));
            }
        }
    }
    for t in idp.live_tokens() {
        secrets.push(("issued token", t));
    }
    for (name, value) in cookies.iter().chain(&refreshed) {
        if !value.is_empty() {
            secrets.push(("cookie value", value.clone()));
            secrets.push(("cookie name=value", format!("{name}={value}")));
        }
    }
    assert!(secrets.len() > 10);
    for (what, secret) in &secrets {
        // Long values are also checked by a 16-character middle piece (a partial leak).
        let probe = if secret.len() > 40 {
            &secret[secret.len() / 2 - 8..secret.len() / 2 + 8]
        } else {
            secret.as_str()
        };
        assert!(!text.contains(probe), "the log contains a {what}");
    }
    assert!(
        !text.contains("eyJ"),
        "no JWT (access, ID or logout token) in the log"
    );
}

#[tokio::test]
async fn debug_logs_of_pushed_silent_and_refused_logins_hold_no_secret_and_no_junk() {
    let idp = FakeIdp::start().await;
    idp.set(|b| {
        b.par_endpoint = true;
        b.idp_session = false;
    });
    let upstream = crate::support::upstream::start().await;
    let log = std::env::temp_dir().join(format!("sealgate-par-logs-{}.jsonl", std::process::id()));
    let sealgate = Sealgate::spawn(
        &idp,
        upstream,
        Spawn {
            extra: "oidc.auth_params = { audience = \"urn:aud-value\" }\ntoml.[log]\ntoml.format = \"json\"",
            rust_log: "debug",
            log_file: Some(log.clone()),
        },
    )
    .await;
    // A pushed silent login the IdP answers with login_required.
    let mut b = sealgate.browser();
    let authorize = start_login(
        &mut b,
        "prompt=none&login_hint=hint-value%40example.com&returnUrl=%2F",
    )
    .await;
    let callback = b.get(&authorize, &[]).await.location().unwrap();
    let r = b.get(&callback, &[]).await;
    assert_eq!(r.location().as_deref(), Some("/?sealgate_login=none"));
    // A refused login whose error carries junk, with the flow's own state.
    let authorize2 = start_login(&mut b, "returnUrl=%2F").await;
    let state = idp
        .requests_to("/par")
        .pop()
        .unwrap()
        .form_param("state")
        .unwrap()
        .to_owned();
    let junk = "access_denied%0A%7B%22level%22%3A%22ERROR%22%7D%3Cjunk-marker%3E";
    let r = b
        .get(
            &format!(
                "{PUBLIC}/bff/callback?error={junk}&state={state}&iss={}",
                crate::support::app::urlencode(&idp.issuer())
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    drop(sealgate);

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
    assert!(
        text.contains("access_deniedlevelERRORjunkmarker"),
        "the error code, filtered"
    );
    assert!(!text.contains("junk-marker"), "no raw junk in the log");
    let mut secrets = vec![
        ("state", state),
        ("client secret", "test-secret".to_owned()),
        ("login_hint (personal data)", "hint-value".to_owned()),
    ];
    for url in [&authorize, &authorize2] {
        let request_uri = url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "request_uri")
            .unwrap()
            .1
            .into_owned();
        secrets.push(("request_uri", request_uri));
    }
    for pushed in idp.requests_to("/par") {
        for field in ["state", "nonce", "code_challenge"] {
            secrets.push(("pushed field", pushed.form_param(field).unwrap().to_owned()));
        }
    }
    for (what, secret) in &secrets {
        assert!(!text.contains(secret.as_str()), "the log contains a {what}");
    }
}

/// `GET /bff/login?<query>` as a navigation; the IdP URL it redirects to.
async fn start_login(b: &mut crate::support::browser::Browser, query: &str) -> String {
    let url = format!("{PUBLIC}/bff/login?{query}");
    let r = b.get(&url, &[("sec-fetch-mode", "navigate")]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    r.location().unwrap()
}
