use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

use super::*;

fn decode(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn a_proof_is_an_es256_dpop_jwt_signed_by_the_key_in_its_header() {
    let key = DpopKey::generate().unwrap();
    let proof = key
        .proof(
            "POST",
            "https://idp.example/token",
            1_800_000_000,
            Some("n-1"),
            Some("abc"),
        )
        .unwrap();
    assert!(proof.is_sensitive());
    let text = proof.to_str().unwrap();
    let parts: Vec<&str> = text.split('.').collect();
    assert_eq!(parts.len(), 3);
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    let jwk = header["jwk"].as_object().unwrap();
    let mut members: Vec<&str> = jwk.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["crv", "kty", "x", "y"], "public members only");
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], "https://idp.example/token");
    assert_eq!(claims["iat"], 1_800_000_000);
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["ath"], "abc");
    assert!(claims["jti"].as_str().unwrap().len() >= 22);
    // The signature verifies with the public key the header names.
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    assert_eq!(point, key.public_point());
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let message = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(message.as_bytes(), &signature)
        .expect("signature verifies");
}

#[test]
fn proofs_never_repeat_a_jti_and_leave_out_what_is_unknown() {
    let key = DpopKey::generate().unwrap();
    let claims = |p: HeaderValue| decode(p.to_str().unwrap().split('.').nth(1).unwrap());
    let a = claims(key.proof("GET", "https://api/x", 1, None, None).unwrap());
    let b = claims(key.proof("GET", "https://api/x", 1, None, None).unwrap());
    assert_ne!(a["jti"], b["jti"]);
    assert!(a.get("nonce").is_none() && a.get("ath").is_none());
}

#[test]
fn a_key_survives_its_sealed_parts_and_refuses_mismatched_ones() {
    let key = DpopKey::generate().unwrap();
    let again = DpopKey::from_parts(key.private_scalar(), key.public_point()).unwrap();
    assert_eq!(again, key);
    assert_eq!(again.thumbprint(), key.thumbprint());
    let other = DpopKey::generate().unwrap();
    assert_ne!(other, key, "every key is new");
    assert!(DpopKey::from_parts(key.private_scalar(), other.public_point()).is_err());
    assert!(DpopKey::from_parts(&key.private_scalar()[1..], key.public_point()).is_err());
    assert!(DpopKey::from_parts(&[0; 32], key.public_point()).is_err());
}

#[test]
fn the_thumbprint_is_rfc_7638() {
    // RFC 7638 3.1 uses an RSA key; this is the P-256 key of RFC 7515 A.3.
    let d = URL_SAFE_NO_PAD
        .decode("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI")
        .unwrap();
    let x = URL_SAFE_NO_PAD
        .decode("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU")
        .unwrap();
    let y = URL_SAFE_NO_PAD
        .decode("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0")
        .unwrap();
    let mut public = vec![4u8];
    public.extend(&x);
    public.extend(&y);
    let key = DpopKey::from_parts(&d, &public).unwrap();
    // base64url(SHA-256 of the canonical JSON), computed independently (Python hashlib).
    assert_eq!(
        key.thumbprint(),
        "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"
    );
}

#[test]
fn debug_shows_the_thumbprint_only() {
    let key = DpopKey::generate().unwrap();
    let shown = format!("{key:?}");
    assert!(shown.contains(key.thumbprint()));
    let private = URL_SAFE_NO_PAD.encode(key.private_scalar());
    assert!(
        !shown.contains(&private) && !shown.contains("private"),
        "{shown}"
    );
}

#[test]
fn htu_drops_query_and_fragment_and_origin_keeps_the_port() {
    assert_eq!(
        htu("https://api.example:8443/v1/x?a=1#f"),
        "https://api.example:8443/v1/x"
    );
    assert_eq!(htu("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
    assert_eq!(
        origin("https://api.example:8443/v1/x?a=1"),
        "https://api.example:8443"
    );
    assert_eq!(origin("http://h"), "http://h");
}

#[test]
fn ath_is_base64url_sha256() {
    // SHA-256("token") = 3c469e9d...
    assert_eq!(
        ath("token"),
        URL_SAFE_NO_PAD.encode(Sha256::digest(b"token"))
    );
    assert_eq!(ath("token").len(), 43);
}

#[test]
fn token_types_parse_case_insensitively() {
    assert_eq!(TokenType::parse("DPoP"), Some(TokenType::Dpop));
    assert_eq!(TokenType::parse("dpop"), Some(TokenType::Dpop));
    assert_eq!(TokenType::parse("bearer"), Some(TokenType::Bearer));
    assert_eq!(TokenType::parse("N_A"), None);
    assert_eq!(TokenType::Dpop.scheme(), "DPoP ");
}

#[test]
fn nonces_are_nqchar_and_bounded() {
    assert_eq!(
        parse_nonce(b"eyJ7S_zG.eyJH0-Z.HX4w-7v"),
        Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
    );
    assert_eq!(parse_nonce(b""), None);
    assert_eq!(parse_nonce(b"a b"), None);
    assert_eq!(parse_nonce(b"a\"b"), None);
    assert_eq!(parse_nonce(b"a\\b"), None);
    assert_eq!(parse_nonce("é".as_bytes()), None);
    assert_eq!(parse_nonce(&[b'a'; 513]), None);
    assert!(parse_nonce(&[b'a'; 512]).is_some());
}

#[test]
fn the_idp_asks_for_a_nonce_with_a_400_use_dpop_nonce() {
    let body = br#"{"error":"use_dpop_nonce","error_description":"x"}"#;
    assert!(idp_wants_nonce(400, body));
    assert!(!idp_wants_nonce(401, body));
    assert!(!idp_wants_nonce(400, br#"{"error":"invalid_grant"}"#));
    assert!(!idp_wants_nonce(400, b"not json"));
}

#[test]
fn upstream_challenges_are_parsed() {
    for yes in [
        r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce""#,
        r#"DPoP error=use_dpop_nonce"#,
        r#"Bearer realm="api", DPoP algs="ES256", error="use_dpop_nonce""#,
        r#"dpop   error = "use_dpop_nonce""#,
        // A quoted-pair (RFC 9110 5.6.4) stands for the character it escapes.
        r#"DPoP error="use_dpop_n\once""#,
    ] {
        assert!(challenges_use_dpop_nonce(yes.as_bytes()), "{yes}");
    }
    for no in [
        r#"Bearer error="use_dpop_nonce""#,
        r#"DPoP error="invalid_dpop_proof""#,
        r#"DPoP error="use_dpop_nonce"#,
        r#"DPoP realm="use_dpop_nonce""#,
        "Basic abc==, Negotiate",
        "",
        "=,=",
    ] {
        assert!(!challenges_use_dpop_nonce(no.as_bytes()), "{no}");
    }
    let mut headers = HeaderMap::new();
    headers.append(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    headers.append(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#),
    );
    assert!(upstream_wants_nonce(401, &headers));
    assert!(!upstream_wants_nonce(403, &headers));
}

#[test]
fn the_nonce_book_keeps_the_latest_per_origin_and_stays_bounded() {
    let book = NonceBook::default();
    book.put("https://a", "1");
    book.put("https://a", "2");
    book.put("https://b", "3");
    assert_eq!(book.get("https://a").as_deref(), Some("2"));
    assert_eq!(book.get("https://b").as_deref(), Some("3"));
    for i in 0..1000 {
        book.put(&format!("https://h{i}"), "n");
    }
    let len = book.nonces.lock().unwrap().len();
    assert!(len <= MAX_NONCES, "{len}");
}
