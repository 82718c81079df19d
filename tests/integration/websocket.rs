//! WebSocket upgrades through the proxy: the token is attached, `Origin` is the anti-forgery
//! check, and logout closes open tunnels.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::support::app::{Harness, PUBLIC};
use crate::support::browser::Browser;

/// What the WebSocket upstream saw in an upgrade request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    path: String,
    authorization: Option<String>,
    cookie: Option<String>,
    dpop: Option<String>,
}

/// A WebSocket echo server (tungstenite) recording each handshake.
pub(crate) async fn echo_upstream() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // reason: tungstenite's callback signature
                let record = |req: &Request, resp: Response| {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    log.lock().unwrap().push(Seen {
                        path: req.uri().path().to_owned(),
                        authorization: h("authorization"),
                        cookie: h("cookie"),
                        dpop: h("dpop"),
                    });
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn harness(upstream: SocketAddr) -> Harness {
    harness_with(upstream, false).await
}

async fn harness_with(upstream: SocketAddr, dpop: bool) -> Harness {
    let mut extra = format!(
        "toml.[[routes]]\ntoml.prefix = \"/ws\"\ntoml.upstream = \"http://{upstream}\"\ntoml.websocket = true\n\
         toml.[[routes]]\ntoml.prefix = \"/ws-open\"\ntoml.upstream = \"http://{upstream}\"\ntoml.websocket = true\ntoml.token = \"none\""
    );
    if dpop {
        extra.push_str("\noidc.dpop = true");
    }
    Harness::start_with(|b| b.dpop = dpop, &extra).await
}

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a WebSocket to `path` through sealgate with the browser's cookies and `origin`.
pub(crate) async fn connect(
    h: &Harness,
    b: &Browser,
    path: &str,
    origin: Option<&str>,
) -> Result<Ws, http::StatusCode> {
    let mut req = format!("ws://app.example.com{path}")
        .into_client_request()
        .unwrap();
    let headers = req.headers_mut();
    let cookie = b.cookie_header(PUBLIC);
    if !cookie.is_empty() {
        headers.insert("cookie", cookie.parse().unwrap());
    }
    if let Some(o) = origin {
        headers.insert("origin", o.parse().unwrap());
    }
    let tcp = TcpStream::connect(h.running.addr).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status()),
        Err(e) => panic!("handshake: {e}"),
    }
}

#[tokio::test]
async fn a_dpop_upgrade_carries_the_bound_token_and_a_verified_proof() {
    use crate::support::dpop::{Expected, token_jkt, verify};
    let (upstream, seen) = echo_upstream().await;
    let h = harness_with(upstream, true).await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let mut ws = connect(&h, &b, "/ws/chat?room=1", Some(PUBLIC))
        .await
        .expect("upgraded");
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hello");
    let s = seen.lock().unwrap()[0].clone();
    let token = s
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("DPoP "))
        .unwrap_or_else(|| panic!("a DPoP token: {s:?}"));
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let expect = Expected {
        htm: "GET",
        htu: &format!("http://{upstream}/chat"),
        now,
        token: Some(token),
    };
    let proof = s.dpop.as_deref().expect("a proof");
    let verified = verify(proof, &expect, None, &mut Default::default()).unwrap();
    assert_eq!(token_jkt(token), Some(verified.jkt));
}

#[tokio::test]
async fn upgrades_carry_the_token_and_echo() {
    let (upstream, seen) = echo_upstream().await;
    let h = harness(upstream).await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let mut ws = connect(&h, &b, "/ws/chat?room=1", Some(PUBLIC))
        .await
        .expect("upgraded");
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hello");
    let s = seen.lock().unwrap()[0].clone();
    assert_eq!(s.path, "/chat");
    assert!(
        s.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer eyJ")),
        "{s:?}"
    );
    assert!(s.cookie.is_none(), "sealgate's cookies stay home: {s:?}");
    // An allowed other origin works too; a token = "none" route attaches nothing.
    let _ws = connect(&h, &b, "/ws/chat", Some("https://spa.example.com"))
        .await
        .expect("allowed origin");
    let _open = connect(&h, &h.browser(), "/ws-open/feed", Some(PUBLIC))
        .await
        .expect("anonymous on a token = none route");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.path, "/feed");
    assert!(last.authorization.is_none());
}

#[tokio::test]
async fn upgrades_need_an_allowed_origin_a_session_and_a_websocket_route() {
    let (upstream, seen) = echo_upstream().await;
    let h = harness(upstream).await;
    let mut b = h.browser();
    h.login(&mut b).await;
    assert_eq!(
        connect(&h, &b, "/ws/chat", None).await.err(),
        Some(403.try_into().unwrap())
    );
    assert_eq!(
        connect(&h, &b, "/ws/chat", Some("https://evil.example"))
            .await
            .err(),
        Some(403.try_into().unwrap())
    );
    assert_eq!(
        connect(&h, &h.browser(), "/ws/chat", Some(PUBLIC))
            .await
            .err(),
        Some(401.try_into().unwrap()),
        "anonymous on a token = user route"
    );
    assert_eq!(
        connect(&h, &b, "/api/chat", Some(PUBLIC)).await.err(),
        Some(400.try_into().unwrap()),
        "the route does not allow WebSockets"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn logout_closes_open_tunnels() {
    let (upstream, _) = echo_upstream().await;
    let h = harness(upstream).await;
    let mut b = h.browser();
    h.login(&mut b).await;
    let mut ws = connect(&h, &b, "/ws/chat", Some(PUBLIC)).await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert!(ws.next().await.unwrap().is_ok());
    let r = b
        .post(&Harness::url("/bff/logout"), &[("x-csrf", "1")], "")
        .await;
    assert_eq!(r.status, 302);
    // The tunnel re-checks its session every 2 s.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the tunnel was still open 5 s after logout");
}
