//! Traces over OTLP (`[telemetry] otlp_endpoint`): a real `sealgate serve` exporting to an
//! in-process OTLP receiver; spans end at the graceful stop (SIGTERM flushes them).

use std::time::Duration;

use crate::support::app::{Harness, PUBLIC};
use crate::support::idp::FakeIdp;
use crate::support::otlp::{Exported, Receiver};
use crate::support::process::{Sealgate, Spawn};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// The (trace id, parent span id) of a `traceparent`.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    (parts[1].to_owned(), parts[2].to_owned())
}

fn named<'a>(spans: &'a [Exported], name: &str) -> Vec<&'a Exported> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn by_id<'a>(spans: &'a [Exported], id: &str) -> &'a Exported {
    spans
        .iter()
        .find(|s| s.span_id == id)
        .unwrap_or_else(|| panic!("no exported span {id}: {spans:#?}"))
}

/// Whether `span` descends from the span `ancestor` (through exported spans).
fn descends(spans: &[Exported], span: &Exported, ancestor: &str) -> bool {
    let mut at = span;
    for _ in 0..16 {
        if at.parent_span_id == ancestor {
            return true;
        }
        match spans.iter().find(|s| s.span_id == at.parent_span_id) {
            Some(parent) => at = parent,
            None => return false,
        }
    }
    false
}

async fn spawn(idp: &FakeIdp, receiver: &Receiver, extra: &str) -> Sealgate {
    spawn_logging(idp, receiver, extra, Spawn::default()).await
}

async fn spawn_logging(
    idp: &FakeIdp,
    receiver: &Receiver,
    extra: &str,
    how: Spawn<'_>,
) -> Sealgate {
    let upstream = crate::support::upstream::start().await;
    let extra = format!(
        "{extra}\ntoml.[telemetry]\ntoml.otlp_endpoint = \"{}\"\ntoml.service_name = \"sealgate-test\"",
        receiver.endpoint()
    );
    Sealgate::spawn(
        idp,
        upstream,
        Spawn {
            extra: &extra,
            ..how
        },
    )
    .await
}

#[tokio::test]
async fn a_browser_trace_is_continued_through_refresh_idp_and_upstream_without_secrets() {
    let receiver = Receiver::start().await;
    let idp = FakeIdp::start().await;
    // Every proxied call refreshes (the access token is always "about to expire").
    let sealgate = spawn(&idp, &receiver, "session.refresh_before = \"1h\"").await;
    let mut b = sealgate.browser();
    let callback = sealgate.login(&mut b).await;
    let cookies = b.export_cookies(PUBLIC);
    let api = b
        .get(
            &format!("{PUBLIC}/api/orders/12345"),
            &[
                ("x-csrf", "1"),
                ("traceparent", &traceparent()),
                ("tracestate", "vendor=opaque-1"),
            ],
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    let echo = api.json();
    let bearer = echo["authorization"].as_str().unwrap().to_owned();
    let upstream_parent = echo["headers"]["traceparent"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(echo["headers"]["tracestate"][0], "vendor=opaque-1");
    let refreshed = b.export_cookies(PUBLIC);
    assert!(sealgate.terminate().await, "a clean exit after SIGTERM");
    let spans = receiver
        .wait_for(Duration::from_secs(5), |s| s.name == "upstream GET /api")
        .await;

    // The server span continues the browser's trace, named by the route, not the path.
    let servers = named(&spans, "HTTP GET /api");
    assert_eq!(servers.len(), 1, "{spans:#?}");
    let server = servers[0];
    assert_eq!(server.trace_id, TRACE);
    assert_eq!(server.parent_span_id, PARENT);
    assert_eq!(server.kind, SERVER);
    assert_eq!(server.service, "sealgate-test");
    assert_eq!(server.attr("http.route"), Some("/api"));
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    let fingerprint = server.attr("session.fingerprint").unwrap();
    assert!(
        fingerprint.len() == 12 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "{fingerprint}"
    );
    assert!(
        !spans.iter().any(|s| s.name.contains("12345")),
        "no raw path"
    );

    // The upstream call: a client span under it, named in the upstream's traceparent.
    let upstream = named(&spans, "upstream GET /api")[0];
    assert_eq!(upstream.kind, CLIENT);
    assert_eq!(upstream.trace_id, TRACE);
    assert!(descends(&spans, upstream, &server.span_id));
    assert_eq!(upstream.attr("http.response.status_code"), Some("200"));
    assert_eq!(
        ids(&upstream_parent),
        (TRACE.to_owned(), upstream.span_id.clone())
    );

    // The refresh, and its token request to the IdP, in the same trace; the IdP got a
    // traceparent naming that exported span.
    let refresh = named(&spans, "refresh");
    assert_eq!(refresh.len(), 1, "{spans:#?}");
    assert!(descends(&spans, refresh[0], &server.span_id));
    let grant = named(&spans, "IdP POST token (refresh_token)");
    assert_eq!(grant.len(), 1, "{spans:#?}");
    assert!(descends(&spans, grant[0], &refresh[0].span_id));
    assert_eq!(grant[0].kind, CLIENT);
    let token_requests = idp.requests_to("/token");
    let sent = token_requests
        .iter()
        .find(|r| r.form_param("grant_type") == Some("refresh_token"))
        .unwrap();
    let (trace, parent) = ids(sent.traceparent.as_deref().unwrap());
    assert_eq!(trace, TRACE);
    assert_eq!(
        by_id(&spans, &parent).name,
        "IdP POST token (refresh_token)"
    );

    // The login: the callback's code exchange is a child of the callback's server span.
    let callback_span = named(&spans, "HTTP GET /bff/callback")[0];
    let code = named(&spans, "IdP POST token (authorization_code)")[0];
    assert_eq!(code.parent_span_id, callback_span.span_id);
    let sent = token_requests
        .iter()
        .find(|r| r.form_param("grant_type") == Some("authorization_code"))
        .unwrap();
    let (trace, parent) = ids(sent.traceparent.as_deref().unwrap());
    assert_eq!(
        (trace.as_str(), parent.as_str()),
        (code.trace_id.as_str(), code.span_id.as_str())
    );
    // Discovery at start-up is traced too (a trace of its own).
    assert!(!named(&spans, "IdP GET discovery").is_empty(), "{spans:#?}");

    // Nothing secret anywhere in what was exported.
    let text = receiver.payload_text();
    let url = url::Url::parse(&callback).unwrap();
    let mut secrets: Vec<(&str, String)> = url
        .query_pairs()
        .filter(|(k, _)| k == "code" || k == "state")
        .map(|(_, v)| ("callback parameter", v.into_owned()))
        .collect();
    secrets.push(("client secret", "test-secret".to_owned()));
    secrets.push((
        "access token",
        bearer.trim_start_matches("Bearer ").to_owned(),
    ));
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
    for (_, value) in cookies.iter().chain(&refreshed) {
        if !value.is_empty() {
            secrets.push(("cookie value", value.clone()));
        }
    }
    assert!(secrets.len() > 6, "{secrets:?}");
    for (what, secret) in &secrets {
        let probe = if secret.len() > 40 {
            &secret[secret.len() / 2 - 8..secret.len() / 2 + 8]
        } else {
            secret.as_str()
        };
        assert!(!text.contains(probe), "the exported spans contain a {what}");
    }
    assert!(!text.contains("eyJ"), "no JWT in the exported spans");
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace() {
    let receiver = Receiver::start().await;
    let idp = FakeIdp::start().await;
    let log = std::env::temp_dir().join(format!("sealgate-traces-{}.jsonl", std::process::id()));
    let how = Spawn {
        rust_log: "sealgate=debug,warn",
        log_file: Some(log.clone()),
        ..Spawn::default()
    };
    let sealgate = spawn_logging(&idp, &receiver, "toml.[log]\ntoml.format = \"json\"", how).await;
    // A login, for log lines inside requests.
    sealgate.login(&mut sealgate.browser()).await;
    let mut b = sealgate.browser();
    let malformed = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
    let open = b
        .get(
            &format!("{PUBLIC}/open/public"),
            &[
                ("x-csrf", "1"),
                ("traceparent", malformed.as_str()),
                ("tracestate", "x=1"),
            ],
        )
        .await;
    assert_eq!(open.status, 200, "{}", open.body);
    let echo = open.json();
    let upstream_parent = echo["headers"]["traceparent"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(echo["headers"]["tracestate"].is_null(), "{echo}");
    assert!(sealgate.terminate().await);
    let spans = receiver
        .wait_for(Duration::from_secs(5), |s| s.name == "upstream GET /open")
        .await;
    let server = named(&spans, "HTTP GET /open")[0];
    assert!(server.parent_span_id.is_empty(), "a root span: {server:?}");
    assert_ne!(server.trace_id, TRACE.to_lowercase());
    assert_eq!(server.attr("session.fingerprint"), None, "anonymous");
    let upstream = named(&spans, "upstream GET /open")[0];
    assert_eq!(
        ids(&upstream_parent),
        (server.trace_id.clone(), upstream.span_id.clone())
    );

    // The log is as without traces: its lines carry the log's request span, never a trace span.
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let in_request: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|l: &serde_json::Value| l["span"].is_object())
        .collect();
    assert!(!in_request.is_empty(), "{text}");
    assert!(
        in_request
            .iter()
            .all(|l| l["span"]["name"] == "request" && l["span"]["route"].is_string()),
        "{text}"
    );
    assert!(!text.contains("otel."), "{text}");
}

#[tokio::test]
async fn a_browser_cannot_switch_its_trace_off_and_custom_methods_are_named_other() {
    let receiver = Receiver::start().await;
    let idp = FakeIdp::start().await;
    let sealgate = spawn(&idp, &receiver, "").await;
    let mut b = sealgate.browser();
    // "Not sampled": recorded anyway (the ratio decides, 1.0 here), in the browser's trace.
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    let r = b
        .get(
            &format!("{PUBLIC}/open/public"),
            &[("x-csrf", "1"), ("traceparent", unsampled.as_str())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A custom method as long as a header: the spans say `_OTHER`, never the method.
    let long = "X".repeat(4000);
    let method = http::Method::from_bytes(long.as_bytes()).unwrap();
    let r = b
        .request(
            method,
            &format!("{PUBLIC}/open/public"),
            &[("x-csrf", "1")],
            "",
        )
        .await;
    assert!(!r.status.is_server_error(), "{}", r.status);
    assert!(sealgate.terminate().await);
    let spans = receiver
        .wait_for(Duration::from_secs(5), |s| s.name == "HTTP _OTHER /open")
        .await;
    let server = named(&spans, "HTTP GET /open")[0];
    assert_eq!(server.trace_id, TRACE, "{server:?}");
    assert_eq!(server.parent_span_id, PARENT);
    let other = named(&spans, "HTTP _OTHER /open")[0];
    assert_eq!(other.attr("http.request.method"), Some("_OTHER"));
    assert!(
        spans
            .iter()
            .all(|s| !format!("{s:?}").contains(&long[..64])),
        "the custom method was exported"
    );
}

#[tokio::test]
async fn without_an_endpoint_the_browsers_trace_headers_pass_through_unchanged() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let api = b
        .get(
            &format!("{PUBLIC}/api/x"),
            &[
                ("x-csrf", "1"),
                ("traceparent", &traceparent()),
                ("tracestate", "vendor=1"),
            ],
        )
        .await;
    let echo = api.json();
    assert_eq!(echo["headers"]["traceparent"][0], traceparent().as_str());
    assert_eq!(echo["headers"]["tracestate"][0], "vendor=1");
    assert!(
        h.idp
            .requests_to("/token")
            .iter()
            .all(|r| r.traceparent.is_none())
    );
}

/// With `[cluster]`: named so that `.ci/run`'s `cluster::` filter runs it with Redis.
mod cluster {
    use super::*;
    use crate::support::redis::Redis;

    #[tokio::test]
    #[ignore = "needs redis-server; run by .ci/run"]
    async fn a_clustered_refresh_traces_its_redis_commands() {
        let redis = Redis::start();
        let receiver = Receiver::start().await;
        let idp = FakeIdp::start().await;
        let extra = format!(
            "session.refresh_before = \"1h\"\ntoml.[cluster]\ntoml.redis_url = \"{}\"",
            redis.url()
        );
        let sealgate = spawn(&idp, &receiver, &extra).await;
        let mut b = sealgate.browser();
        sealgate.login(&mut b).await;
        let api = b
            .get(
                &format!("{PUBLIC}/api/x"),
                &[("x-csrf", "1"), ("traceparent", &traceparent())],
            )
            .await;
        assert_eq!(api.status, 200, "{}", api.body);
        assert!(sealgate.terminate().await);
        let spans = receiver
            .wait_for(Duration::from_secs(5), |s| s.name == "upstream GET /api")
            .await;
        let refresh = named(&spans, "refresh");
        assert_eq!(refresh.len(), 1, "{spans:#?}");
        assert_eq!(refresh[0].trace_id, TRACE);
        for name in ["redis GET refresh result", "redis SET NX lock"] {
            let found = named(&spans, name);
            assert!(
                found
                    .iter()
                    .any(|s| s.kind == CLIENT && descends(&spans, s, &refresh[0].span_id)),
                "{name}: {spans:#?}"
            );
            assert!(
                found
                    .iter()
                    .all(|s| s.attr("db.system.name") == Some("redis"))
            );
        }
    }
}
