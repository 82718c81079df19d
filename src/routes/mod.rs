//! Request routing: one file per endpoint. Every handler returns `Result<Response, Failure>`;
//! [`handle`] turns failures into responses in one place, so hyper never sees an error.

pub mod backchannel;
pub mod callback;
pub mod login;
pub mod logout;
pub mod proxy;
pub mod user;

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::error::{Failure, Rejection};
use crate::response::{self, Body};

/// Serves one request.
pub async fn handle(
    app: Arc<App>,
    mut req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let now = app.clock.now();
    req.extensions_mut().insert(Peer(peer));
    // Only origin-form targets: an absolute-form target or CONNECT would let a client name
    // another host (HTTP/2 always carries :authority, so only HTTP/1 is checked).
    if req.method() == Method::CONNECT
        || (req.version() < http::Version::HTTP_2 && req.uri().authority().is_some())
    {
        let f = Failure::new(Rejection::BadRequest, "absolute-form target or CONNECT");
        return Ok(f.into_response(&app.login_href()));
    }
    let origin = cors_origin(&app, &req);
    if req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method")
    {
        return Ok(preflight(&app, origin));
    }
    let result = route(&app, req, now).await;
    let mut response = result.unwrap_or_else(|failure| failure.into_response(&app.login_href()));
    if let Some(origin) = origin {
        allow_origin(&mut response, origin);
    }
    Ok(response)
}

/// The request's `Origin` when it is an allowed *other* origin (same-origin requests need no
/// CORS headers). Never a reflected arbitrary origin, never `*`.
fn cors_origin(app: &App, req: &Request<Incoming>) -> Option<HeaderValue> {
    let origin = req.headers().get(http::header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    app.settings
        .bff
        .allowed_origins
        .iter()
        .any(|o| o == text)
        .then(|| origin.clone())
}

fn allow_origin(response: &mut Response<Body>, origin: HeaderValue) {
    let h = response.headers_mut();
    h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

/// A CORS preflight: 204 with the exact origin for allowed origins, 403 otherwise.
fn preflight(app: &App, origin: Option<HeaderValue>) -> Response<Body> {
    let Some(origin) = origin else {
        return response::problem(StatusCode::FORBIDDEN, "forbidden");
    };
    let mut r = Response::new(response::full(""));
    *r.status_mut() = StatusCode::NO_CONTENT;
    allow_origin(&mut r, origin);
    let allowed_headers = format!("{}, content-type", app.settings.bff.csrf_header.as_str());
    let h = r.headers_mut();
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
    );
    if let Ok(v) = HeaderValue::from_str(&allowed_headers) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

async fn route(app: &App, req: Request<Incoming>, now: i64) -> Result<Response<Body>, Failure> {
    let path = req.uri().path();
    let prefix = app.settings.bff.prefix.as_str();
    if let Some(endpoint) = path
        .strip_prefix(prefix)
        .filter(|rest| rest.starts_with('/'))
    {
        return match (endpoint, req.method()) {
            ("/login", &Method::GET) => login::login(app, &req, now),
            ("/callback", &Method::GET) => callback::callback(app, &req, now).await,
            ("/user", &Method::GET) => user::user(app, &req, now),
            ("/logout", &Method::GET | &Method::POST) => logout::logout(app, &req, now).await,
            ("/backchannel-logout", &Method::POST) => {
                backchannel::backchannel_logout(app, req, now).await
            }
            ("/login" | "/callback" | "/user" | "/logout" | "/backchannel-logout", _) => {
                Err(Failure::new(
                    Rejection::MethodNotAllowed,
                    format!("{} {path}", req.method()),
                ))
            }
            _ => Err(Failure::new(Rejection::NotFound, path.to_owned())),
        };
    }
    match path {
        "/healthz" => {
            return Ok(response::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ok"}),
            ));
        }
        "/" if app.home_page.is_some() && req.method() == Method::GET => {
            if let Some(page) = app.home_page {
                return Ok(home(page));
            }
        }
        _ => {}
    }
    if let Some(route) = proxy::match_route(&app.settings.routes, path) {
        let route = route.clone();
        return proxy::forward(app, &route, req, now).await;
    }
    Err(Failure::new(Rejection::NotFound, path.to_owned()))
}

fn home(page: &'static str) -> Response<Body> {
    let mut r = Response::new(response::full(page));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    r
}

/// The client's address, as seen by the listener.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The single value of query parameter `name`; `Err` if it appears more than once.
pub(crate) fn single_param(query: Option<&str>, name: &str) -> Result<Option<String>, ()> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}
