//! The proxy: what is and is not forwarded, path safety, methods, upstream failures.

use crate::support::app::{Harness, PUBLIC};
use crate::support::raw::status_line;

#[tokio::test]
async fn escaping_paths_absolute_targets_and_connect_are_400() {
    let h = Harness::start().await;
    let addr = h.running.addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            "GET /api/../bff/user HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "GET /api/%2e%2e/x HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "GET /api/a%2fb HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "GET /api/a%5c..%5cb HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "GET /api//evil HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "GET /api/%252e%252e/x HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "GET http://evil.example/api/x HTTP/1.1\r\nHost: evil.example\r\nX-CSRF: 1\r\n\r\n",
            "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        ]
        .map(|r| (r, status_line(addr, r.as_bytes())))
    })
    .await
    .unwrap();
    for (req, answer) in answers {
        assert!(answer.starts_with("HTTP/1.1 400"), "{req:?} → {answer}");
    }
}

#[tokio::test]
async fn forwarding_headers_are_sealgates_own() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let r = b
        .get(
            &Harness::url("/api/x"),
            &[
                ("x-csrf", "1"),
                ("authorization", "Bearer from-the-browser"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-host", "evil.example"),
                ("forwarded", "for=6.6.6.6"),
                ("connection", "authorization, x-custom"),
                ("x-custom", "hop"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let auth = j["authorization"].as_str().unwrap();
    assert!(
        auth.starts_with("Bearer eyJ"),
        "the browser's Authorization is replaced: {auth}"
    );
    assert_eq!(j["x-forwarded-for"], "127.0.0.1");
    assert_eq!(j["x-forwarded-host"], "app.example.com");
    assert_eq!(j["x-forwarded-proto"], "https");
    assert!(j["forwarded"].is_null());
    assert!(
        j["x-custom"].is_null(),
        "headers named in Connection are hop-by-hop"
    );
}

#[tokio::test]
async fn headers_naming_the_client_or_the_original_url_never_reach_the_upstream() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let mut names: Vec<&str> = sealgate::internal::CLIENT_CLAIMS.to_vec();
    names.extend([
        "x-forwarded-prefix",
        "x-forwarded-port",
        "x-forwarded-server",
    ]);
    for name in names {
        let r = b
            .get(
                &Harness::url("/api/x"),
                &[("x-csrf", "1"), (name, "6.6.6.6")],
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert!(
            r.json()[name].is_null(),
            "{name} was forwarded: {}",
            r.json()[name]
        );
    }
}

#[tokio::test]
async fn trace_and_track_are_405_on_every_route() {
    let h = Harness::start().await;
    let addr = h.running.addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            "TRACE /api/x HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "TRACK /api/x HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "TRACE /kept/x HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
            "TRACE /open/x HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n",
        ]
        .map(|r| (r, status_line(addr, r.as_bytes())))
    })
    .await
    .unwrap();
    for (req, answer) in answers {
        assert!(answer.starts_with("HTTP/1.1 405"), "{req:?} → {answer}");
    }
}

#[tokio::test]
async fn segments_a_servlet_container_reads_as_dot_segments_are_400() {
    let h = Harness::start().await;
    let addr = h.running.addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            "/api/..;/x",
            "/api/.;/x",
            "/api/a/..;jsessionid=1/b",
            "/api/..%3b/x",
            "/api/;/x",
        ]
        .map(|p| {
            let req = format!("GET {p} HTTP/1.1\r\nHost: a\r\nX-CSRF: 1\r\n\r\n");
            (p, status_line(addr, req.as_bytes()))
        })
    })
    .await
    .unwrap();
    for (path, answer) in answers {
        assert!(answer.starts_with("HTTP/1.1 400"), "{path} → {answer}");
    }
}

#[tokio::test]
async fn upstream_set_cookie_with_sealgate_names_is_dropped() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let r = b
        .get(&Harness::url("/api/set-cookie"), &[("x-csrf", "1")])
        .await;
    assert_eq!(r.status, 200);
    let names: Vec<String> = r
        .set_cookies()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(names, vec!["app".to_string()]);
    assert_eq!(h.user(&mut b).await.status, 200, "the session survives");
}

#[tokio::test]
async fn routes_keep_prefixes_limit_methods_and_allow_optional_tokens() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = b.get(&Harness::url("/kept/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200, "optional token: anonymous is fine");
    assert_eq!(r.json()["path"], "/base/kept/x");
    assert!(r.json()["authorization"].is_null());
    let r = b
        .post(&Harness::url("/kept/x"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 405);
    h.login(&mut b).await;
    let r = b.get(&Harness::url("/kept/x"), &[("x-csrf", "1")]).await;
    assert!(
        r.json()["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    let r = b.get(&Harness::url("/api/x"), &[]).await;
    assert_eq!(r.status, 403, "no anti-forgery header: not forwarded");
    let mut anon = h.browser();
    assert_eq!(
        anon.get(&Harness::url("/api/x"), &[("x-csrf", "1")])
            .await
            .status,
        401
    );
    let _ = PUBLIC;
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_problems() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let r = b.get(&Harness::url("/down/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = b.get(&Harness::url("/kept/slow"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn other_cookies_are_forwarded_only_as_the_route_allows() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    b.set_cookie(PUBLIC, "theme", "dark");
    b.set_cookie(PUBLIC, "tracking", "1");
    // Look-alikes of sealgate's own cookies are never forwarded, whatever the route says.
    b.set_cookie(PUBLIC, "__Host-sealgate-csrf", "x");
    b.set_cookie(PUBLIC, "__Host-sealgate-login-0011223344556677.0", "x");
    let cookie_seen = |r: &crate::support::browser::Resp| r.json()["cookie"].clone();

    // `forward_cookies = ["theme"]`.
    let r = b.get(&Harness::url("/api/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(cookie_seen(&r), "theme=dark");
    // `forward_cookies = "all"`: everything but sealgate's.
    let r = b.get(&Harness::url("/kept/x"), &[("x-csrf", "1")]).await;
    let all = cookie_seen(&r);
    let mut names: Vec<&str> = all
        .as_str()
        .unwrap()
        .split("; ")
        .map(|c| c.split('=').next().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["theme", "tracking"]);
    // The default: none.
    let r = b.get(&Harness::url("/open/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200);
    assert!(cookie_seen(&r).is_null(), "{}", r.body);
}

#[tokio::test]
async fn upstreams_get_http1_or_http2_as_the_route_says() {
    // A second route to the same (h1 + h2c) upstream, HTTP/2 with prior knowledge.
    let h = Harness::start().await;
    let upstream = {
        // The harness' routes all point at one upstream; read it from the /api route.
        let api = h
            .running
            .settings()
            .routes
            .iter()
            .find(|r| r.prefix == "/api")
            .unwrap();
        api.upstream.clone()
    };
    drop(h);
    let extra = format!(
        "toml.[[routes]]\ntoml.prefix = \"/h2\"\ntoml.upstream = \"{upstream}\"\ntoml.http2 = true"
    );
    let h = Harness::start_with(|_| {}, &extra).await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let r = b.get(&Harness::url("/api/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.json()["version"], "HTTP/1.1");
    let r = b.get(&Harness::url("/h2/x"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], "HTTP/2.0");
    assert!(
        r.json()["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer eyJ")
    );
}

#[tokio::test]
async fn a_remembered_session_is_still_judged_on_every_request() {
    let h = Harness::start().await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let cookies = b.export_cookies(PUBLIC);
    for _ in 0..3 {
        let r = b.get(&Harness::url("/api/x"), &[("x-csrf", "1")]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.json()["authorization"]
                .as_str()
                .unwrap()
                .starts_with("Bearer eyJ")
        );
    }
    assert_eq!(h.running.opened_sessions(), 1, "one cookie, opened once");

    // One changed byte is another cookie: opened in full, and refused.
    let mut tampered = h.browser();
    let changed = cookies
        .iter()
        .map(|(n, v)| {
            let mut v = v.clone();
            if n.ends_with(".0") {
                let last = v.pop().unwrap();
                v.push(if last == 'A' { 'B' } else { 'A' });
            }
            (n.clone(), v)
        })
        .collect();
    tampered.import_cookies(PUBLIC, changed);
    let r = tampered
        .get(&Harness::url("/api/x"), &[("x-csrf", "1")])
        .await;
    assert_eq!(r.status, 401);

    // Logged out: the same bytes, still remembered, are refused by the denylist.
    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(h.running.opened_sessions(), 1, "still remembered");
    let mut replay = h.browser();
    replay.import_cookies(PUBLIC, cookies);
    let r = replay
        .get(&Harness::url("/api/x"), &[("x-csrf", "1")])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        h.running.opened_sessions(),
        0,
        "the refusal came from the remembered opening, which is forgotten now"
    );
}
