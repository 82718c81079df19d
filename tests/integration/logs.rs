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
