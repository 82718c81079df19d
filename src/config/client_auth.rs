//! `[oidc]` client authentication: `token_endpoint_auth` and the credential it needs, either
//! `client_secret` (`client_secret_basic`, `client_secret_post`) or `client_assertion_key`
//! with `client_assertion_kid` and `client_assertion_audience` (`private_key_jwt`). A key
//! the method does not use is refused rather than ignored, so a configuration never carries a
//! credential it does not need.

use super::context::{Cx, span};
use super::env::resolve_secret;
use super::problem::invalid;
use super::raw::{RawOidc, Text};
use super::settings::{AssertionAudience, ClientAssertion, TokenEndpointAuth};
use crate::client_assertion::AssertionKey;

/// Longest `oidc.client_assertion_kid`.
const MAX_KID_LEN: usize = 256;

#[derive(Clone, Copy)]
enum Method {
    Basic,
    Post,
    PrivateKeyJwt,
}

pub(super) fn client_auth(o: &RawOidc, cx: &mut Cx<'_>) -> Option<TokenEndpointAuth> {
    let method = cx.keyword(
        "oidc.token_endpoint_auth",
        o.token_endpoint_auth.as_ref(),
        "client_secret_basic",
        &[
            ("client_secret_basic", Method::Basic),
            ("client_secret_post", Method::Post),
            ("private_key_jwt", Method::PrivateKeyJwt),
        ],
    )?;
    match method {
        Method::Basic | Method::Post => {
            let name = if matches!(method, Method::Basic) {
                "client_secret_basic"
            } else {
                "client_secret_post"
            };
            for (key, raw) in [
                ("oidc.client_assertion_key", &o.client_assertion_key),
                ("oidc.client_assertion_kid", &o.client_assertion_kid),
                (
                    "oidc.client_assertion_audience",
                    &o.client_assertion_audience,
                ),
                ("oidc.client_assertion_cert", &o.client_assertion_cert),
            ] {
                if let Some(raw) = raw {
                    let problem = format!(
                        "only used with token_endpoint_auth = \"private_key_jwt\" (it is {name:?})"
                    );
                    cx.push(invalid(key, problem), Some(raw.span()));
                }
            }
            let secret = required(o, &o.client_secret, "oidc.client_secret", name, cx)?;
            let secret = cx.ok(
                Some(secret.span()),
                resolve_secret("oidc.client_secret", secret.get_ref(), cx.env),
            )?;
            Some(match method {
                Method::Basic => TokenEndpointAuth::Basic(secret),
                _ => TokenEndpointAuth::Post(secret),
            })
        }
        Method::PrivateKeyJwt => private_key_jwt(o, cx).map(TokenEndpointAuth::PrivateKeyJwt),
    }
}

fn private_key_jwt(o: &RawOidc, cx: &mut Cx<'_>) -> Option<ClientAssertion> {
    if let Some(raw) = &o.client_secret {
        let e = invalid(
            "oidc.client_secret",
            "not used with token_endpoint_auth = \"private_key_jwt\"; remove it",
        );
        cx.push(e, Some(raw.span()));
    }
    let kid = kid(&o.client_assertion_kid, cx);
    let audience = cx.keyword(
        "oidc.client_assertion_audience",
        o.client_assertion_audience.as_ref(),
        "token_endpoint",
        &[
            ("token_endpoint", AssertionAudience::TokenEndpoint),
            ("issuer", AssertionAudience::Issuer),
        ],
    );
    let key_key = "oidc.client_assertion_key";
    let raw = required(o, &o.client_assertion_key, key_key, "private_key_jwt", cx)?;
    let pem = cx.ok(
        Some(raw.span()),
        resolve_secret(key_key, raw.get_ref(), cx.env),
    )?;
    let kid = kid?;
    // `check-config` without the variable set: nothing to parse; a throwaway key stands in.
    let stand_in = raw
        .get_ref()
        .strip_prefix("env:")
        .is_some_and(|name| cx.env.is_stand_in(name));
    let key = if stand_in {
        AssertionKey::ephemeral(kid)
    } else {
        AssertionKey::from_pem(pem.expose().as_bytes(), kid)
    };
    let key = cx.ok(
        Some(raw.span()),
        key.map_err(|e| invalid(key_key, e.to_string())),
    )?;
    let key = match &o.client_assertion_cert {
        None => key,
        Some(cert) => {
            // A certificate is public: a path (or `file:PATH`), read now.
            let path = cert.get_ref();
            let path = path.strip_prefix("file:").unwrap_or(path);
            let with = std::fs::read(path)
                .map_err(|e| format!("cannot read {path:?}: {e}"))
                .and_then(|pem| key.with_certificate(&pem).map_err(|e| e.to_string()));
            cx.ok(
                Some(cert.span()),
                with.map_err(|e| invalid("oidc.client_assertion_cert", e)),
            )?
        }
    };
    Some(ClientAssertion {
        key,
        audience: audience?,
    })
}

/// The value of `key`, which `method` needs; a problem when it is missing.
fn required<'r>(
    o: &RawOidc,
    raw: &'r Text,
    key: &str,
    method: &str,
    cx: &mut Cx<'_>,
) -> Option<&'r toml::Spanned<String>> {
    if raw.is_none() {
        let problem = format!(
            "missing: token_endpoint_auth = {method:?} needs it, as \"env:NAME\" or \"file:PATH\""
        );
        cx.push(invalid(key, problem), span(o.token_endpoint_auth.as_ref()));
    }
    raw.as_ref()
}

/// `oidc.client_assertion_kid`: `Some(None)` when absent.
fn kid(raw: &Text, cx: &mut Cx<'_>) -> Option<Option<String>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let kid = raw.get_ref();
    if kid.is_empty() || kid.len() > MAX_KID_LEN || kid.chars().any(char::is_control) {
        let e = invalid(
            "oidc.client_assertion_kid",
            format!("must be 1 to {MAX_KID_LEN} characters, no control characters"),
        );
        return cx.refuse(Some(raw.span()), e);
    }
    Some(Some(kid.clone()))
}
