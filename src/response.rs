//! Response building: one body type, JSON and problem bodies, short HTML pages, redirects, and
//! the headers every sealgate response carries.

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Errors a streamed body can raise.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response sealgate sends.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// A body from bytes.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

fn base(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// `application/json`, `Cache-Control: no-store`.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    base(status, "application/json", value.to_string())
}

/// An empty body with the usual headers (`Cache-Control: no-store` included).
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    base(status, "text/plain; charset=utf-8", Bytes::new())
}

/// An RFC 9457 problem: a short generic title, never a detail that could carry a secret.
pub(crate) fn problem(status: StatusCode, title: &str) -> Response<Body> {
    let body =
        serde_json::json!({ "type": "about:blank", "title": title, "status": status.as_u16() });
    base(status, "application/problem+json", body.to_string())
}

/// An RFC 9457 problem with members of its own (`error`, …): the caller's `body`, whose
/// members are generic or what the client must act on, never a detail for the log.
pub(crate) fn problem_json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    base(status, "application/problem+json", body.to_string())
}

/// A minimal HTML page for navigations; `title` and `message` are escaped; `link` is an
/// optional (href, text) pair, href already validated by the caller.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response<Body> {
    let link = link.map_or_else(String::new, |(href, text)| {
        format!(r#"<p><a href="{}">{}</a></p>"#, escape(href), escape(text))
    });
    let html = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{t}</title><style>body{{font:16px system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}</style>\
         <h1>{t}</h1><p>{m}</p>{link}</html>",
        t = escape(title),
        m = escape(message),
    );
    let mut r = base(status, "text/html; charset=utf-8", html);
    let h = r.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// A 302 to `location` (which the caller has validated or built).
pub(crate) fn redirect(location: &str) -> Response<Body> {
    let mut r = base(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new());
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    } else {
        // Not reachable with validated input; never send a redirect with a broken Location.
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    r
}

/// Appends `Set-Cookie` headers.
pub(crate) fn with_cookies<'a>(
    mut r: Response<Body>,
    cookies: impl IntoIterator<Item = &'a cookie::Cookie<'static>>,
) -> Response<Body> {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
            r.headers_mut().append(SET_COOKIE, v);
        }
    }
    r
}

/// HTML-escapes text for element content and quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_their_text() {
        let r = page(
            StatusCode::BAD_REQUEST,
            "<t>",
            "a\"&'<script>",
            Some(("/x?a=\"", "go")),
        );
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        assert!(
            r.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert_eq!(
            escape("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn problems_are_generic_json() {
        let r = problem(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}
