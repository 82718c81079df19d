//! Codec benchmarks: `open` and `seal` of a reference session against a raw XChaCha20-Poly1305
//! decrypt and encrypt of the same plaintext length, measured in the same run, plus cookie sizes.
//!
//! Run: `cargo bench --bench codec`. The report at the end prints the ratios (targets: open ≤
//! 2.5× raw decrypt, seal ≤ 3× raw encrypt, cookie bytes ≤ 1.05× issued token bytes). Nothing
//! here asserts a timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use criterion::Criterion;
use sealgate::internal::Token;
use sealgate::internal::{ChunkSet, Codec, CookieName, KeyRing, Purpose};
use sealgate::internal::{Session, SessionId};

const NOW: i64 = 1_800_000_000;

/// A deterministic byte stream (the benchmark needs realistic sizes, not secrecy).
fn bytes(seed: u8, n: usize) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A JWS of exactly `len` characters: `header`, claims padded with `pad_claim`, RS256-sized
/// signature.
fn jwt(header: &str, claims: &str, pad_claim: &str, len: usize, seed: u8) -> String {
    let head = b64(header.as_bytes());
    let sig = b64(&bytes(seed, 256));
    let mut body = claims.to_string();
    // Grow a padding claim until the token reaches the target length.
    let mut pad = String::new();
    loop {
        let json = format!("{{{body},\"{pad_claim}\":\"{pad}\"}}");
        let token = format!("{head}.{}.{sig}", b64(json.as_bytes()));
        if token.len() >= len {
            body = json;
            break;
        }
        pad.push('x');
    }
    format!("{head}.{}.{sig}", b64(body.as_bytes()))
}

struct Reference {
    session: Session,
    issued_bytes: usize,
}

fn reference(access_len: usize, groups: usize, at_jwt: bool) -> Reference {
    let sub = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
    let sid = "5d1b2c3a-9f1e-4c2b-8e7d-2f6a1b0c9d8e";
    let iss = "https://idp.example.com/realms/acme";
    let kid = "rQ1tmD8i2GEFG0aJNj6jbmWUmRrs0FTqvgR52MvUzSc";
    let header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#);
    let access_header = if at_jwt {
        format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}"}}"#)
    } else {
        header.clone()
    };
    let group_list: Vec<String> = (0..groups)
        .map(|i| format!("\"/org/team-{i:03}\""))
        .collect();
    let access_claims = format!(
        r#""exp":1800000300,"iat":1800000000,"jti":"0f3c1a2e-8b7d-4e5f-9a1b-2c3d4e5f6a7b","iss":"{iss}","aud":["orders-api","billing-api"],"sub":"{sub}","typ":"Bearer","azp":"spa-bff","sid":"{sid}","scope":"openid profile email offline_access orders:read orders:write","groups":[{}]"#,
        group_list.join(",")
    );
    let access = jwt(&access_header, &access_claims, "realm_roles", access_len, 1);
    let id_claims = format!(
        r#""exp":1800000300,"iat":1800000000,"auth_time":1799999990,"iss":"{iss}","aud":"spa-bff","sub":"{sub}","typ":"ID","azp":"spa-bff","nonce":"n-0S6_WzA2Mj","sid":"{sid}","at_hash":"77QmUPtjPfzWtF2AnpK9RQ","name":"Jane Doe","email":"jane.doe@example.com","email_verified":true"#
    );
    let id = jwt(&header, &id_claims, "preferred_username", 1000, 2);
    let refresh = b64(&bytes(3, 32));
    assert_eq!(refresh.len(), 43);
    let issued_bytes = access.len() + id.len() + refresh.len();
    Reference {
        session: Session {
            id: SessionId::from_bytes([7; 16]),
            provider: String::new(),
            sub: sub.into(),
            sid: Some(sid.into()),
            issued_at: NOW,
            stamp: NOW * 1000,
            granted_at: NOW,
            last_seen: NOW,
            idle_expires_at: NOW + 1200,
            absolute_expires_at: NOW + 28_800,
            access_token: Token::from_issued(&access),
            access_expires_at: Some(NOW + 300),
            refresh_token: Some(Token::from_issued(&refresh)),
            id_token: Some(Token::from_issued(&id)),
            dpop: None,
        },
        issued_bytes,
    }
}

fn cookie_header(name: &CookieName, chunks: &[String]) -> String {
    (0u8..)
        .zip(chunks)
        .map(|(i, c)| format!("{}={c}", name.chunk(i)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/criterion")
}

fn mean_ns(group: &str, id: &str) -> f64 {
    let path = out_dir().join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["mean"]["point_estimate"].as_f64().unwrap()
}

fn main() {
    let codec = Codec::new(KeyRing::from_bytes(&[[0x11; 32]]).unwrap(), 4);
    let name = CookieName::new("__Host-sealgate").unwrap();
    let r = reference(1200, 0, false);
    let plaintext = r.session.encode().unwrap();
    let sealed = codec
        .seal(Purpose::Session, &name, r.session.expires_at(), &plaintext)
        .unwrap();
    let header = format!(
        "theme=dark; {}; _ga=GA1.2.3",
        cookie_header(&name, &sealed.chunks)
    );
    // The raw baseline encrypts exactly what `seal` encrypts: the expiry varint and payload.
    let sealed_plaintext_len = plaintext.len() + 5;
    let raw = XChaCha20Poly1305::new(&[0x11; 32].into());
    let nonce = XNonce::from([0x24; 24]);
    let raw_pt = bytes(9, sealed_plaintext_len);
    let aad = [0u8; 40];
    let raw_ct = raw
        .encrypt(
            &nonce,
            Payload {
                msg: &raw_pt,
                aad: &aad,
            },
        )
        .unwrap();

    let mut c = Criterion::default()
        .output_directory(&out_dir())
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("codec");
        g.bench_function("open", |b| {
            b.iter(|| {
                let set = ChunkSet::from_headers(&name, 4, [black_box(header.as_str())]);
                let opened = codec.open(Purpose::Session, &name, &set, NOW).unwrap();
                Session::decode(opened.payload()).unwrap()
            });
        });
        g.bench_function("seal", |b| {
            b.iter(|| {
                let pt = black_box(&r.session).encode().unwrap();
                codec
                    .seal(Purpose::Session, &name, r.session.expires_at(), &pt)
                    .unwrap()
            });
        });
        g.bench_function("raw_decrypt", |b| {
            b.iter(|| {
                raw.decrypt(
                    &nonce,
                    Payload {
                        msg: black_box(&raw_ct),
                        aad: &aad,
                    },
                )
                .unwrap()
            });
        });
        g.bench_function("raw_encrypt", |b| {
            b.iter(|| {
                raw.encrypt(
                    &nonce,
                    Payload {
                        msg: black_box(&raw_pt),
                        aad: &aad,
                    },
                )
                .unwrap()
            });
        });
        g.bench_function("part_parse_cookie_header", |b| {
            b.iter(|| ChunkSet::from_headers(&name, 4, [black_box(header.as_str())]).seen());
        });
        g.bench_function("part_base64_decode", |b| {
            b.iter(|| {
                URL_SAFE_NO_PAD
                    .decode(black_box(&sealed.chunks[0]))
                    .unwrap()
            });
        });
        g.bench_function("part_session_decode", |b| {
            b.iter(|| Session::decode(black_box(&plaintext)).unwrap());
        });
        g.bench_function("restore_access_token", |b| {
            b.iter(|| black_box(&r.session.access_token).expose());
        });
        g.finish();
    }
    c.final_summary();

    let (open, seal) = (mean_ns("codec", "open"), mean_ns("codec", "seal"));
    let (dec, enc) = (
        mean_ns("codec", "raw_decrypt"),
        mean_ns("codec", "raw_encrypt"),
    );
    let restore = mean_ns("codec", "restore_access_token");
    println!(
        "\n== sealgate codec report (reference session, plaintext {sealed_plaintext_len} B) =="
    );
    println!(
        "open  {open:8.0} ns   raw decrypt {dec:8.0} ns   ratio {:.2}x (target <= 2.5x)",
        open / dec
    );
    println!(
        "seal  {seal:8.0} ns   raw encrypt {enc:8.0} ns   ratio {:.2}x (target <= 3x)",
        seal / enc
    );
    println!("restore access token to its issued text: {restore:.0} ns (done when proxying)");
    println!(
        "open's parts: Cookie header {:.0} ns, base64 decode {:.0} ns, session decode {:.0} ns",
        mean_ns("codec", "part_parse_cookie_header"),
        mean_ns("codec", "part_base64_decode"),
        mean_ns("codec", "part_session_decode"),
    );

    println!("\n== cookie sizes ==");
    for (label, r) in [
        (
            "reference: 1.2 KB access JWT, 1 KB ID JWT, 43-char refresh",
            reference(1200, 0, false),
        ),
        (
            "same, access token typ at+jwt (headers differ)",
            reference(1200, 0, true),
        ),
        (
            "large: 4 KB access JWT with 150 groups",
            reference(4000, 150, false),
        ),
        (
            "larger: 8 KB access JWT with 400 groups",
            reference(8000, 400, false),
        ),
    ] {
        let pt = r.session.encode().unwrap();
        match codec.seal(Purpose::Session, &name, r.session.expires_at(), &pt) {
            Ok(s) => {
                let bytes = s.cookie_bytes(&name);
                println!(
                    "{label}: issued tokens {} B, cookie {bytes} B (name=value, all chunks) = {:.3}x, {} chunk(s)",
                    r.issued_bytes,
                    bytes as f64 / r.issued_bytes as f64,
                    s.chunks.len()
                );
            }
            Err(e) => println!("{label}: issued tokens {} B: {e}", r.issued_bytes),
        }
    }
}
