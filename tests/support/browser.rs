//! A minimal browser for the integration tests: one cookie jar per origin, redirects, and a
//! map from public origins (`https://app.example.com`) to the plain-http addresses the test
//! servers really listen on.
//!
//! What it models, and what it deliberately does not:
//! - Every `Set-Cookie` is applied to the jar of the *public* origin of the request. `Max-Age`
//!   ≤ 0 or an `Expires` in the past deletes; otherwise name → value is stored. `Path`,
//!   `Domain` and `SameSite` are ignored (one jar per origin, every cookie sent on every request
//!   to it).
//! - `Secure` is ignored for *sending*: tests speak plain http, sealgate sets `Secure`
//!   `__Host-` cookies, and the jar stands in for an https origin. The attribute rules a real
//!   browser enforces when *storing* are kept, because sealgate getting them wrong means the
//!   browser silently drops its cookie: a `__Host-` cookie needs `Secure`, `Path=/` and no
//!   `Domain`; a `__Secure-` cookie needs `Secure`; a cookie whose name plus value exceeds
//!   4096 bytes is dropped. Dropped cookies are reported on stderr and in
//!   [`Browser::rejected_cookies`].
//! - URLs must be absolute. Fragments are not sent.
//! - Connections are not pooled, so a server's graceful shutdown never waits on this client.
//! - An explicit `Cookie` or `Host` header in a request's `headers` replaces the one the
//!   browser would send (to forge or omit cookies).

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;
use cookie::Cookie;
use cookie::time::{Duration, OffsetDateTime};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use url::{Position, Url};

/// Redirects [`Browser::navigate`] follows before it declares a loop.
pub const MAX_REDIRECTS: usize = 10;
/// Browsers drop a cookie whose name and value together exceed this (RFC 6265bis).
pub const MAX_COOKIE_BYTES: usize = 4096;

const NAVIGATE_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The serialized origin of an absolute URL: `scheme://host[:port]` (default port omitted).
pub fn origin_of(url: &str) -> String {
    parse_absolute(url).origin().ascii_serialization()
}

fn parse_absolute(url: &str) -> Url {
    Url::parse(url).unwrap_or_else(|e| panic!("Browser needs an absolute URL, got {url:?}: {e}"))
}

/// One HTTP response, as the browser saw it.
#[derive(Clone, Debug)]
pub struct Resp {
    /// The status code.
    pub status: StatusCode,
    /// All response headers.
    pub headers: HeaderMap,
    /// The body, decoded as UTF-8 (lossily).
    pub body: String,
    /// The (public) URL this response answered.
    pub url: String,
    /// For [`Browser::navigate`] and friends: the URLs requested before [`Resp::url`], in
    /// order (empty when there was no redirect).
    pub redirects: Vec<String>,
}

impl Resp {
    /// The `Location` header.
    pub fn location(&self) -> Option<String> {
        self.header(header::LOCATION.as_str())
    }

    /// The first value of a header, if it is visible ASCII.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Every `Set-Cookie` of this response, parsed with all attributes (unparseable ones are
    /// skipped, as a browser would).
    pub fn set_cookies(&self) -> Vec<Cookie<'static>> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| Cookie::parse(v.to_owned()).ok())
            .map(Cookie::into_owned)
            .collect()
    }

    /// The body as JSON; panics (showing status and body) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response from {} is not JSON ({e}): {} {:?}",
                self.url, self.status, self.body
            )
        })
    }
}

/// A cookie the jar refused to store, and why.
#[derive(Clone, Debug)]
pub struct RejectedCookie {
    /// The public origin it was set for.
    pub origin: String,
    /// The cookie's name.
    pub name: String,
    /// Why a browser would drop it.
    pub reason: &'static str,
}

/// A cookie-keeping HTTP/1.1 client that behaves like a browser for redirects and cookies.
pub struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Public origin → cookies in the order they were first set.
    jars: HashMap<String, Vec<(String, String)>>,
    /// Public origin → actual `http://127.0.0.1:PORT` origin.
    origins: HashMap<String, String>,
    rejected: Vec<RejectedCookie>,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cookie values are session secrets even in tests; show only the names.
        let jars: HashMap<&String, Vec<&String>> = self
            .jars
            .iter()
            .map(|(origin, jar)| (origin, jar.iter().map(|(name, _)| name).collect()))
            .collect();
        f.debug_struct("Browser")
            .field("origins", &self.origins)
            .field("cookies", &jars)
            .finish_non_exhaustive()
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    /// A browser with empty jars and no origin mappings.
    pub fn new() -> Browser {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        Browser {
            client,
            jars: HashMap::new(),
            origins: HashMap::new(),
            rejected: Vec::new(),
        }
    }

    /// Sends requests for `public` (e.g. `https://app.example.com`) to `actual` (e.g.
    /// `http://127.0.0.1:4567`), with `Host` still the public one; cookies are kept under the
    /// public origin.
    ///
    /// `actual` may also be a bare `127.0.0.1:PORT` (a `SocketAddr`'s display).
    pub fn map_origin(&mut self, public: &str, actual: &str) {
        let actual = if actual.contains("://") {
            origin_of(actual)
        } else {
            origin_of(&format!("http://{actual}"))
        };
        assert!(
            actual.starts_with("http://"),
            "the browser speaks plain http only; {actual} cannot be an actual address"
        );
        self.origins.insert(origin_of(public), actual);
    }

    /// One GET, no redirect following; sends and stores cookies.
    pub async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::GET, url, headers, "").await
    }

    /// One POST with `body` as is (give `Content-Type` in `headers`); sends and stores cookies.
    pub async fn post(&mut self, url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        self.request(Method::POST, url, headers, body).await
    }

    /// Any single request, no redirect following; sends and stores cookies.
    pub async fn request(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let public = parse_absolute(url);
        let origin = public.origin().ascii_serialization();
        let actual = self.origins.get(&origin).unwrap_or(&origin);
        assert!(
            actual.starts_with("http://"),
            "the browser cannot speak TLS to {origin}; map_origin it to a plain-http address"
        );
        let target = format!(
            "{actual}{}",
            &public[Position::BeforePath..Position::AfterQuery]
        );

        let mut map = HeaderMap::new();
        let overridden = |name: &HeaderName| {
            headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name.as_str()))
        };
        if !overridden(&header::HOST) {
            let host = &public[Position::BeforeHost..Position::AfterPort];
            map.insert(header::HOST, value(host));
        }
        if !overridden(&header::COOKIE) {
            let cookie = self.cookie_header(&origin);
            if !cookie.is_empty() {
                map.insert(header::COOKIE, value(&cookie));
            }
        }
        for (name, v) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|e| panic!("bad header name {name:?}: {e}"));
            map.append(name, value(v));
        }

        let mut request = Request::builder()
            .method(method.clone())
            .uri(&target)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap_or_else(|e| panic!("cannot build a request for {target}: {e}"));
        *request.headers_mut() = map;
        let response = self
            .client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {url} (sent to {target}) failed: {e:?}"));
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("reading the body of {method} {url} failed: {e}"))
            .to_bytes();

        let resp = Resp {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            url: public.to_string(),
            redirects: Vec::new(),
        };
        for cookie in resp.set_cookies() {
            self.store(&origin, &cookie);
        }
        resp
    }

    /// A top-level navigation the user started (typed URL, bookmark): GET with
    /// `Sec-Fetch-Mode: navigate`, `Sec-Fetch-Site: none`, `Sec-Fetch-Dest: document`,
    /// `Sec-Fetch-User: ?1` and an HTML `Accept`; follows 301/302/303/307/308 (relative
    /// `Location` resolved against the current URL) and returns the final response. Panics
    /// after [`MAX_REDIRECTS`] redirects.
    pub async fn navigate(&mut self, url: &str) -> Resp {
        self.follow(Method::GET, url, None, &[], "").await
    }

    /// A navigation a page of `initiator`'s origin started (`location.href = ...`, a link):
    /// like [`Browser::navigate`], but each hop's `Sec-Fetch-Site` is computed from the
    /// initiator and the redirect chain as the Fetch Metadata spec says (`same-origin`,
    /// `same-site`, or `cross-site` once any hop left the site; "site" is approximated as
    /// scheme plus the last two host labels), and there is no `Sec-Fetch-User`.
    pub async fn navigate_from(&mut self, initiator: &str, url: &str) -> Resp {
        let initiator = origin_of(initiator);
        self.follow(Method::GET, url, Some(&initiator), &[], "")
            .await
    }

    /// A form submission from a page of `url`'s own origin: POST with `Origin`,
    /// `Content-Type: application/x-www-form-urlencoded` and navigation metadata, then
    /// redirects as [`Browser::navigate_from`] (303/301/302 become GET; 307/308 re-POST).
    pub async fn submit(&mut self, url: &str, headers: &[(&str, &str)], form_body: &str) -> Resp {
        let initiator = origin_of(url);
        self.follow(Method::POST, url, Some(&initiator), headers, form_body)
            .await
    }

    async fn follow(
        &mut self,
        method: Method,
        url: &str,
        initiator: Option<&str>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let mut method = method;
        let mut body = body.to_owned();
        let mut current = parse_absolute(url).to_string();
        let mut chain: Vec<String> = Vec::new();
        for _ in 0..=MAX_REDIRECTS {
            chain.push(current.clone());
            let site = fetch_site(initiator, &chain);
            let mut headers: Vec<(&str, &str)> = vec![
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-site", site),
                ("sec-fetch-dest", "document"),
                ("accept", NAVIGATE_ACCEPT),
            ];
            if initiator.is_none() {
                headers.push(("sec-fetch-user", "?1"));
            }
            if method == Method::POST {
                if let Some(origin) = initiator {
                    headers.push(("origin", origin));
                }
                headers.push(("content-type", "application/x-www-form-urlencoded"));
            }
            headers.extend_from_slice(extra);
            let mut resp = self
                .request(method.clone(), &current, &headers, &body)
                .await;
            let redirect = matches!(resp.status.as_u16(), 301 | 302 | 303 | 307 | 308);
            match resp.location().filter(|_| redirect) {
                Some(location) => {
                    let next = parse_absolute(&current)
                        .join(&location)
                        .unwrap_or_else(|e| {
                            panic!("bad Location {location:?} from {current}: {e}")
                        });
                    current = next.to_string();
                    if !matches!(resp.status.as_u16(), 307 | 308) {
                        method = Method::GET;
                        body.clear();
                    }
                }
                None => {
                    chain.pop();
                    resp.redirects = chain;
                    return resp;
                }
            }
        }
        panic!("redirect loop: more than {MAX_REDIRECTS} redirects: {chain:#?}");
    }

    /// The value of cookie `name` in `origin`'s jar.
    pub fn cookie(&self, origin: &str, name: &str) -> Option<String> {
        self.jars
            .get(&origin_of(origin))?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// The names of the cookies in `origin`'s jar, in the order they were first set.
    pub fn cookie_names(&self, origin: &str) -> Vec<String> {
        self.jars
            .get(&origin_of(origin))
            .map(|jar| jar.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default()
    }

    /// Plants (or overwrites) a cookie, as an attacker or another tab might.
    pub fn set_cookie(&mut self, origin: &str, name: &str, value: &str) {
        let jar = self.jars.entry(origin_of(origin)).or_default();
        upsert(jar, name, value);
    }

    /// Removes a cookie from `origin`'s jar.
    pub fn remove_cookie(&mut self, origin: &str, name: &str) {
        if let Some(jar) = self.jars.get_mut(&origin_of(origin)) {
            jar.retain(|(n, _)| n != name);
        }
    }

    /// A copy of `origin`'s jar, to replay later with [`Browser::import_cookies`].
    pub fn export_cookies(&self, origin: &str) -> Vec<(String, String)> {
        self.jars
            .get(&origin_of(origin))
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces `origin`'s jar with `cookies` (e.g. an old export: replaying a stolen or
    /// pre-logout cookie set exactly, chunks and all).
    pub fn import_cookies(&mut self, origin: &str, cookies: Vec<(String, String)>) {
        self.jars.insert(origin_of(origin), cookies);
    }

    /// Every cookie the jar refused to store so far (see the module docs).
    pub fn rejected_cookies(&self) -> &[RejectedCookie] {
        &self.rejected
    }

    /// The `Cookie` header the browser sends to `origin` now (empty if the jar is).
    pub fn cookie_header(&self, origin: &str) -> String {
        self.jars
            .get(&origin_of(origin))
            .map(|jar| {
                jar.iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    fn store(&mut self, origin: &str, cookie: &Cookie<'_>) {
        if let Some(reason) = refusal(cookie) {
            eprintln!(
                "browser: dropped Set-Cookie {:?} from {origin}: {reason}",
                cookie.name()
            );
            self.rejected.push(RejectedCookie {
                origin: origin.to_owned(),
                name: cookie.name().to_owned(),
                reason,
            });
            return;
        }
        let jar = self.jars.entry(origin.to_owned()).or_default();
        // Max-Age wins over Expires (RFC 6265 5.3 step 3).
        let expired = match cookie.max_age() {
            Some(age) => age <= Duration::ZERO,
            None => cookie
                .expires_datetime()
                .is_some_and(|at| at <= OffsetDateTime::now_utc()),
        };
        if expired {
            jar.retain(|(n, _)| n != cookie.name());
        } else {
            upsert(jar, cookie.name(), cookie.value());
        }
    }
}

/// Why a browser would refuse to store this cookie, if it would.
fn refusal(cookie: &Cookie<'_>) -> Option<&'static str> {
    let name = cookie.name();
    let secure = cookie.secure() == Some(true);
    if name.starts_with("__Host-") {
        if !secure {
            return Some("__Host- cookie without Secure");
        }
        if cookie.path() != Some("/") {
            return Some("__Host- cookie without Path=/");
        }
        if cookie.domain().is_some() {
            return Some("__Host- cookie with a Domain");
        }
    } else if name.starts_with("__Secure-") && !secure {
        return Some("__Secure- cookie without Secure");
    }
    if name.len() + cookie.value().len() > MAX_COOKIE_BYTES {
        return Some("name and value exceed 4096 bytes");
    }
    None
}

fn upsert(jar: &mut Vec<(String, String)>, name: &str, value: &str) {
    match jar.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => value.clone_into(&mut entry.1),
        None => jar.push((name.to_owned(), value.to_owned())),
    }
}

fn value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|e| panic!("bad header value {v:?}: {e}"))
}

/// `Sec-Fetch-Site` for the last URL of `chain` (Fetch Metadata, "set the Sec-Fetch-Site
/// header"): `none` for user-started navigations, otherwise the weakest relation between the
/// initiator and any URL in the chain.
fn fetch_site(initiator: Option<&str>, chain: &[String]) -> &'static str {
    let Some(initiator) = initiator else {
        return "none";
    };
    let initiator = parse_absolute(initiator);
    let mut site = "same-origin";
    for url in chain {
        let url = parse_absolute(url);
        if url.origin() == initiator.origin() {
            continue;
        }
        if url.scheme() == initiator.scheme() && registrable(&url) == registrable(&initiator) {
            site = "same-site";
        } else {
            return "cross-site";
        }
    }
    site
}

/// An approximation of the registrable domain: the last two labels of a domain name, or the
/// whole host for an IP address or a single label. Good enough for test hosts, no public
/// suffix list.
fn registrable(url: &Url) -> String {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let labels: Vec<&str> = d.split('.').collect();
            labels[labels.len().saturating_sub(2)..].join(".")
        }
        Some(host) => host.to_string(),
        None => String::new(),
    }
}
