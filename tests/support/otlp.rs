//! A small OTLP/HTTP receiver: accepts `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, keeps the decoded spans and every raw payload.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;

/// One exported span, its ids in lower-case hex.
#[derive(Debug, Clone)]
pub struct Exported {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// 1 internal, 2 server, 3 client.
    pub kind: i32,
    /// Every attribute, its value as text.
    pub attributes: Vec<(String, String)>,
    /// The `service.name` of its resource.
    pub service: String,
}

impl Exported {
    /// The attribute `key`, as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<Exported>,
    /// Every request body as received, and its decoded form printed with `{:?}`.
    payloads: Vec<(Vec<u8>, String)>,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let shared = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(req, &shared).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, received }
    }

    /// The base URL for `[telemetry] otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Exported> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Every payload so far: raw bytes (as lossy text) and the decoded message's `Debug`.
    pub fn payload_text(&self) -> String {
        let r = self.received.lock().unwrap();
        r.payloads
            .iter()
            .map(|(raw, decoded)| format!("{}\n{decoded}\n", String::from_utf8_lossy(raw)))
            .collect()
    }

    /// Waits until a span satisfies `found` (at most `timeout`); the spans then.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        found: impl Fn(&Exported) -> bool,
    ) -> Vec<Exported> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if spans.iter().any(&found) || started.elapsed() > timeout {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    shared: &Mutex<Received>,
) -> http::Response<Full<Bytes>> {
    let status = |code: u16| {
        let mut r = http::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
        r
    };
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        return status(404);
    }
    if content_type != "application/x-protobuf" {
        return status(415);
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let Ok(message) = ExportTraceServiceRequest::decode(body.clone()) else {
        return status(400);
    };
    let mut r = shared.lock().unwrap();
    r.payloads.push((body.to_vec(), format!("{message:?}")));
    for resource in &message.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for scope in &resource.scope_spans {
            for span in &scope.spans {
                r.spans.push(Exported {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|a| {
                            (
                                a.key.clone(),
                                text(a.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    let mut ok = status(200);
    ok.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/x-protobuf"),
    );
    ok
}
