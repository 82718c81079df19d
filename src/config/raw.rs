//! The file's structure, as serde reads it: `deny_unknown_fields`, so a typo is a problem naming
//! the key; every value [`Spanned`], so a problem names its line.
//!
//! Each table is deserialized on its own (see [`super::document`]): a mistake in one table
//! does not hide the problems of the others.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use toml::Spanned;

/// An optional string value.
pub(super) type Text = Option<Spanned<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Spanned<String>,
    pub public_url: Spanned<String>,
    pub max_connections: Option<Spanned<usize>>,
    pub workers: Option<Spanned<usize>>,
    pub header_read_timeout: Text,
    pub max_header_bytes: Option<Spanned<usize>>,
    pub shutdown_grace: Text,
    pub tls_cert: Text,
    pub tls_key: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    /// Required in `[[providers]]`; optional in a lone `[oidc]` (shown by `/bff/user`).
    pub name: Text,
    pub issuer: Spanned<String>,
    pub client_id: Spanned<String>,
    pub client_secret: Text,
    pub client_assertion_key: Text,
    pub client_assertion_kid: Text,
    pub client_assertion_audience: Text,
    pub client_assertion_cert: Text,
    pub scopes: Option<Spanned<Vec<String>>>,
    pub post_logout_redirect_uri: Text,
    pub timeout: Text,
    pub jwks_refetch_cooldown: Text,
    pub token_endpoint_auth: Text,
    pub use_userinfo: Option<bool>,
    pub dpop: Option<bool>,
    pub id_token_signed_response_alg: Option<Spanned<OneOrMany>>,
    pub id_token_signing_algs: Option<Spanned<Vec<String>>>,
    pub clock_skew: Text,
    pub max_id_token_age: Text,
    pub trusted_audiences: Option<Vec<String>>,
    pub max_logout_token_age: Text,
    pub strict_logout_token_typ: Option<bool>,
    pub empty_400_is_invalid_grant: Option<bool>,
    pub auth_params: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub token_params: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub login_params: Option<Spanned<Vec<Spanned<String>>>>,
    pub par: Text,
    pub logout_params: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub end_session_endpoint: Text,
    pub revocation_endpoint: Text,
}

/// One string or a list of strings (`"RS256"` or `["RS256", "ES256"]`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    pub keys: Spanned<Vec<Spanned<String>>>,
    pub cookie_name: Text,
    pub idle_timeout: Text,
    pub absolute_timeout: Text,
    pub login_timeout: Text,
    pub max_chunks: Option<Spanned<u8>>,
    pub store_id_token: Option<bool>,
    pub max_pending_logins: Option<usize>,
    pub open_cache: Option<Spanned<usize>>,
    pub refresh_before: Text,
    pub refresh_grace: Text,
    pub revalidate_every: Text,
    pub route_token_cache: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBff {
    pub prefix: Text,
    pub allowed_origins: Option<Vec<Spanned<String>>>,
    pub csrf_header: Text,
    pub csrf_value: Text,
    pub csrf_mode: Text,
    pub user_claims: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub prefix: Spanned<String>,
    pub upstream: Spanned<String>,
    pub token: Text,
    pub strip_prefix: Option<bool>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub timeout: Text,
    pub websocket: Option<bool>,
    pub forward_cookies: Option<Spanned<RawCookieForwarding>>,
    pub http2: Option<bool>,
    pub acr_values: Option<Spanned<Vec<Spanned<String>>>>,
    pub max_auth_age: Text,
    pub require_claims: Option<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    pub identity_headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub resource: Text,
    pub scopes: Option<Spanned<Vec<Spanned<String>>>>,
    pub exchange: Option<Spanned<RawExchange>>,
    pub provider: Text,
    pub limits: Option<Spanned<RawLimit>>,
}

/// `exchange = { audience = "…", resource = "…", scope = "…" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExchange {
    pub audience: Text,
    pub resource: Text,
    pub scope: Text,
}

/// `forward_cookies = "all" | "none" | ["name", …]`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawCookieForwarding {
    Keyword(String),
    Names(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatic {
    pub dir: Spanned<String>,
    pub index: Text,
    pub csp: Text,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    pub journal: Text,
    pub capacity: Option<Spanned<usize>>,
    pub clock_skew: Text,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub max_clients: Option<Spanned<usize>>,
    pub login: Option<Spanned<RawLimit>>,
    pub callback: Option<Spanned<RawLimit>>,
    pub backchannel_logout: Option<Spanned<RawLimit>>,
    pub routes: Option<Spanned<RawLimit>>,
}

/// `{ per_address = "60/min", per_session = "600/min" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimit {
    pub per_address: Text,
    pub per_session: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub redis_url: Text,
    pub sentinels: Option<Spanned<Vec<String>>>,
    pub sentinel_master: Text,
    pub sentinel_username: Text,
    pub sentinel_password: Text,
    pub cluster_nodes: Option<Spanned<Vec<String>>>,
    pub tls: Option<Spanned<bool>>,
    pub ca_file: Text,
    pub client_cert: Text,
    pub client_key: Text,
    pub username: Text,
    pub password: Text,
    pub min_replicas: Option<Spanned<u32>>,
    pub on_store_unavailable: Text,
    pub key_prefix: Text,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub enabled: Option<bool>,
    pub listen: Text,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Text,
    pub level: Text,
}

/// The field names of raw struct `T`, as its derived `Deserialize` declares them (so unknown
/// keys can be reported one by one, each at its own line, while the rest of the table is still
/// checked).
pub(super) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // The derived impl hands its field list to `deserialize_struct` before reading anything;
    // the error that follows is expected.
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

/// A deserializer that only records the field list it is asked for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
