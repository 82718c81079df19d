//! The OpenID Provider, seen from sealgate. [`Provider`] is the configured IdP after discovery;
//! its methods live with the concern they serve:
//!
//! - `discovery`: the metadata document, its endpoint checks, and the JWKS: fetched at start,
//!   refetched for an unknown `kid` at most once per cooldown (so key rotation at the IdP needs
//!   no restart and a flood of forged `kid`s cannot turn sealgate into a JWKS-fetching
//!   amplifier). ID tokens and logout tokens share this one key set.
//! - `id_token`: ID token validation (OIDC Core 3.1.3.7) by openidconnect (signature, `iss`,
//!   `aud`, `exp`, `nonce`), with an asymmetric-only algorithm allowlist (no `none`, no HMAC of
//!   any kind, so a public key can never be used as an HMAC secret), a clock from the caller,
//!   `iat` bounds, and the `azp` rule openidconnect leaves to its users.
//! - `grants`: the authorization request, the code exchange (with userinfo), refresh, and
//!   token revocation (RFC 7009); `par`: pushing the authorization request (RFC 9126) when
//!   the IdP offers or requires it.
//! - `logout`: RP-initiated logout URLs, and the provider side of back-channel logout:
//!   [`logout_token`] validates the token (pure) with the same keys and algorithm allowlist as
//!   ID tokens and openidconnect's signature check, sharing the refetch rule: only a token that
//!   passed every check needing no key may cause a refetch.
//! - `dpop`: DPoP proofs on token requests (RFC 9449), the IdP's nonce and its one retry.
//! - [`http`]: the outbound client every IdP call goes through (timeouts, body cap, no
//!   redirects).

mod claims;
mod client_auth;
mod discovery;
mod dpop;
mod error;
mod grants;
pub(crate) mod http;
mod id_token;
mod logout;
pub(crate) mod logout_token;
mod par;
mod route_grants;

use std::sync::{Mutex, RwLock};
use std::time::Instant;

use openidconnect::core::{CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl};
use url::Url;

pub(crate) use self::claims::{check_auth_time, numeric_date};
pub(crate) use self::discovery::{DiscoveryError, ExtraMetadata};
pub(crate) use self::error::{LoginError, ParError, RefreshError, error_code, loggable_error};
pub(crate) use self::grants::{LoginTokens, Refreshed};
use self::http::IdpHttpClient;
pub(crate) use self::par::{MAX_REQUEST_URI_LEN, parse_par_response};
pub(crate) use self::route_grants::{Granted, RouteGrantError, parse_token_response};
use crate::config::OidcSettings;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The configured OpenID Provider after discovery.
pub(crate) struct Provider {
    settings: OidcSettings,
    /// [`Provider::tag`], computed once.
    tag: String,
    issuer_url: IssuerUrl,
    http: IdpHttpClient,
    client: Client,
    /// The token endpoint URL from discovery (the default `aud` of client assertions).
    token_endpoint: String,
    metadata_extra: ExtraMetadata,
    jwks_uri: openidconnect::JsonWebKeySetUrl,
    /// The IdP's keys, for ID tokens and logout tokens alike; replaced by a refetch.
    jwks: RwLock<CoreJsonWebKeySet>,
    last_refetch: Mutex<Option<Instant>>,
    /// `oidc.id_token_signing_algs`, for ID tokens and logout tokens alike.
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    end_session: Option<Url>,
    /// Where authorization requests are pushed (RFC 9126), when they are.
    par_endpoint: Option<Url>,
    /// The IdP's latest `DPoP-Nonce` (RFC 9449 8), in this instance's memory.
    dpop_nonces: crate::dpop::NonceBook,
    /// This instance's key for client-credentials grants, when `dpop = true`.
    client_dpop_key: Option<crate::dpop::DpopKey>,
}

/// `callback name ~ base64url(SHA-256("sealgate provider" 0 issuer 0 client_id)[..9])`.
pub(crate) fn provider_tag(settings: &OidcSettings) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        "sealgate provider",
        settings.issuer.as_str(),
        settings.client_id.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let name = if settings.listed {
        settings.name.as_str()
    } else {
        ""
    };
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..9]);
    format!("{name}~{hash}")
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The issuer identifier.
    pub(crate) fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The configured name (`/bff/login?provider=`, `/bff/user`).
    pub(crate) fn name(&self) -> &str {
        &self.settings.name
    }

    /// The path segment of its callback: the name of a `[[providers]]` entry, empty for a lone
    /// `[oidc]` (`/bff/callback`).
    pub(crate) fn callback_name(&self) -> &str {
        if self.settings.listed {
            &self.settings.name
        } else {
            ""
        }
    }

    /// What its sessions and login flows seal to name it: the callback name and a hash of the
    /// issuer and client id ([`provider_tag`]). A provider renamed, or a name given to another
    /// IdP or client, no longer matches the sessions of the old one: they are refused, never sent
    /// to the wrong token endpoint.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// Whether a session or login flow sealed with `tag` belongs to this provider. An empty tag
    /// is a cookie of format 1 (one provider only): it belongs to a lone `[oidc]`.
    pub(crate) fn is_tagged(&self, tag: &str) -> bool {
        tag == self.tag || (tag.is_empty() && !self.settings.listed)
    }

    /// Whether the IdP promises an `iss` parameter in authorization responses (RFC 9207).
    pub(crate) fn sends_iss_parameter(&self) -> bool {
        self.metadata_extra
            .authorization_response_iss_parameter_supported
    }

    /// The tolerated clock difference with the IdP, in seconds.
    pub(crate) fn clock_skew(&self) -> i64 {
        i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(i64::MAX)
    }

    /// Whether the IdP has an RFC 7009 revocation endpoint.
    pub(crate) fn can_revoke(&self) -> bool {
        self.metadata_extra.revocation_endpoint.is_some()
    }
}
