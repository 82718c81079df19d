//! Header names that are not among `http::header`'s constants but are used on every request:
//! a `HeaderName` constant is looked up by its hash, while a `&str` name is parsed and checked
//! again at every use.

use http::HeaderName;

/// `X-Request-Id`: the request's correlation id, taken from the client or made, sent upstream
/// and back.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`, set by sealgate for the upstream.
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`, set by sealgate for the upstream.
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`, set by sealgate for the upstream.
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// W3C trace context.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C trace context, vendor part.
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// Fetch metadata: where the request came from.
pub(crate) const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
