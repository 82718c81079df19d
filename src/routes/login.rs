//! `GET /bff/login?returnUrl=/path[&provider=NAME]`: starts a login flow, with the named
//! provider or, without `provider`, the first one configured.
//!
//! Fresh `state`, `nonce` and PKCE verifier from the OS CSPRNG, sealed into a per-flow login
//! cookie whose name derives from the state (so two tabs can log in at once) and whose expiry is
//! checked inside the seal; 302 to the IdP (with PAR, after pushing the request). The query
//! parameters named in `[oidc] login_params` go to the IdP, each checked (a bad value is a 400,
//! nothing forwarded); any other is ignored. Only top-level navigations may start a login: a
//! `fetch` would follow the redirect cross-origin and fail, and minting flows for scripts helps
//! nobody. When a browser already has `max_pending_logins` flows open, they are all cleared
//! before the new one starts: abandoned tabs cannot pile cookies up, and the newest login wins.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::app::App;
use crate::error::{Failure, Rejection};
use crate::oidc::{ParError, Provider};
use crate::oidc_params;
use crate::request::single_param;
use crate::response::{self, Body};
use crate::return_url::ReturnUrl;
use crate::seal::Purpose;
use crate::seal::jar::{self, IndexSet};
use crate::secret::{SecretString, fill_random};

/// What a login cookie carries.
#[derive(Serialize, Deserialize)]
pub(crate) struct LoginFlow<'a> {
    pub state: &'a str,
    pub nonce: &'a str,
    pub verifier: &'a str,
    pub return_url: &'a str,
    /// The request said `prompt=none`: "log in first" answers go back to the SPA.
    pub prompt_none: bool,
    /// The request's `max_age`: the ID token's `auth_time` is checked against it.
    pub max_age: Option<u64>,
    /// The provider the flow was started for ([`crate::oidc::Provider::tag`]): only that
    /// provider's callback completes it (mix-up defence, RFC 9700 4.4).
    pub provider: &'a str,
}

/// A login cookie sealed before `prompt_none` and `max_age` existed (still open for
/// `login_timeout` after an upgrade, so logins in flight complete).
#[derive(Deserialize)]
struct LoginFlowV1<'a> {
    state: &'a str,
    nonce: &'a str,
    verifier: &'a str,
    return_url: &'a str,
}

impl<'a> LoginFlow<'a> {
    /// Reads a login cookie's payload, in either layout.
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes::<LoginFlow<'a>>(bytes).or_else(|e| {
            let v1: LoginFlowV1<'a> = postcard::from_bytes(bytes).map_err(|_| e)?;
            Ok(LoginFlow {
                state: v1.state,
                nonce: v1.nonce,
                verifier: v1.verifier,
                return_url: v1.return_url,
                prompt_none: false,
                max_age: None,
                provider: "",
            })
        })
    }
}

/// The page a refused login parameter gets (the link starts a plain login).
const BAD_PARAMETER: &str = "This sign-in request has a parameter that is not allowed.";
/// The page a failed pushed authorization request gets.
const IDP_UNAVAILABLE: &str = "The sign-in service could not be reached. Please try again.";

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

/// What the login request asks for, after the checks every login passes: a top-level
/// navigation, a local return URL outside the BFF, a known provider.
fn requested<'a>(
    app: &'a App,
    req: &Request<Incoming>,
) -> Result<(ReturnUrl, &'a Provider), Failure> {
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
                status: StatusCode::BAD_REQUEST,
                message: "There is no such sign-in provider.",
            },
            "login: unknown provider",
        )
    })?;
    Ok((return_url, provider))
}

/// The answer to a failed pushed authorization request. The IdP refusing the request as invalid
/// is the request's fault (a login option it does not take), not an outage: the "parameter not
/// allowed" page; anything else is a 502.
fn push_failed(e: ParError) -> Failure {
    let refused_request = matches!(
        &e,
        ParError::Refused { status: 400, error }
            if error == "invalid_request" || error == "invalid_scope"
    );
    let rejection = if refused_request {
        Rejection::LoginFailed {
            status: StatusCode::BAD_REQUEST,
            message: BAD_PARAMETER,
        }
    } else {
        Rejection::LoginFailed {
            status: StatusCode::BAD_GATEWAY,
            message: IDP_UNAVAILABLE,
        }
    };
    Failure::new(rejection, format!("login: {e}"))
}

/// Handles the login request.
pub(super) async fn login(
    app: &App,
    req: &Request<Incoming>,
    now: i64,
) -> Result<Response<Body>, Failure> {
    let (return_url, provider) = requested(app, req)?;

    let chosen =
        oidc_params::from_query(req.uri().query(), provider.login_param_names()).map_err(|e| {
            let rejection = Rejection::LoginFailed {
                status: StatusCode::BAD_REQUEST,
                message: BAD_PARAMETER,
            };
            Failure::new(rejection, format!("login: {e}"))
        })?;
    let params = provider.authorization_params(chosen);

    let (state, nonce, verifier) = (random_token()?, random_token()?, random_token()?);
    let flow = LoginFlow {
        state: state.expose(),
        nonce: nonce.expose(),
        verifier: verifier.expose(),
        return_url: return_url.as_str(),
        prompt_none: params.prompt_none,
        max_age: params.max_age,
        provider: provider.tag(),
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

    // With PAR the request is pushed first: when that fails, no login cookie is set.
    let url = provider
        .authorization_redirect(&state, &nonce, &verifier, &params.extra, now)
        .await
        .map_err(push_failed)?;

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

    Ok(response::with_cookies(
        response::redirect(url.as_str()),
        &cookies,
    ))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::{LoginFlow, LoginFlowV1, is_speculative};

    #[test]
    fn login_cookies_of_the_earlier_layout_still_open() {
        #[derive(serde::Serialize)]
        struct V1<'a>(&'a str, &'a str, &'a str, &'a str);
        let old = postcard::to_allocvec(&V1("s", "n", "v", "/back")).unwrap();
        let flow = LoginFlow::decode(&old).unwrap();
        assert_eq!(
            (flow.state, flow.nonce, flow.verifier, flow.return_url),
            ("s", "n", "v", "/back")
        );
        assert!(!flow.prompt_none);
        assert_eq!(flow.max_age, None);
        let new = LoginFlow {
            prompt_none: true,
            max_age: Some(30),
            ..flow
        };
        let bytes = postcard::to_allocvec(&new).unwrap();
        let back = LoginFlow::decode(&bytes).unwrap();
        assert!(back.prompt_none);
        assert_eq!(back.max_age, Some(30));
        // An instance still on the earlier layout reads the new one too (trailing fields).
        let old_reader: LoginFlowV1<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(old_reader.return_url, "/back");
    }

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
