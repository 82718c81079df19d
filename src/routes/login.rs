//! `GET /bff/login?returnUrl=/path[&provider=NAME]`: starts a login flow, with the named
//! provider or, without `provider`, the first one configured.
//!
//! Fresh `state`, `nonce` and PKCE verifier from the OS CSPRNG, sealed into a per-flow login
//! cookie whose name derives from the state (so two tabs can log in at once) and whose expiry is
//! checked inside the seal; 302 to the IdP. Only top-level navigations may start a login: a
//! `fetch` would follow the redirect cross-origin and fail, and minting flows for scripts helps
//! nobody. When a browser already has `max_pending_logins` flows open, they are all cleared
//! before the new one starts: abandoned tabs cannot pile cookies up, and the newest login wins.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::app::App;
use crate::error::{Failure, Rejection};
use crate::request::single_param;
use crate::response::{self, Body};
use crate::return_url::ReturnUrl;
use crate::seal::Purpose;
use crate::seal::jar::{self, IndexSet};
use crate::secret::{SecretString, fill_random};

/// What a login cookie carries.
#[derive(Serialize, Deserialize)]
pub(crate) struct LoginFlow<'a> {
    /// The provider the flow was started for ([`crate::oidc::Provider::tag`]): only that
    /// provider's callback completes it (mix-up defence, RFC 9700 4.4).
    pub provider: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub verifier: &'a str,
    pub return_url: &'a str,
}

fn random_token() -> Result<SecretString, Failure> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    fill_random(&mut bytes[..]).map_err(|e| Failure::new(Rejection::Internal, e.to_string()))?;
    Ok(SecretString::new(URL_SAFE_NO_PAD.encode(&bytes[..])))
}

/// Whether the request is a speculative load (a prefetch or prerender the browser made on its
/// own): `Sec-Purpose: prefetch` (with or without `;prerender`), the legacy `Purpose: prefetch`,
/// or Firefox's `X-Moz: prefetch`. Such a load must not start a login: it would set a login
/// cookie and take one of the bounded pending-login slots for a flow nobody asked for. It gets
/// the 401 of a non-navigation (a non-2xx answer makes the browser discard the speculative
/// result and load the page for real when the user navigates).
fn is_speculative(headers: &http::HeaderMap) -> bool {
    ["sec-purpose", "purpose", "x-purpose", "x-moz"]
        .iter()
        .any(|name| {
            headers.get_all(*name).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split([';', ',']).any(|t| {
                        matches!(
                            t.trim().to_ascii_lowercase().as_str(),
                            "prefetch" | "prerender" | "preview"
                        )
                    })
                })
            })
        })
}

/// Handles the login request.
pub(super) fn login(
    app: &App,
    req: &Request<Incoming>,
    now: i64,
) -> Result<Response<Body>, Failure> {
    if is_speculative(req.headers()) {
        return Err(Failure::new(
            Rejection::NotNavigation,
            "login from a speculative load (prefetch or prerender)",
        ));
    }
    let mode = req.headers().get("sec-fetch-mode").map(|v| v.as_bytes());
    if mode.is_some_and(|m| m != b"navigate") {
        return Err(Failure::new(
            Rejection::NotNavigation,
            "login from a non-navigation request",
        ));
    }
    let raw = single_param(req.uri().query(), "returnUrl")
        .map_err(|()| Failure::new(Rejection::BadReturnUrl, "repeated returnUrl"))?;
    let return_url = ReturnUrl::parse_or_root(raw.as_deref())
        .map_err(|e| Failure::new(Rejection::BadReturnUrl, format!("login: {e}")))?;
    if return_url.is_under(&app.settings.bff.prefix) {
        return Err(Failure::new(
            Rejection::BadReturnUrl,
            "login: return URL under the BFF prefix",
        ));
    }

    let name = single_param(req.uri().query(), "provider")
        .map_err(|()| Failure::new(Rejection::BadRequest, "repeated provider"))?;
    let provider = app.provider_named(name.as_deref()).ok_or_else(|| {
        Failure::new(
            Rejection::LoginFailed {
                status: http::StatusCode::BAD_REQUEST,
                message: "There is no such sign-in provider.",
            },
            "login: unknown provider",
        )
    })?;

    let (state, nonce, verifier) = (random_token()?, random_token()?, random_token()?);
    let flow = LoginFlow {
        provider: provider.tag(),
        state: state.expose(),
        nonce: nonce.expose(),
        verifier: verifier.expose(),
        return_url: return_url.as_str(),
    };
    let size = postcard::experimental::serialized_size(&flow)
        .map_err(|e| Failure::new(Rejection::Internal, e.to_string()))?;
    let mut plaintext = Zeroizing::new(vec![0u8; size]);
    postcard::to_slice(&flow, &mut plaintext[..])
        .map_err(|e| Failure::new(Rejection::Internal, e.to_string()))?;

    let name = app
        .login_cookie_name(state.expose())
        .ok_or_else(|| Failure::new(Rejection::Internal, "login cookie name"))?;
    let login_secs = i64::try_from(app.settings.session.login_timeout.as_secs()).unwrap_or(600);
    let sealed = app
        .codec
        .seal(
            Purpose::Login,
            &name,
            now.saturating_add(login_secs),
            &plaintext,
        )
        .map_err(|e| Failure::new(Rejection::Internal, format!("login cookie: {e}")))?;

    let mut cookies = Vec::new();
    let pending = app.pending_login_names(req.headers());
    if pending.len() >= app.settings.session.max_pending_logins {
        tracing::info!(
            pending = pending.len(),
            "too many pending logins; clearing them"
        );
        for old in pending {
            if let Ok(old) = crate::seal::CookieName::new(old) {
                cookies.extend(jar::removal_cookies(&old, Purpose::Login, [0]));
            }
        }
    }
    cookies.extend(jar::set_cookies(
        &name,
        Purpose::Login,
        &sealed,
        now,
        IndexSet::default(),
    ));

    let url = provider.authorization_url(&state, &nonce, &verifier);
    Ok(response::with_cookies(
        response::redirect(url.as_str()),
        &cookies,
    ))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::is_speculative;

    #[test]
    fn speculative_loads_are_recognised() {
        for (name, value) in [
            ("sec-purpose", "prefetch"),
            ("sec-purpose", "prefetch;prerender"),
            ("sec-purpose", "prefetch; anonymous-client-ip"),
            ("purpose", "prefetch"),
            ("purpose", "Prefetch"),
            ("x-moz", "prefetch"),
            ("x-purpose", "preview"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            assert!(is_speculative(&h), "{name}: {value}");
        }
        let mut h = HeaderMap::new();
        assert!(!is_speculative(&h), "a plain navigation");
        h.insert("sec-fetch-mode", "navigate".parse().unwrap());
        h.insert("purpose", "other".parse().unwrap());
        assert!(!is_speculative(&h));
    }
}
