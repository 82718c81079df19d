//! The trace pipeline behind `[telemetry] otlp_endpoint`: the SDK's batch span processor (its
//! own thread, a bounded queue that drops spans when full and says so once in the log) and the
//! OTLP/HTTP protobuf exporter, which posts through sealgate's hyper client (the system's TLS
//! roots, as every outbound connection) on a small runtime of its own, so exporting never runs
//! on, or waits for, the threads that serve requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};

use crate::config::TelemetrySettings;

/// Whether spans are exported: set once, when the pipeline is installed. Every span sealgate
/// makes for traces is behind it, so without an endpoint nothing is created.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Spans waiting to be exported; beyond this, new spans are dropped (counted, logged once).
const MAX_QUEUE: usize = 4096;
/// Spans per export request.
const MAX_BATCH: usize = 512;
/// How often a partial batch is sent.
const EXPORT_EVERY: Duration = Duration::from_secs(2);
/// One export request's deadline.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The collector's answer is read up to this size (it is a small status message).
const MAX_RESPONSE: usize = 64 * 1024;

/// Whether traces are exported.
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The trace pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("[telemetry] OTLP exporter: {0}")]
pub struct TraceError(String);

/// The installed trace pipeline; [`Traces::shutdown`] sends what is queued.
#[derive(Debug, Default)]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// Ends the pipeline: every finished span still queued is exported (within a few seconds),
    /// then the exporter stops. Blocks: call it outside the async runtime (after `block_on`).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
                tracing::warn!(error = %e, "traces: the last spans may not have been exported");
            }
        }
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The provider for `settings` (which has an endpoint).
pub(super) fn provider(
    settings: &TelemetrySettings,
    endpoint: &url::Url,
) -> Result<Traces, TraceError> {
    let mut url = endpoint.clone();
    let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
    url.set_path(&path);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient::new()?)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TraceError(e.to_string()))?;
    let batching = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUE)
        .with_max_export_batch_size(MAX_BATCH)
        .with_scheduled_delay(EXPORT_EVERY)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batching)
        .build();
    // Every trace is kept or not by its trace id at the configured ratio, whatever the
    // browser's `traceparent` flags say: a client must not switch its own requests' traces
    // off (or force them past the ratio). Spans of one trace decide alike, so traces stay whole.
    let sampler = Sampler::TraceIdRatioBased(settings.sample_ratio);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder_empty()
                .with_service_name(settings.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    Ok(Traces {
        provider: Some(provider),
    })
}

impl Traces {
    /// The `tracing` layer that turns sealgate's trace spans into OpenTelemetry spans.
    pub(super) fn layer<S>(
        &self,
    ) -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let tracer = self.provider.as_ref()?.tracer("sealgate");
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_target(false),
        )
    }

    /// Marks traces as exported (the layer is installed).
    pub(super) fn enable(&self) {
        ENABLED.store(self.provider.is_some(), Ordering::Relaxed);
    }
}

/// The exporter's HTTP client: hyper over rustls, driven by a one-thread runtime of its own.
#[derive(Debug, Clone)]
struct OtlpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl OtlpClient {
    fn new() -> Result<Self, TraceError> {
        static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
        let runtime = RUNTIME
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("sealgate-otlp")
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| TraceError(format!("runtime: {e}")))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        http.set_nodelay(true);
        let connector = crate::outbound::tls_roots()
            .map_err(|e| TraceError(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            runtime: runtime.handle().clone(),
        })
    }
}

impl HttpClient for OtlpClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let exchange = async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        let task = self.runtime.spawn(async move {
            tokio::time::timeout(EXPORT_TIMEOUT, exchange)
                .await
                .map_err(|_| HttpError::from("timed out"))?
        });
        Box::pin(async move { task.await.map_err(|e| HttpError::from(e.to_string()))? })
    }
}
