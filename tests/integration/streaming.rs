//! Bodies stream through the proxy: a 1 GiB upload and a 1 GiB download pass through a real
//! `sealgate serve` process whose peak resident memory stays under 50 MB.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use crate::support::app::PUBLIC;
use crate::support::idp::FakeIdp;
use crate::support::process::{Sealgate, Spawn};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;
const LIMIT_BYTES: u64 = 50 * 1000 * 1000;

static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// A 1 GiB body, produced 64 KiB at a time (never held in memory).
fn gib_body()
-> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync> {
    let chunks = usize::try_from(GIB).unwrap() / CHUNK;
    StreamBody::new(futures_util::stream::iter(
        (0..chunks).map(|_| Ok(Frame::data(Bytes::from_static(&ZEROS)))),
    ))
}

/// Counts a body's bytes without keeping them.
async fn count<B>(mut body: B) -> u64
where
    B: hyper::body::Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += bytes::Buf::remaining(&data) as u64;
        }
    }
    n
}

/// The upstream: `/download` sends 1 GiB, `/upload` answers with the number of bytes received.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path().ends_with("/download") {
                        gib_body().boxed()
                    } else {
                        let n = count(req.into_body()).await;
                        Full::new(Bytes::from(n.to_string()))
                            .map_err(|never| match never {})
                            .boxed()
                    };
                    Ok::<_, Infallible>(http::Response::new(body))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_gib_up_and_a_gib_down_stream_through_in_under_50_mb() {
    let idp = FakeIdp::start().await;
    let upstream = upstream().await;
    let sealgate = Sealgate::spawn(&idp, upstream, Spawn::default()).await;
    let actual = sealgate.actual.clone();
    let mut b = sealgate.browser();
    sealgate.login(&mut b).await;
    let cookie = b.cookie_header(PUBLIC);
    let before = sealgate.peak_rss();

    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = |method: &str, path: &str, body| {
        http::Request::builder()
            .method(method)
            .uri(format!("{actual}{path}"))
            .header("host", "app.example.com")
            .header("cookie", &cookie)
            .header("x-csrf", "1")
            .body(body)
            .unwrap()
    };

    let started = Instant::now();
    let down = client
        .request(request(
            "GET",
            "/api/download",
            http_body_util::Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        ))
        .await
        .unwrap();
    assert_eq!(down.status(), 200);
    assert_eq!(
        count(down.into_body()).await,
        GIB,
        "the whole GiB came down"
    );
    let down_time = started.elapsed();

    let started = Instant::now();
    let mut upload = request("POST", "/api/upload", gib_body().boxed());
    upload
        .headers_mut()
        .insert("content-length", GIB.to_string().parse().unwrap());
    let up = client.request(upload).await.unwrap();
    assert_eq!(up.status(), 200);
    let received = up.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&received),
        GIB.to_string(),
        "the upstream received the whole GiB"
    );
    let up_time = started.elapsed();

    let peak = sealgate.peak_rss();
    eprintln!(
        "streaming: 1 GiB down in {down_time:?}, 1 GiB up in {up_time:?}; sealgate peak RSS {:.1} MB (after login {:.1} MB)",
        peak as f64 / 1e6,
        before as f64 / 1e6
    );
    assert!(
        peak < LIMIT_BYTES,
        "sealgate's peak RSS was {peak} bytes streaming 1 GiB each way"
    );
    drop(idp);
}
