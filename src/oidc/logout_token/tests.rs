use std::sync::LazyLock;

use jsonwebtoken::{Algorithm, EncodingKey};
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm as Alg};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, json};

use super::*;
use crate::expiring::Seen;
use crate::expiring::{ExpiringSet, Full};

const ISS: &str = "https://idp.example";
const CLIENT: &str = "spa-bff";
const NOW: i64 = 1_800_000_000;
const SKEW: i64 = 60;
const MAX_AGE: i64 = 300;
const RSA1_PEM: &str = include_str!("../../../tests/support/keys/rsa1.pem");
const RSA2_PEM: &str = include_str!("../../../tests/support/keys/rsa2.pem");

struct Key {
    encoding: EncodingKey,
    n: String,
    e: String,
    public_pem: String,
}

fn load(pem: &str) -> Key {
    let private = RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
    let public = private.to_public_key();
    Key {
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
    }
}

static K1: LazyLock<Key> = LazyLock::new(|| load(RSA1_PEM));
static K2: LazyLock<Key> = LazyLock::new(|| load(RSA2_PEM));

fn jwk(key: &Key, kid: Option<&str>) -> Value {
    let mut j = json!({ "kty": "RSA", "use": "sig", "n": key.n, "e": key.e });
    if let Some(kid) = kid {
        j["kid"] = json!(kid);
    }
    j
}

fn set(keys: Vec<Value>) -> CoreJsonWebKeySet {
    serde_json::from_value(json!({ "keys": keys })).unwrap()
}

fn keys() -> CoreJsonWebKeySet {
    set(vec![jwk(&K1, Some("k1"))])
}

const ALGS: &[Alg] = &[
    Alg::RsaSsaPkcs1V15Sha256,
    Alg::RsaSsaPssSha256,
    Alg::EcdsaP256Sha256,
];

fn expect() -> Expectations<'static> {
    static TRUSTED: LazyLock<Vec<String>> = LazyLock::new(|| vec!["trusted".to_owned()]);
    Expectations {
        issuer: ISS,
        client_id: CLIENT,
        trusted_audiences: &TRUSTED,
        algorithms: ALGS,
        clock_skew: SKEW,
        max_age: MAX_AGE,
        strict_typ: false,
    }
}

fn claims() -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("iss".into(), json!(ISS));
    c.insert("aud".into(), json!(CLIENT));
    c.insert("iat".into(), json!(NOW - 5));
    c.insert("exp".into(), json!(NOW + 115));
    c.insert("jti".into(), json!("jti-1"));
    c.insert("sid".into(), json!("sid-1"));
    c.insert("sub".into(), json!("alice"));
    c.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
    c
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn sign_raw(header: &Value, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{payload}", b64(header));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

fn sign_with(header: Value, claims: Map<String, Value>, key: &Key) -> String {
    sign_raw(
        &header,
        &b64(&Value::Object(claims)),
        &key.encoding,
        Algorithm::RS256,
    )
}

fn header(typ: Option<&str>) -> Value {
    let mut h = json!({ "alg": "RS256", "kid": "k1" });
    if let Some(t) = typ {
        h["typ"] = json!(t);
    }
    h
}

fn token(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut c = claims();
    edit(&mut c);
    sign_with(header(Some("logout+jwt")), c, &K1)
}

fn check(token: &str) -> Result<LogoutClaims, LogoutTokenError> {
    validate(token, &keys(), &expect(), NOW)
}

#[test]
fn a_valid_token_yields_its_claims() {
    let c = check(&token(|_| {})).unwrap();
    assert_eq!(c.iss, ISS);
    assert_eq!(c.sid.as_deref(), Some("sid-1"));
    assert_eq!(c.sub.as_deref(), Some("alice"));
    assert_eq!(c.jti, "jti-1");
    assert_eq!((c.iat, c.exp), (NOW - 5, NOW + 115));
    // min(exp, iat + max_age) + skew
    assert_eq!(c.acceptable_until, NOW + 115 + SKEW);
    let long = check(&token(|c| {
        c.insert("exp".into(), json!(NOW + 86_400));
    }))
    .unwrap();
    assert_eq!(long.acceptable_until, NOW - 5 + MAX_AGE + SKEW);
}

#[test]
fn a_token_without_exp_expires_at_iat_plus_max_age() {
    // Back-Channel Logout draft 06, as Glewlwyd sends it.
    let c = check(&token(|c| drop(c.remove("exp")))).unwrap();
    assert_eq!(c.exp, NOW - 5 + MAX_AGE);
    assert_eq!(c.acceptable_until, NOW - 5 + MAX_AGE + SKEW);
    let old = check(&token(|c| {
        c.remove("exp");
        c.insert("iat".into(), json!(NOW - MAX_AGE - SKEW - 1));
    }));
    assert!(matches!(old, Err(LogoutTokenError::TooOld)), "{old:?}");
}

#[test]
fn typ_rules() {
    let with = |typ: Option<&str>, strict: bool| {
        let t = sign_with(header(typ), claims(), &K1);
        validate(
            &t,
            &keys(),
            &Expectations {
                strict_typ: strict,
                ..expect()
            },
            NOW,
        )
    };
    for typ in [
        "logout+jwt",
        "Logout+JWT",
        "application/logout+jwt",
        "APPLICATION/LOGOUT+JWT",
    ] {
        assert!(with(Some(typ), true).is_ok(), "{typ}");
        assert!(with(Some(typ), false).is_ok(), "{typ}");
    }
    for typ in [Some("JWT"), Some("jwt"), Some("application/jwt"), None] {
        assert!(with(typ, false).is_ok(), "{typ:?}");
        assert_eq!(with(typ, true), Err(LogoutTokenError::Type), "{typ:?}");
    }
    for typ in [
        "at+jwt",
        "secevent+jwt",
        "",
        "logout+jwt ",
        "application/",
        "x/logout+jwt",
    ] {
        assert_eq!(with(Some(typ), false), Err(LogoutTokenError::Type), "{typ}");
    }
    // A typ that is not a string is a malformed header.
    let t = sign_with(
        json!({ "alg": "RS256", "kid": "k1", "typ": 1 }),
        claims(),
        &K1,
    );
    assert_eq!(check(&t), Err(LogoutTokenError::Malformed));
}

#[test]
fn algorithms_outside_the_allowlist_and_hmac_are_refused() {
    let payload = b64(&Value::Object(claims()));
    let none = format!("{}.{payload}.", b64(&json!({ "alg": "none", "kid": "k1" })));
    assert_eq!(check(&none), Err(LogoutTokenError::Algorithm));
    // HS256 keyed with the RSA public key (key confusion), even if someone listed it.
    let hs = sign_raw(
        &json!({ "alg": "HS256", "kid": "k1", "typ": "logout+jwt" }),
        &payload,
        &EncodingKey::from_secret(K1.public_pem.as_bytes()),
        Algorithm::HS256,
    );
    assert_eq!(check(&hs), Err(LogoutTokenError::Algorithm));
    let listed = [Alg::HmacSha256, Alg::RsaSsaPkcs1V15Sha256];
    let e = Expectations {
        algorithms: &listed,
        ..expect()
    };
    assert_eq!(
        validate(&hs, &keys(), &e, NOW),
        Err(LogoutTokenError::Algorithm)
    );
    // RS384 is not in this allowlist.
    let rs384 = sign_raw(
        &json!({ "alg": "RS384", "kid": "k1" }),
        &payload,
        &K1.encoding,
        Algorithm::RS384,
    );
    assert_eq!(check(&rs384), Err(LogoutTokenError::Algorithm));
    let missing = format!("{}.{payload}.AA", b64(&json!({ "kid": "k1" })));
    assert_eq!(check(&missing), Err(LogoutTokenError::Malformed));
}

#[test]
fn crit_headers_are_refused() {
    let mut h = header(Some("logout+jwt"));
    h["crit"] = json!(["exp"]);
    assert_eq!(
        check(&sign_with(h, claims(), &K1)),
        Err(LogoutTokenError::Critical)
    );
}

type Edit = Box<dyn Fn(&mut Map<String, Value>)>;

#[test]
fn each_claim_rule_is_enforced() {
    use LogoutTokenError as E;
    let cases: Vec<(&str, Edit, E)> = vec![
        (
            "missing iss",
            Box::new(|c| drop(c.remove("iss"))),
            E::Missing("iss"),
        ),
        (
            "wrong iss",
            Box::new(|c| drop(c.insert("iss".into(), json!("https://evil.example")))),
            E::Issuer,
        ),
        (
            "iss with slash",
            Box::new(|c| drop(c.insert("iss".into(), json!(format!("{ISS}/"))))),
            E::Issuer,
        ),
        (
            "missing aud",
            Box::new(|c| drop(c.remove("aud"))),
            E::Missing("aud"),
        ),
        (
            "wrong aud",
            Box::new(|c| drop(c.insert("aud".into(), json!("other")))),
            E::Audience,
        ),
        (
            "untrusted extra aud",
            Box::new(|c| drop(c.insert("aud".into(), json!([CLIENT, "other"])))),
            E::Audience,
        ),
        (
            "aud array without us",
            Box::new(|c| drop(c.insert("aud".into(), json!(["trusted"])))),
            E::Audience,
        ),
        (
            "aud number",
            Box::new(|c| drop(c.insert("aud".into(), json!(7)))),
            E::Invalid("aud"),
        ),
        (
            "aud array of numbers",
            Box::new(|c| drop(c.insert("aud".into(), json!([CLIENT, 7])))),
            E::Invalid("aud"),
        ),
        (
            "missing iat",
            Box::new(|c| drop(c.remove("iat"))),
            E::Missing("iat"),
        ),
        (
            "iat string",
            Box::new(|c| drop(c.insert("iat".into(), json!("1800000000")))),
            E::Invalid("iat"),
        ),
        (
            "iat in the future",
            Box::new(|c| drop(c.insert("iat".into(), json!(NOW + SKEW + 1)))),
            E::IssuedInFuture,
        ),
        (
            "too old",
            Box::new(|c| drop(c.insert("iat".into(), json!(NOW - MAX_AGE - SKEW - 1)))),
            E::TooOld,
        ),
        (
            "expired",
            Box::new(|c| {
                c.insert("iat".into(), json!(NOW - 100));
                c.insert("exp".into(), json!(NOW - SKEW - 1));
            }),
            E::Expired,
        ),
        (
            "exp before iat",
            Box::new(|c| drop(c.insert("exp".into(), json!(NOW - 6)))),
            E::Invalid("exp"),
        ),
        (
            "missing jti",
            Box::new(|c| drop(c.remove("jti"))),
            E::Missing("jti"),
        ),
        (
            "empty jti",
            Box::new(|c| drop(c.insert("jti".into(), json!("")))),
            E::Invalid("jti"),
        ),
        (
            "numeric jti",
            Box::new(|c| drop(c.insert("jti".into(), json!(1)))),
            E::Invalid("jti"),
        ),
        (
            "long jti",
            Box::new(|c| drop(c.insert("jti".into(), json!("j".repeat(MAX_CLAIM_TEXT + 1))))),
            E::Invalid("jti"),
        ),
        (
            "missing events",
            Box::new(|c| drop(c.remove("events"))),
            E::Missing("events"),
        ),
        (
            "events without the member",
            Box::new(|c| drop(c.insert("events".into(), json!({"other": {}})))),
            E::Events,
        ),
        (
            "events member not an object",
            Box::new(|c| {
                drop(c.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" })))
            }),
            E::Events,
        ),
        (
            "events member null",
            Box::new(|c| {
                drop(c.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: null })))
            }),
            E::Events,
        ),
        (
            "events an array",
            Box::new(|c| drop(c.insert("events".into(), json!([BACKCHANNEL_LOGOUT_EVENT])))),
            E::Events,
        ),
        (
            "nonce",
            Box::new(|c| drop(c.insert("nonce".into(), json!("n")))),
            E::Nonce,
        ),
        (
            "null nonce",
            Box::new(|c| drop(c.insert("nonce".into(), Value::Null))),
            E::Nonce,
        ),
        (
            "neither sid nor sub",
            Box::new(|c| {
                c.remove("sid");
                c.remove("sub");
            }),
            E::NoSubject,
        ),
        (
            "empty sid",
            Box::new(|c| drop(c.insert("sid".into(), json!("")))),
            E::Invalid("sid"),
        ),
        (
            "numeric sub",
            Box::new(|c| drop(c.insert("sub".into(), json!(5)))),
            E::Invalid("sub"),
        ),
        (
            "long sid",
            Box::new(|c| drop(c.insert("sid".into(), json!("s".repeat(MAX_CLAIM_TEXT + 1))))),
            E::Invalid("sid"),
        ),
    ];
    for (name, edit, want) in cases {
        assert_eq!(check(&token(edit)), Err(want), "{name}");
    }
}

#[test]
fn skew_and_audience_edges_are_accepted() {
    for edit in [
        Box::new(|c: &mut Map<String, Value>| drop(c.insert("iat".into(), json!(NOW + SKEW))))
            as Edit,
        Box::new(|c| drop(c.insert("iat".into(), json!(NOW - MAX_AGE - SKEW)))),
        Box::new(|c| {
            c.insert("iat".into(), json!(NOW - 100));
            c.insert("exp".into(), json!(NOW - SKEW));
        }),
        Box::new(|c| drop(c.insert("aud".into(), json!([CLIENT])))),
        Box::new(|c| drop(c.insert("aud".into(), json!([CLIENT, "trusted"])))),
        Box::new(|c| drop(c.insert("iat".into(), json!(1_799_999_999.7)))),
        Box::new(|c| drop(c.remove("sid"))),
        Box::new(|c| drop(c.remove("sub"))),
        Box::new(|c| {
            drop(c.insert(
                "events".into(),
                json!({ BACKCHANNEL_LOGOUT_EVENT: {"x": 1}, "other": 2 }),
            ))
        }),
    ] {
        let t = token(edit);
        assert!(check(&t).is_ok(), "{:?}", check(&t));
    }
}

#[test]
fn hostile_numbers_never_panic() {
    for v in [
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1e308),
        json!(-1e308),
        json!(0.5),
    ] {
        for name in ["iat", "exp"] {
            let v = v.clone();
            let _ = check(&token(move |c| drop(c.insert(name.into(), v))));
        }
    }
    let e = Expectations {
        clock_skew: i64::MAX,
        max_age: i64::MAX,
        ..expect()
    };
    let _ = validate(&token(|_| {}), &keys(), &e, i64::MIN);
    let _ = validate(&token(|_| {}), &keys(), &e, i64::MAX);
}

#[test]
fn malformed_tokens_are_refused() {
    let good = token(|_| {});
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    for bad in [
        String::new(),
        "a".into(),
        "a.b".into(),
        format!("{good}.x"),
        format!("{h}.{p}"),
        format!("{h}=.{p}.{s}"),
        format!("{}.{p}.{s}", b64(&json!(["RS256"]))),
        format!("{}.{p}.{s}", b64(&json!("RS256"))),
        "x".repeat(MAX_TOKEN_BYTES + 1),
    ] {
        assert_eq!(check(&bad), Err(LogoutTokenError::Malformed), "{bad:.40}");
    }
    // A payload that is an array, not JSON, or repeats a member.
    for payload in [
        b64(&json!([ISS, CLIENT])),
        URL_SAFE_NO_PAD.encode("not json"),
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"{ISS}","iss":"{ISS}","aud":"{CLIENT}"}}"#
        )),
    ] {
        let t = sign_raw(&header(None), &payload, &K1.encoding, Algorithm::RS256);
        assert_eq!(check(&t), Err(LogoutTokenError::Claims));
    }
    // A header repeating alg.
    let raw_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","alg":"none","kid":"k1"}"#);
    assert_eq!(
        check(&format!("{raw_header}.{p}.{s}")),
        Err(LogoutTokenError::Malformed)
    );
}

#[test]
fn signatures_are_verified_by_the_named_key() {
    let good = token(|_| {});
    let (message, sig) = good.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    bytes[10] ^= 1;
    let flipped = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&bytes));
    assert_eq!(check(&flipped), Err(LogoutTokenError::Signature));
    assert_eq!(
        check(&format!("{message}.")),
        Err(LogoutTokenError::Signature)
    );
    // Signed by another key under our kid.
    let forged = sign_with(header(Some("logout+jwt")), claims(), &K2);
    assert_eq!(check(&forged), Err(LogoutTokenError::Signature));
    // Claims changed after signing.
    let (h, rest) = good.split_once('.').unwrap();
    let (_, s) = rest.split_once('.').unwrap();
    let mut c = claims();
    c.insert("sub".into(), json!("mallory"));
    assert_eq!(
        check(&format!("{h}.{}.{s}", b64(&Value::Object(c)))),
        Err(LogoutTokenError::Signature)
    );
}

#[test]
fn keys_are_selected_by_kid_or_uniqueness() {
    let t = |kid: Option<&str>| {
        let mut h = json!({ "alg": "RS256", "typ": "logout+jwt" });
        if let Some(kid) = kid {
            h["kid"] = json!(kid);
        }
        sign_with(h, claims(), &K1)
    };
    let two = set(vec![jwk(&K1, Some("k1")), jwk(&K2, Some("k2"))]);
    assert!(validate(&t(Some("k1")), &two, &expect(), NOW).is_ok());
    assert_eq!(
        validate(&t(Some("k9")), &two, &expect(), NOW),
        Err(LogoutTokenError::UnknownKey)
    );
    // No kid: fine with exactly one suitable key, ambiguous with two.
    assert!(validate(&t(None), &keys(), &expect(), NOW).is_ok());
    assert!(validate(&t(None), &set(vec![jwk(&K1, None)]), &expect(), NOW).is_ok());
    assert_eq!(
        validate(&t(None), &two, &expect(), NOW),
        Err(LogoutTokenError::AmbiguousKey)
    );
    assert_eq!(
        validate(&t(None), &set(vec![]), &expect(), NOW),
        Err(LogoutTokenError::UnknownKey)
    );
    // A kid'd token never falls back to a key without kid.
    assert_eq!(
        validate(&t(Some("k1")), &set(vec![jwk(&K1, None)]), &expect(), NOW),
        Err(LogoutTokenError::UnknownKey)
    );
    // The named key must fit: not an encryption key, not another alg, not an EC key for RS256.
    let mut enc = jwk(&K1, Some("k1"));
    enc["use"] = json!("enc");
    let mut other_alg = jwk(&K1, Some("k1"));
    other_alg["alg"] = json!("PS256");
    let ec = json!({ "kty": "EC", "crv": "P-256", "kid": "k1", "x": "AA", "y": "AA" });
    let oct =
        json!({ "kty": "oct", "kid": "k1", "k": URL_SAFE_NO_PAD.encode(K1.public_pem.as_bytes()) });
    // (`key_ops` is not in openidconnect's key model, so it is not a rule here: see
    // `key_ops_is_not_part_of_the_key_set`.)
    for key in [enc, other_alg, ec, oct] {
        assert_eq!(
            validate(&t(Some("k1")), &set(vec![key.clone()]), &expect(), NOW),
            Err(LogoutTokenError::KeyMismatch),
            "{key}"
        );
    }
    let mut rs256 = jwk(&K1, Some("k1"));
    rs256["alg"] = json!("RS256");
    assert!(validate(&t(Some("k1")), &set(vec![rs256]), &expect(), NOW).is_ok());
}

#[test]
fn an_unknown_key_is_reported_only_after_every_keyless_check() {
    // Garbage naming an unknown kid is refused for what is wrong with it, not as "unknown
    // key", so the caller never refetches the JWKS for it.
    let unknown = |edit: fn(&mut Map<String, Value>)| {
        let mut c = claims();
        edit(&mut c);
        sign_with(json!({ "alg": "RS256", "kid": "nope" }), c, &K2)
    };
    assert_eq!(
        check(&unknown(|c| drop(c.remove("jti")))),
        Err(LogoutTokenError::Missing("jti"))
    );
    assert_eq!(
        check(&unknown(|c| drop(c.insert("iss".into(), json!("x"))))),
        Err(LogoutTokenError::Issuer)
    );
    assert_eq!(check(&unknown(|_| {})), Err(LogoutTokenError::UnknownKey));
    let garbage = format!(
        "{}.{}.AAAA",
        b64(&json!({ "alg": "RS256", "kid": "nope" })),
        URL_SAFE_NO_PAD.encode("{}")
    );
    assert_eq!(check(&garbage), Err(LogoutTokenError::Missing("iss")));
}

#[test]
fn ed25519_keys_of_the_wrong_length_are_never_used() {
    let short = json!({ "kty": "OKP", "crv": "Ed25519", "kid": "e", "x": "AAAA" });
    let t = sign_raw(
        &json!({ "alg": "EdDSA", "kid": "e" }),
        &b64(&Value::Object(claims())),
        &K1.encoding,
        Algorithm::RS256,
    );
    let algs = [Alg::EdDsa];
    let e = Expectations {
        algorithms: &algs,
        ..expect()
    };
    assert_eq!(
        validate(&t, &set(vec![short]), &e, NOW),
        Err(LogoutTokenError::KeyMismatch)
    );
}

#[test]
fn errors_carry_no_token_material() {
    let t = token(|c| drop(c.insert("iss".into(), json!("https://secret-marker.example"))));
    let e = check(&t).unwrap_err();
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains("secret-marker"), "{text}");
    }
}

#[test]
fn openidconnect_key_sets_are_used_as_they_are() {
    // The provider's own key set, parsed as a fetched JWKS is: keys openidconnect cannot parse
    // are skipped, the rest serve logout tokens exactly as they serve ID tokens.
    let core: CoreJsonWebKeySet = serde_json::from_value(json!({
        "keys": [
            jwk(&K1, Some("k1")),
            { "kty": "EC", "use": "sig", "kid": "ec", "crv": "P-256",
              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
              "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
            { "kty": "weird", "kid": "w" },
        ]
    }))
    .unwrap();
    let kids: Vec<_> = core
        .keys()
        .iter()
        .filter_map(|k| k.key_id().map(|id| id.as_str()))
        .collect();
    assert!(kids.contains(&"k1") && kids.contains(&"ec"), "{kids:?}");
    assert!(validate(&token(|_| {}), &core, &expect(), NOW).is_ok());
}

#[test]
fn key_ops_is_not_part_of_the_key_set() {
    // openidconnect's JWK has no `key_ops`, for ID tokens and logout tokens alike; before the
    // key sets were merged the provider's keys reached logout validation through openidconnect
    // too, so `key_ops` never restricted a key in production. `use` is the rule (tested above).
    let mut no_verify = jwk(&K1, Some("k1"));
    no_verify.as_object_mut().unwrap().remove("use");
    no_verify["key_ops"] = json!(["encrypt"]);
    let t = sign_with(header(Some("logout+jwt")), claims(), &K1);
    assert!(validate(&t, &set(vec![no_verify]), &expect(), NOW).is_ok());
}

#[test]
fn curves_decide_which_keys_fit_without_a_kid() {
    // An ES256 token without `kid`: only the P-256 key is a candidate, so a P-384 key beside it
    // makes no ambiguity (openidconnect checks the curve only when verifying).
    let p256 = json!({ "kty": "EC", "use": "sig", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" });
    let p384 = json!({ "kty": "EC", "use": "sig", "crv": "P-384",
        "x": "AAAA", "y": "AAAA" });
    let t = format!(
        "{}.{}.AAAA",
        b64(&json!({ "alg": "ES256", "typ": "logout+jwt" })),
        b64(&Value::Object(claims()))
    );
    // The one candidate is used: the (bogus) signature is what fails, not the key choice.
    assert_eq!(
        validate(&t, &set(vec![p256.clone(), p384.clone()]), &expect(), NOW),
        Err(LogoutTokenError::Signature)
    );
    assert_eq!(
        validate(&t, &set(vec![p384]), &expect(), NOW),
        Err(LogoutTokenError::UnknownKey)
    );
    assert_eq!(
        validate(&t, &set(vec![p256.clone(), p256]), &expect(), NOW),
        Err(LogoutTokenError::AmbiguousKey)
    );
}

#[test]
fn replay_cache_remembers_until_the_token_expires() {
    // The replay table is an `ExpiringSet` keyed by `replay_key`; this is the back-channel
    // endpoint's use of it.
    let mut cache = ExpiringSet::with_capacity(2);
    let mut check_and_record =
        |iss: &str, jti: &str, until, now| cache.insert(replay_key(iss, jti), until, now);
    assert_eq!(check_and_record(ISS, "a", NOW + 10, NOW), Ok(Seen::Fresh));
    assert_eq!(
        check_and_record(ISS, "a", NOW + 10, NOW + 10),
        Ok(Seen::Replayed)
    );
    assert_eq!(
        check_and_record("other", "a", NOW + 10, NOW),
        Ok(Seen::Fresh)
    );
    // Full of live entries: refused, nothing forgotten early.
    assert_eq!(check_and_record(ISS, "b", NOW + 10, NOW), Err(Full));
    assert_eq!(
        check_and_record(ISS, "a", NOW + 10, NOW + 5),
        Ok(Seen::Replayed)
    );
    // After `until`, the entries go (the token itself would be refused as expired by then).
    assert_eq!(
        check_and_record(ISS, "b", NOW + 20, NOW + 11),
        Ok(Seen::Fresh)
    );
    assert_eq!(cache.len(), 1);
    // A released entry (its revocation failed) is fresh again for the IdP's retry.
    cache.remove(&replay_key(ISS, "b"));
    assert!(cache.is_empty());
    let mut check_and_record =
        |iss: &str, jti: &str, until, now| cache.insert(replay_key(iss, jti), until, now);
    assert_eq!(
        check_and_record(ISS, "b", NOW + 20, NOW + 12),
        Ok(Seen::Fresh)
    );
    assert_eq!(
        check_and_record(ISS, "b", NOW + 20, NOW + 13),
        Ok(Seen::Replayed)
    );
}
