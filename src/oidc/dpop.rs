//! DPoP at the IdP (RFC 9449 5, 8): every token request of a DPoP session (code exchange,
//! refresh, route grants) and of a provider's client-credentials grants carries a fresh proof
//! for the request's method and URL. The IdP's latest `DPoP-Nonce` is kept per provider (in this
//! instance's memory) and put in later proofs; a `400 use_dpop_nonce` answer is retried once
//! with the nonce it gave. Requests without a key go through unchanged.
//!
//! The same client calls userinfo with a DPoP-bound access token: openidconnect's request says
//! `Authorization: Bearer`, which becomes `DPoP` with the proof's `ath` (RFC 9449 7.1).

use std::future::Future;
use std::pin::Pin;

use http::HeaderValue;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

use super::Provider;
use super::http::{HttpError, IdpHttpClient};
use crate::dpop::{self, DpopKey, NonceBook, TokenType};

/// The outbound client of one token-endpoint (or userinfo) call: with a key, a DPoP client.
pub(crate) struct Outbound<'a> {
    http: &'a IdpHttpClient,
    nonces: &'a NonceBook,
    key: Option<&'a DpopKey>,
    now: i64,
    /// The request's `Authorization: Bearer` token is DPoP-bound: send it as `DPoP` with `ath`.
    bound_token: bool,
    /// The status of the last response (0: none yet): openidconnect drops it when an error
    /// body is not OAuth JSON.
    last_status: std::sync::atomic::AtomicU16,
}

impl Provider {
    /// The client for a request whose proofs `key` signs (none: a plain request), dated `now`.
    pub(super) fn outbound<'a>(&'a self, key: Option<&'a DpopKey>, now: i64) -> Outbound<'a> {
        Outbound {
            http: &self.http,
            nonces: &self.dpop_nonces,
            key,
            now,
            bound_token: false,
            last_status: std::sync::atomic::AtomicU16::new(0),
        }
    }

    /// A new session's DPoP key, when this provider uses DPoP.
    ///
    /// # Errors
    /// When the OS refuses randomness.
    pub(crate) fn new_dpop_key(&self) -> Result<Option<DpopKey>, dpop::DpopError> {
        self.settings.dpop.then(DpopKey::generate).transpose()
    }

    /// The key of this instance's client-credentials grants at this provider (one per provider
    /// per instance, never a user's), when it uses DPoP.
    pub(crate) fn client_dpop_key(&self) -> Option<&DpopKey> {
        self.client_dpop_key.as_ref()
    }
}

/// The token type a grant's answer gives, as far as sealgate acts on it: `DPoP` only when it
/// sent a proof and the IdP says `DPoP`; anything else is sent as a bearer token.
pub(super) fn token_type(key: Option<&DpopKey>, answered: &str) -> TokenType {
    match (key, TokenType::parse(answered)) {
        (Some(_), Some(TokenType::Dpop)) => TokenType::Dpop,
        _ => TokenType::Bearer,
    }
}

impl Outbound<'_> {
    /// The same client, sending a bound access token (userinfo).
    pub(super) fn with_bound_token(mut self, bound: bool) -> Self {
        self.bound_token = bound && self.key.is_some();
        self
    }

    /// Sends `request`, with a proof when there is a key; retries once when the IdP asks for
    /// a nonce it gives.
    ///
    /// # Errors
    /// What [`IdpHttpClient::send`] returns; a proof that cannot be signed is a transport
    /// failure (the OS refused randomness).
    pub(super) async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = self.send_with_proof(request).await?;
        self.last_status.store(
            response.status().as_u16(),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(response)
    }

    /// The status of the last response, if one came.
    pub(super) fn status(&self) -> Option<u16> {
        match self.last_status.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }

    async fn send_with_proof(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let Some(key) = self.key else {
            return self.http.send(request).await;
        };
        let (mut parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let (htu, origin) = (dpop::htu(&url), dpop::origin(&url).to_owned());
        let ath = if self.bound_token {
            bound_authorization(&mut parts.headers)
        } else {
            None
        };
        let mut first = true;
        loop {
            let nonce = self.nonces.get(&origin);
            let proof = key
                .proof(
                    parts.method.as_str(),
                    &htu,
                    self.now,
                    nonce.as_deref(),
                    ath.as_deref(),
                )
                .map_err(|e| HttpError::Transport(e.to_string()))?;
            let mut request = http::Request::new(body.clone());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = parts.uri.clone();
            *request.version_mut() = parts.version;
            *request.headers_mut() = parts.headers.clone();
            request.headers_mut().insert(dpop::DPOP, proof);
            let response = self.http.send(request).await?;
            let given = dpop::nonce_of(response.headers()).map(str::to_owned);
            if let Some(given) = &given {
                self.nonces.put(&origin, given);
            }
            let asked = dpop::idp_wants_nonce(response.status().as_u16(), response.body())
                || dpop::upstream_wants_nonce(response.status().as_u16(), response.headers());
            // Once, and only with a nonce other than the one just refused.
            let retry = first && asked && given.is_some() && given.as_deref() != nonce.as_deref();
            if !retry {
                return Ok(response);
            }
            first = false;
            tracing::debug!(origin = %origin, "IdP asked for a DPoP nonce; retrying once");
        }
    }
}

/// `Authorization: Bearer T` made `DPoP T`; returns `ath` of `T`.
fn bound_authorization(headers: &mut http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    let token = value.to_str().ok()?.strip_prefix("Bearer ")?.to_owned();
    let token = zeroize::Zeroizing::new(token);
    let value = zeroize::Zeroizing::new(format!("DPoP {}", token.as_str()));
    let mut dpop = HeaderValue::from_str(&value).ok()?;
    dpop.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, dpop);
    Some(dpop::ath(&token))
}

impl<'c> AsyncHttpClient<'c> for Outbound<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
