//! Discovery: the provider metadata (with the fields openidconnect's core set lacks), the
//! checks on every endpoint it names, and the JWKS, fetched with the metadata and refetched
//! when a token names a key the set lacks.

use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::Instant;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, ClientId, ClientSecret, IssuerUrl, ProviderMetadata,
    RedirectUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::Provider;
use super::http::{self, IdpHttpClient};
use crate::config::{OidcSettings, ParMode, TokenEndpointAuth};
use crate::outbound::error_chain;

/// Provider metadata fields openidconnect's core set lacks.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct ExtraMetadata {
    /// RFC 9207: the IdP sends `iss` in authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// RP-initiated logout endpoint.
    pub end_session_endpoint: Option<String>,
    /// RFC 7009 revocation endpoint.
    pub revocation_endpoint: Option<String>,
    /// RFC 9126 pushed authorization request endpoint.
    pub pushed_authorization_request_endpoint: Option<String>,
    /// RFC 9126: the IdP accepts only pushed authorization requests.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 5.1: the DPoP proof algorithms the IdP accepts.
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// Discovery document with the extra fields.
pub(super) type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Start-up failures talking to the IdP.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// Discovery failed (unreachable, bad document, or an issuer other than configured).
    #[error("OIDC discovery for {issuer} failed: {reason}")]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// `oidc.par` and what the IdP advertises disagree.
    #[error("OIDC discovery for {issuer}: {problem}")]
    Par {
        /// The configured issuer.
        issuer: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The metadata names an endpoint sealgate will not call.
    #[error("OIDC discovery for {issuer}: {field} {problem}")]
    Endpoint {
        /// The configured issuer.
        issuer: String,
        /// The metadata field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

fn endpoint_url(issuer: &str, field: &'static str, text: &str) -> Result<Url, DiscoveryError> {
    let err = |problem: String| DiscoveryError::Endpoint {
        issuer: issuer.to_owned(),
        field,
        problem,
    };
    let url = Url::parse(text).map_err(|e| err(format!("is not a URL: {e}")))?;
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(err("must be https (http only on loopback)".into())),
    }
}

/// Every endpoint the metadata names must be https (http only on loopback).
fn check_endpoints(
    issuer: &str,
    metadata: &Metadata,
    extra: &ExtraMetadata,
) -> Result<(), DiscoveryError> {
    for (field, value) in [
        (
            "authorization_endpoint",
            Some(metadata.authorization_endpoint().as_str()),
        ),
        (
            "token_endpoint",
            metadata.token_endpoint().map(|u| u.as_str()),
        ),
        ("jwks_uri", Some(metadata.jwks_uri().as_str())),
        (
            "userinfo_endpoint",
            metadata.userinfo_endpoint().map(|u| u.as_str()),
        ),
        ("revocation_endpoint", extra.revocation_endpoint.as_deref()),
        (
            "pushed_authorization_request_endpoint",
            extra.pushed_authorization_request_endpoint.as_deref(),
        ),
        (
            "end_session_endpoint",
            extra.end_session_endpoint.as_deref(),
        ),
    ] {
        if let Some(v) = value {
            endpoint_url(issuer, field, v)?;
        }
    }
    Ok(())
}

/// The PAR endpoint authorization requests are pushed to, if any, for `mode` and what the
/// IdP advertises: `auto` pushes when there is an endpoint; `always` needs one; the IdP's
/// `require_pushed_authorization_requests` needs one and refuses `never`.
fn par_endpoint(
    issuer: &str,
    mode: ParMode,
    extra: &ExtraMetadata,
) -> Result<Option<Url>, DiscoveryError> {
    let err = |problem| DiscoveryError::Par {
        issuer: issuer.to_owned(),
        problem,
    };
    let endpoint = extra
        .pushed_authorization_request_endpoint
        .as_deref()
        .map(|u| endpoint_url(issuer, "pushed_authorization_request_endpoint", u))
        .transpose()?;
    let required = extra.require_pushed_authorization_requests;
    match (mode, endpoint) {
        (ParMode::Never, _) if required => {
            Err(err("the IdP requires pushed authorization requests \
             (require_pushed_authorization_requests) but oidc.par = \"never\""))
        }
        (ParMode::Never, _) => Ok(None),
        (_, Some(url)) => Ok(Some(url)),
        (ParMode::Always, None) => Err(err(
            "oidc.par = \"always\" but the metadata has no pushed_authorization_request_endpoint",
        )),
        (ParMode::Auto, None) if required => Err(err(
            "the IdP requires pushed authorization requests but names no \
             pushed_authorization_request_endpoint",
        )),
        (ParMode::Auto, None) => Ok(None),
    }
}

/// Why the metadata suggests the IdP will refuse this client's authentication, if it does: the
/// method missing from `token_endpoint_auth_methods_supported` (`methods`), or for
/// `private_key_jwt` the key's algorithm missing from
/// `token_endpoint_auth_signing_alg_values_supported` (`algs`). Absent lists say nothing. A
/// warning, not a refusal: metadata often lists less than the IdP accepts, and a refused method
/// shows at the first login (`invalid_client`).
fn auth_method_warning(
    auth: &TokenEndpointAuth,
    methods: Option<&[String]>,
    algs: Option<&[String]>,
) -> Option<String> {
    let method = auth.name();
    if let Some(methods) = methods
        && !methods.iter().any(|m| m == method)
    {
        return Some(format!(
            "token_endpoint_auth = {method:?}, but the IdP's token_endpoint_auth_methods_supported \
             lists only {methods:?}"
        ));
    }
    let TokenEndpointAuth::PrivateKeyJwt(config) = auth else {
        return None;
    };
    let alg = config.key.alg().name();
    let algs = algs?;
    if algs.iter().any(|a| a == alg) {
        return None;
    }
    Some(format!(
        "the client assertion key signs {alg}, but the IdP's \
         token_endpoint_auth_signing_alg_values_supported lists only {algs:?}"
    ))
}

/// Why the metadata suggests the IdP will not bind tokens to ES256 proofs, when `dpop` is on:
/// no `dpop_signing_alg_values_supported`, or one without ES256. A warning, not a refusal:
/// some IdPs accept DPoP without advertising it, and one that does not bind answers
/// `token_type: Bearer`, which sealgate then sends as a bearer token.
fn dpop_warning(dpop: bool, extra: &ExtraMetadata) -> Option<String> {
    if !dpop {
        return None;
    }
    match &extra.dpop_signing_alg_values_supported {
        None => Some(
            "dpop = true, but the IdP's metadata has no dpop_signing_alg_values_supported: it may \
             not bind tokens (they are then sent as bearer tokens)"
                .to_owned(),
        ),
        Some(algs) if !algs.iter().any(|a| a == "ES256") => Some(format!(
            "dpop = true signs ES256 proofs, but the IdP's dpop_signing_alg_values_supported \
             lists only {algs:?}"
        )),
        Some(_) => None,
    }
}

/// Metadata values as the document spells them (`"private_key_jwt"`, `"ES256"`).
fn wire_names<T: Serialize>(values: Option<&Vec<T>>) -> Option<Vec<String>> {
    let name = |value: &T| match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    };
    values.map(|v| v.iter().map(name).collect())
}

impl Provider {
    /// Runs discovery for the configured issuer and fetches its JWKS.
    ///
    /// # Errors
    /// When the IdP is unreachable, its issuer differs from the configured one, or an endpoint
    /// is unusable.
    pub(crate) async fn discover(
        settings: &OidcSettings,
        redirect_uri: String,
    ) -> Result<Self, DiscoveryError> {
        let http = IdpHttpClient::new(settings.timeout)?;
        let issuer = settings.issuer.clone();
        let disc_err = |reason: String| DiscoveryError::Discovery {
            issuer: issuer.clone(),
            reason,
        };
        let issuer_url = IssuerUrl::new(issuer.clone()).map_err(|e| disc_err(e.to_string()))?;
        // openidconnect compares the discovered issuer with this one and refuses a mismatch.
        let metadata = Metadata::discover_async(issuer_url.clone(), &http)
            .await
            .map_err(|e| disc_err(error_chain(&e)))?;
        let mut extra = metadata.additional_metadata().clone();
        check_endpoints(&issuer, &metadata, &extra)?;
        // A configured revocation endpoint wins (checked as a URL by the configuration).
        if let Some(url) = &settings.revocation_endpoint {
            extra.revocation_endpoint = Some(url.to_string());
        }
        let Some(token_endpoint) = metadata.token_endpoint().map(|u| u.as_str().to_owned()) else {
            return Err(disc_err("the metadata has no token_endpoint".into()));
        };
        let methods = wire_names(metadata.token_endpoint_auth_methods_supported());
        let algs = wire_names(metadata.token_endpoint_auth_signing_alg_values_supported());
        if let Some(warning) = auth_method_warning(
            &settings.token_endpoint_auth,
            methods.as_deref(),
            algs.as_deref(),
        ) {
            tracing::warn!(issuer = %issuer, "{warning}");
        }
        let par_endpoint = par_endpoint(&issuer, settings.par, &extra)?;
        if let Some(warning) = dpop_warning(settings.dpop, &extra) {
            tracing::warn!(issuer = %issuer, "{warning}");
        }
        let client_dpop_key = settings
            .dpop
            .then(crate::dpop::DpopKey::generate)
            .transpose()
            .map_err(|e| disc_err(e.to_string()))?;
        // A configured endpoint wins (checked as a URL by the configuration).
        let end_session = match &settings.end_session_endpoint {
            Some(url) => Some(url.clone()),
            None => extra
                .end_session_endpoint
                .as_deref()
                .map(|u| endpoint_url(&issuer, "end_session_endpoint", u))
                .transpose()?,
        };
        // Config allows only the asymmetric algorithms, all of which openidconnect knows.
        let allowed_algs = settings
            .id_token_signing_algs
            .iter()
            .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
            .collect();
        let jwks_uri = metadata.jwks_uri().clone();
        let jwks = metadata.jwks().clone();
        let redirect = RedirectUrl::new(redirect_uri).map_err(|e| disc_err(e.to_string()))?;
        // With private_key_jwt, no secret and the client id in the body: the grants add the
        // assertion to openidconnect's requests, which then carry no other credential.
        let (secret, auth_type) = match &settings.token_endpoint_auth {
            TokenEndpointAuth::Basic(s) => (Some(s), AuthType::BasicAuth),
            TokenEndpointAuth::Post(s) => (Some(s), AuthType::RequestBody),
            TokenEndpointAuth::PrivateKeyJwt(_) => (None, AuthType::RequestBody),
        };
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            secret.map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type);
        Ok(Self {
            tag: super::provider_tag(settings),
            settings: settings.clone(),
            issuer_url,
            http,
            client,
            token_endpoint,
            metadata_extra: extra,
            jwks_uri,
            jwks: RwLock::new(jwks),
            last_refetch: Mutex::new(None),
            allowed_algs,
            end_session,
            par_endpoint,
            dpop_nonces: crate::dpop::NonceBook::default(),
            client_dpop_key,
        })
    }

    /// The current key set (a poisoned lock still holds the last complete set).
    pub(super) fn keys(&self) -> RwLockReadGuard<'_, CoreJsonWebKeySet> {
        self.jwks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refetches the JWKS unless one was refetched within the cooldown. Returns whether the
    /// key set was replaced.
    pub(super) async fn refetch_jwks(&self) -> bool {
        {
            let Ok(mut last) = self.last_refetch.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < self.settings.jwks_refetch_cooldown) {
                tracing::warn!("a token names an unknown key; JWKS refetch skipped (cooldown)");
                return false;
            }
            *last = Some(Instant::now());
        }
        match CoreJsonWebKeySet::fetch_async(&self.jwks_uri, &self.http).await {
            Ok(keys) => {
                tracing::info!("JWKS refetched after an unknown key id");
                if let Ok(mut k) = self.jwks.write() {
                    *k = keys;
                    return true;
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "JWKS refetch failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra(endpoint: Option<&str>, required: bool) -> ExtraMetadata {
        ExtraMetadata {
            pushed_authorization_request_endpoint: endpoint.map(str::to_owned),
            require_pushed_authorization_requests: required,
            ..ExtraMetadata::default()
        }
    }

    #[test]
    fn par_is_used_as_configured_and_as_the_idp_requires() {
        let at = Some("https://idp.example/par");
        let decide = |mode, extra| par_endpoint("https://idp.example", mode, &extra);
        let url = |r: Result<Option<Url>, DiscoveryError>| r.unwrap().map(|u| u.to_string());
        assert_eq!(url(decide(ParMode::Auto, extra(at, false))).as_deref(), at);
        assert_eq!(url(decide(ParMode::Auto, extra(None, false))), None);
        assert_eq!(
            url(decide(ParMode::Always, extra(at, false))).as_deref(),
            at
        );
        assert_eq!(url(decide(ParMode::Never, extra(at, false))), None);
        assert_eq!(url(decide(ParMode::Auto, extra(at, true))).as_deref(), at);
        for (mode, extra) in [
            (ParMode::Always, extra(None, false)),
            (ParMode::Never, extra(at, true)),
            (ParMode::Auto, extra(None, true)),
        ] {
            let err = decide(mode, extra).unwrap_err().to_string();
            assert!(err.contains("push"), "{err}");
        }
        // The endpoint obeys the rule every endpoint does.
        let err = decide(ParMode::Auto, extra(Some("http://idp.example/par"), false))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pushed_authorization_request_endpoint"),
            "{err}"
        );
    }

    use crate::client_assertion::AssertionKey;
    use crate::config::AssertionAudience;
    use crate::config::settings::ClientAssertion;
    use crate::secret::SecretString;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_method_or_algorithm_the_metadata_does_not_list_is_warned_about() {
        let basic = TokenEndpointAuth::Basic(SecretString::new("s".into()));
        let jwt = TokenEndpointAuth::PrivateKeyJwt(ClientAssertion {
            key: AssertionKey::ephemeral(None).unwrap(),
            audience: AssertionAudience::TokenEndpoint,
        });
        let secrets = list(&["client_secret_basic", "client_secret_post"]);
        let with_jwt = list(&["client_secret_basic", "private_key_jwt"]);
        let rs = list(&["RS256"]);
        let es = list(&["RS256", "ES256"]);
        // Absent lists: nothing to say.
        assert_eq!(auth_method_warning(&basic, None, None), None);
        assert_eq!(auth_method_warning(&jwt, None, None), None);
        assert_eq!(auth_method_warning(&basic, Some(&secrets), None), None);
        assert_eq!(auth_method_warning(&jwt, Some(&with_jwt), Some(&es)), None);
        assert_eq!(auth_method_warning(&jwt, Some(&with_jwt), None), None);

        let w = auth_method_warning(&jwt, Some(&secrets), None).unwrap();
        assert!(
            w.contains("\"private_key_jwt\"") && w.contains("client_secret_post"),
            "{w}"
        );
        let w = auth_method_warning(&jwt, Some(&with_jwt), Some(&rs)).unwrap();
        assert!(w.contains("ES256") && w.contains("RS256"), "{w}");
        let w = auth_method_warning(&basic, Some(&with_jwt[1..]), None).unwrap();
        assert!(w.contains("client_secret_basic"), "{w}");
    }

    #[test]
    fn dpop_without_es256_in_the_metadata_is_warned_about_not_refused() {
        let with = |algs: Option<&[&str]>| ExtraMetadata {
            dpop_signing_alg_values_supported: algs.map(list),
            ..ExtraMetadata::default()
        };
        assert_eq!(dpop_warning(false, &with(None)), None, "dpop off: silent");
        assert_eq!(dpop_warning(true, &with(Some(&["ES256", "PS256"]))), None);
        let w = dpop_warning(true, &with(None)).unwrap();
        assert!(w.contains("dpop_signing_alg_values_supported"), "{w}");
        let w = dpop_warning(true, &with(Some(&["PS256"]))).unwrap();
        assert!(w.contains("ES256") && w.contains("PS256"), "{w}");
    }
}
