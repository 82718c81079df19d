//! Replays the committed fuzz corpus through the library's harness functions on stable Rust, so
//! a fuzz regression fails `cargo test` even where libFuzzer is unavailable.
//!
//! `SEALGATE_WRITE_SEEDS=1 cargo test --test integration write_seed_corpus -- --ignored`
//! regenerates the seed files (valid cookies sealed with the harness key, plus edge cases).

use std::path::{Path, PathBuf};

use sealgate::internal::Token;
use sealgate::internal::{
    self, FUZZ_CLIENT, FUZZ_COOKIE, FUZZ_ISSUER, FUZZ_KEY, FUZZ_KID, FUZZ_NOW,
};
use sealgate::internal::{Codec, CookieName, KeyRing, Purpose};
use sealgate::internal::{Revocation, journal};
use sealgate::internal::{Session, SessionId};

type Harness = fn(&[u8]) -> bool;

/// Every fuzz target and the harness it calls. Keep in step with `fuzz/Cargo.toml`.
pub const TARGETS: &[(&str, Harness)] = &[
    ("open_cookie_header", internal::open_cookie_header),
    ("open_chunk_set", internal::open_chunk_set),
    ("decode_session", internal::decode_session),
    ("return_url", internal::return_url),
    ("callback_query", internal::callback_query),
    ("proxy_path", internal::proxy_path),
    ("static_path", internal::static_path),
    ("logout_token", internal::logout_token),
    ("journal_replay", internal::journal_replay),
    ("login_query", internal::login_query),
    ("par_response", internal::par_response),
    ("token_response", internal::token_response),
    ("forwarded_for", internal::forwarded_for),
    ("dpop_answer", internal::dpop_answer),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn committed_corpus_replays_without_panics() {
    for (target, harness) in TARGETS {
        let dir = corpus_dir(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let opened = harness(&data);
            // The valid seeds must reach the success path, or the fuzzer never explores it.
            let name = path.file_name().unwrap().to_string_lossy();
            if [
                "small",
                "multi_chunk",
                "v2_small",
                "v2_multi_chunk",
                "unicode",
                "error",
                "sub_only",
                "typ_jwt",
            ]
            .contains(&name.as_ref())
            {
                assert!(opened, "{target}/{name} no longer opens");
            }
            n += 1;
        }
        assert!(n >= 3, "{target}: only {n} corpus files");
    }
}

#[test]
fn every_fuzz_target_is_registered() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    let declared = manifest.matches("[[bin]]").count();
    assert_eq!(
        declared,
        TARGETS.len(),
        "fuzz/Cargo.toml and TARGETS disagree"
    );
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "{target}"
        );
    }
}

fn seed_session(access_len: usize) -> Session {
    let pad = "x".repeat(access_len);
    let claims = format!(r#"{{"sub":"user-1","sid":"sid-1","groups":"{pad}"}}"#);
    let b64 = |s: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let jwt = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(claims.as_bytes()),
        b64(&[7; 256])
    );
    Session {
        id: SessionId::from_bytes([1; 16]),
        provider: String::new(),
        sub: "user-1".into(),
        sid: Some("sid-1".into()),
        issued_at: FUZZ_NOW - 100,
        stamp: (FUZZ_NOW - 100) * 1000 + 250,
        granted_at: FUZZ_NOW - 40,
        last_seen: FUZZ_NOW - 10,
        idle_expires_at: FUZZ_NOW + 1200,
        absolute_expires_at: FUZZ_NOW + 28_000,
        access_token: Token::from_issued(&jwt),
        access_expires_at: Some(FUZZ_NOW + 300),
        refresh_token: Some(Token::from_issued("opaque-refresh~token")),
        id_token: Some(Token::from_issued(&jwt)),
        dpop: None,
    }
}

#[test]
#[ignore = "writes the seed corpus; run with SEALGATE_WRITE_SEEDS=1"]
fn write_seed_corpus() {
    if std::env::var_os("SEALGATE_WRITE_SEEDS").is_none() {
        return;
    }
    let codec = Codec::new(KeyRing::from_bytes(&[FUZZ_KEY]).unwrap(), 4);
    let name = CookieName::new(FUZZ_COOKIE).unwrap();
    let write = |target: &str, file: &str, data: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), data).unwrap();
    };
    // Cookie format 2 (millisecond stamps). The seeds without "v2_" were written by format 1
    // and are kept: they cover the reading of older cookies.
    for (label, len) in [("v2_small", 10), ("v2_multi_chunk", 4500)] {
        let s = seed_session(len);
        let pt = s.encode().unwrap();
        write("decode_session", label, &pt);
        let sealed = codec
            .seal(Purpose::Session, &name, s.expires_at(), &pt)
            .unwrap();
        let pairs: Vec<String> = (0u8..)
            .zip(&sealed.chunks)
            .map(|(i, c)| format!("{}={c}", name.chunk(i)))
            .collect();
        write(
            "open_cookie_header",
            label,
            format!("a=b; {}", pairs.join("; ")).as_bytes(),
        );
        write("open_chunk_set", label, pairs.join("\n").as_bytes());
    }
    let login = codec
        .seal(Purpose::Login, &name, FUZZ_NOW + 600, b"login-flow")
        .unwrap();
    write(
        "open_cookie_header",
        "v2_login",
        format!("{}={}", name.chunk(0), login.chunks[0]).as_bytes(),
    );
    write(
        "open_cookie_header",
        "duplicate",
        b"__Host-sealgate.0=AQ; __Host-sealgate.0=AQ",
    );
    write(
        "open_cookie_header",
        "stale",
        b"__Host-sealgate.1=AAAA\n__Host-sealgate.3=AAAA; __Host-sealgate.200=x",
    );
    write(
        "open_chunk_set",
        "junk",
        b"__Host-sealgate.0=AQEBAQ\n__Host-sealgate.x=1\n=\n",
    );
    write("open_chunk_set", "empty", b"");
    write("decode_session", "empty", b"");
    write("decode_session", "junk", &[0xff; 40]);

    // Journals: every entry kind alive at FUZZ_NOW plus an expired one; torn; damaged early.
    let entries = [
        Revocation::Session {
            id: [3; 16],
            until: FUZZ_NOW + 600,
        },
        Revocation::Sid {
            iss: "https://idp.example".into(),
            sid: "sid-1".into(),
            not_before: (FUZZ_NOW - 10) * 1000,
            until: FUZZ_NOW + 28_800,
        },
        Revocation::Sub {
            iss: "https://idp.example".into(),
            sub: "user-1".into(),
            not_before: (FUZZ_NOW - 10) * 1000,
            until: FUZZ_NOW + 28_800,
        },
        Revocation::Global {
            not_before: (FUZZ_NOW - 10) * 1000,
            until: FUZZ_NOW + 28_800,
        },
        Revocation::Session {
            id: [4; 16],
            until: FUZZ_NOW - 1,
        },
    ];
    // Millisecond not-befores; the seeds without "v2_" hold entries in whole seconds (kinds 2-4)
    // and are kept for the reading of older journals.
    let valid = journal::to_bytes(&entries);
    write("journal_replay", "v2_small", &valid);
    write("journal_replay", "v2_torn", &valid[..valid.len() - 5]);
    let mut damaged = valid.clone();
    damaged[journal::HEADER_LEN + 12] ^= 0x20;
    write("journal_replay", "v2_damaged_early", &damaged);
    write("journal_replay", "empty", b"");
    write("journal_replay", "junk", b"SGREVJN\x01 no journal here");
    write_logout_token_seeds();
}

#[test]
#[ignore = "writes the logout_token seeds only; run with SEALGATE_WRITE_SEEDS=1"]
fn write_logout_token_seed_corpus() {
    if std::env::var_os("SEALGATE_WRITE_SEEDS").is_some() {
        write_logout_token_seeds();
    }
}

/// Logout tokens signed with the harness key (`test-rsa1`), valid at `FUZZ_NOW`, and near
/// misses.
fn write_logout_token_seeds() {
    use crate::support::idp::{BACKCHANNEL_LOGOUT_EVENT, RSA1, sign_jws};
    use serde_json::{Value, json};
    let claims = |edit: fn(&mut serde_json::Map<String, Value>)| {
        let mut c = serde_json::Map::new();
        c.insert("iss".into(), json!(FUZZ_ISSUER));
        c.insert("aud".into(), json!([FUZZ_CLIENT, "trusted"]));
        c.insert("sub".into(), json!("alice"));
        c.insert("sid".into(), json!("sid-1"));
        c.insert("iat".into(), json!(FUZZ_NOW - 10));
        c.insert("exp".into(), json!(FUZZ_NOW + 110));
        c.insert("jti".into(), json!("jti-1"));
        c.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        edit(&mut c);
        Value::Object(c)
    };
    let sign = |typ: Option<&str>, kid: &str, claims: Value| {
        let mut header = json!({ "alg": "RS256", "kid": kid });
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        sign_jws(
            &header,
            &claims,
            RSA1.encoding(),
            jsonwebtoken::Algorithm::RS256,
        )
    };
    let dir = corpus_dir("logout_token");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |file: &str, data: &str| std::fs::write(dir.join(file), data).unwrap();
    write("small", &sign(Some("logout+jwt"), FUZZ_KID, claims(|_| {})));
    write(
        "sub_only",
        &sign(
            Some("logout+jwt"),
            FUZZ_KID,
            claims(|c| drop(c.remove("sid"))),
        ),
    );
    write("typ_jwt", &sign(Some("JWT"), FUZZ_KID, claims(|_| {})));
    write(
        "nonce",
        &sign(
            Some("logout+jwt"),
            FUZZ_KID,
            claims(|c| drop(c.insert("nonce".into(), json!("n")))),
        ),
    );
    write(
        "unknown_kid",
        &sign(Some("logout+jwt"), "other", claims(|_| {})),
    );
    write(
        "expired",
        &sign(
            Some("logout+jwt"),
            FUZZ_KID,
            claims(|c| drop(c.insert("exp".into(), json!(FUZZ_NOW - 100)))),
        ),
    );
    write("junk", "eyJhbGciOiJub25lIn0.e30.");
    write("empty", "");
}
