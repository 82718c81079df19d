use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// What the test upstream does with each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers every request with `ok`, keeping the connection open.
    KeepAlive,
    /// Answers one request with `ok` (no `Connection: close`), then closes.
    CloseAfterOne,
    /// Answers the first request; reads the second and closes without answering.
    DropSecond,
    /// Answers the first request's head and half its body, and the rest once released; then
    /// as `KeepAlive`.
    HeldBody,
}

/// A raw HTTP/1.1 upstream that records the connections it accepted and each request head.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    release: Arc<tokio::sync::Notify>,
}

impl Upstream {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let (c, h, r) = (connections.clone(), heads.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let first = c.fetch_add(1, Ordering::SeqCst) == 0;
                tokio::spawn(serve(stream, behaviour, first, h.clone(), r.clone()));
            }
        });
        Self {
            addr,
            connections,
            heads,
            release,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn request(&self, path: &str) -> Request<Body> {
        Request::get(format!("http://{}{path}", self.addr))
            .body(crate::response::full(bytes::Bytes::new()))
            .unwrap()
    }
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    first_connection: bool,
    heads: Arc<Mutex<Vec<String>>>,
    release: Arc<tokio::sync::Notify>,
) {
    let mut buf = Vec::new();
    let mut answered = 0;
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head: Vec<u8> = buf.drain(..end + 4).collect();
        heads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&head).into_owned());
        if matches!(behaviour, Behaviour::DropSecond) && answered == 1 {
            return;
        }
        if matches!(behaviour, Behaviour::HeldBody) && first_connection && answered == 0 {
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok";
            if stream.write_all(head).await.is_err() {
                return;
            }
            release.notified().await;
            if stream.write_all(b"ok").await.is_err() {
                return;
            }
            answered += 1;
            continue;
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(reply).await.is_err() {
            return;
        }
        answered += 1;
        if matches!(behaviour, Behaviour::CloseAfterOne) {
            return;
        }
    }
}

/// How many connections to `addr` this thread's pool holds.
fn idle_connections(addr: SocketAddr) -> usize {
    let authority: Authority = addr.to_string().parse().unwrap();
    POOL.with_borrow(|pool| {
        pool.iter()
            .find(|h| h.authority == authority)
            .map_or(0, |h| h.idle.len())
    })
}

/// The pool's connections to `addr`, oldest first: (ready, closed).
fn pooled(addr: SocketAddr) -> Vec<(bool, bool)> {
    let authority: Authority = addr.to_string().parse().unwrap();
    POOL.with_borrow(|pool| {
        pool.iter()
            .find(|h| h.authority == authority)
            .map(|h| {
                h.idle
                    .iter()
                    .map(|i| (i.sender.is_ready(), i.sender.is_closed()))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// A new connection to `upstream` after one request, its response body read or not.
async fn exchange(
    upstream: &Upstream,
    read: bool,
) -> (SendRequest<Body>, Option<Response<Incoming>>) {
    let authority: Authority = upstream.addr.to_string().parse().unwrap();
    let mut sender = connect(&authority).await.unwrap();
    let mut req = upstream.request("/x");
    *req.uri_mut() = Uri::from_static("/x");
    let response = sender.try_send_request(req).await.unwrap();
    if read {
        assert_eq!(body_of(response).await, "ok");
        tokio::task::yield_now().await;
        (sender, None)
    } else {
        (sender, Some(response))
    }
}

/// A request head read from a blocking socket.
fn read_head(stream: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match std::io::Read::read(stream, &mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn body_of(response: Response<Incoming>) -> bytes::Bytes {
    response.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn a_connection_is_reused_for_the_next_request_in_origin_form_with_its_host() {
    let upstream = Upstream::start(Behaviour::KeepAlive).await;
    for path in ["/a?b=1", "/c/d"] {
        let response = send(upstream.request(path)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body_of(response).await, "ok");
    }
    assert_eq!(upstream.connections(), 1);
    let heads = upstream.heads();
    assert_eq!(heads.len(), 2);
    assert!(
        heads[0].starts_with("GET /a?b=1 HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[1].starts_with("GET /c/d HTTP/1.1\r\n"),
        "{}",
        heads[1]
    );
    for head in &heads {
        let host = format!("host: {}\r\n", upstream.addr);
        assert!(head.to_ascii_lowercase().contains(&host), "{head}");
    }
}

#[tokio::test]
async fn a_connection_whose_response_body_is_still_arriving_is_not_used_again() {
    let upstream = Upstream::start(Behaviour::HeldBody).await;
    let first = send(upstream.request("/one")).await.unwrap();
    // The first body is half there: its connection cannot carry another request (a request
    // queued behind it would wait for the release below, which comes after it: a hang).
    let second = tokio::time::timeout(Duration::from_secs(5), send(upstream.request("/two")))
        .await
        .expect("the second request was not queued on the busy connection")
        .unwrap();
    assert_eq!(upstream.connections(), 2);
    assert_eq!(body_of(second).await, "ok");
    upstream.release.notify_one();
    assert_eq!(body_of(first).await, "okok");
    // The busy connection was passed over, not dropped: both are in the pool.
    assert_eq!(idle_connections(upstream.addr), 2);
    // Both are idle again; the next requests reuse them.
    for path in ["/three", "/four"] {
        let response = send(upstream.request(path)).await.unwrap();
        assert_eq!(body_of(response).await, "ok");
    }
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
    let upstream = Upstream::start(Behaviour::CloseAfterOne).await;
    for path in ["/1", "/2", "/3"] {
        let response = send(upstream.request(path)).await.unwrap();
        assert_eq!(body_of(response).await, "ok");
    }
    // Whether the close was seen before the next checkout or only when the request was
    // refused unwritten, each request went out once, each on its own connection.
    assert_eq!(upstream.connections(), 3);
    assert_eq!(upstream.heads().len(), 3);
    // Closed connections do not pile up in the pool (each leaves at checkin, or at the next
    // checkout once its close has been seen), and none is offered again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        pooled(upstream.addr).iter().all(|&(ready, _)| !ready),
        "{:?}",
        pooled(upstream.addr)
    );
    let response = send(upstream.request("/4")).await.unwrap();
    assert_eq!(body_of(response).await, "ok");
    assert_eq!(upstream.connections(), 4);
    assert_eq!(upstream.heads().len(), 4);
    assert!(
        pooled(upstream.addr).len() <= 1,
        "{:?}",
        pooled(upstream.addr)
    );
}

#[tokio::test]
async fn a_request_on_a_connection_closed_unseen_fails_once_and_the_next_gets_a_new_one() {
    // The race every HTTP/1.1 client with keep-alive has (hyper-util's too): the upstream closes
    // an idle connection as a request goes out on it. The request may have been written, so it
    // is not sent again: it fails (a 502 at the proxy). The connection is not used again.
    // An upstream on a thread of its own, so it can close a connection while this runtime is
    // blocked: the pool then still offers that connection as ready and open.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (close, closed) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for n in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            heads.push(read_head(&mut stream));
            std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            )
            .unwrap();
            if n == 0 {
                closed.recv().unwrap();
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        heads
    });
    let request = |path: &str| {
        Request::get(format!("http://{addr}{path}"))
            .body(crate::response::full(bytes::Bytes::new()))
            .unwrap()
    };
    let first = send(request("/1")).await.unwrap();
    assert_eq!(body_of(first).await, "ok");
    tokio::time::sleep(Duration::from_millis(20)).await;
    close.send(()).unwrap();
    // Blocks the runtime: no task of it can read the upstream's FIN before the next checkout.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        pooled(addr),
        vec![(true, false)],
        "offered as ready and open"
    );
    let second = send(request("/2")).await;
    assert!(matches!(second, Err(Error::Http(_))), "{second:?}");
    assert!(pooled(addr).is_empty(), "{:?}", pooled(addr));
    let third = send(request("/3")).await.unwrap();
    assert_eq!(body_of(third).await, "ok");
    let heads = server.join().unwrap();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[1].starts_with("GET /3 "),
        "/2 never sent again: {}",
        heads[1]
    );
}

#[tokio::test]
async fn a_full_pool_drops_closed_then_the_oldest_busy_connection_and_keeps_ready_ones() {
    let held = Upstream::start(Behaviour::HeldBody).await;
    let keep = Upstream::start(Behaviour::KeepAlive).await;
    let close = Upstream::start(Behaviour::CloseAfterOne).await;
    // A connection still reading its response.
    let (busy, _unread) = exchange(&held, false).await;
    // One done with its response.
    let (ready, _) = exchange(&keep, true).await;
    // One the upstream closed.
    let (gone, _) = exchange(&close, true).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!busy.is_ready() && !busy.is_closed());
    assert!(ready.is_ready());
    assert!(gone.is_closed());
    let since = Instant::now();
    let mut idle: VecDeque<Idle> = [busy, ready, gone]
        .into_iter()
        .map(|sender| Idle { sender, since })
        .collect();
    let states = |idle: &VecDeque<Idle>| -> Vec<(bool, bool)> {
        idle.iter()
            .map(|i| (i.sender.is_ready(), i.sender.is_closed()))
            .collect()
    };
    // Room under the bound: nothing leaves.
    assert!(make_room(&mut idle, 4));
    assert_eq!(idle.len(), 3);
    // Full: the closed one leaves.
    assert!(make_room(&mut idle, 3));
    assert_eq!(states(&idle), vec![(false, false), (true, false)]);
    // Full with none closed: the busy one leaves, the ready one stays.
    assert!(make_room(&mut idle, 2));
    assert_eq!(states(&idle), vec![(true, false)]);
    // Full of ready ones: no room, nothing leaves.
    assert!(!make_room(&mut idle, 1));
    assert_eq!(states(&idle), vec![(true, false)]);
    held.release.notify_one();
}

#[tokio::test]
async fn a_request_that_may_have_reached_the_upstream_is_never_sent_again() {
    let upstream = Upstream::start(Behaviour::DropSecond).await;
    let first = send(upstream.request("/first")).await.unwrap();
    assert_eq!(body_of(first).await, "ok");
    tokio::task::yield_now().await;
    let second = send(upstream.request("/second")).await;
    assert!(matches!(second, Err(Error::Http(_))), "{second:?}");
    // The upstream read it once, on the reused connection, and saw no second try.
    assert_eq!(upstream.connections(), 1);
    let heads = upstream.heads();
    assert_eq!(heads.len(), 2);
    assert!(heads[1].starts_with("GET /second "), "{}", heads[1]);
}

#[tokio::test]
async fn an_upstream_that_is_not_listening_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let req = Request::get(format!("http://{addr}/x"))
        .body(crate::response::full(bytes::Bytes::new()))
        .unwrap();
    let e = send(req).await.unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
    assert_eq!(e.to_string(), "cannot connect");
}

#[test]
fn the_host_header_names_the_port_unless_it_is_80() {
    let host = |a: &str| host_header_of(&a.parse::<Authority>().unwrap()).unwrap();
    assert_eq!(host("api.internal"), "api.internal");
    assert_eq!(host("api.internal:80"), "api.internal");
    assert_eq!(host("api.internal:8080"), "api.internal:8080");
    assert_eq!(host("[::1]:8081"), "[::1]:8081");
    assert_eq!(host("user:secret@api.internal:81"), "api.internal:81");
}
