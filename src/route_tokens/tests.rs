use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::oidc::{RefreshError, Refreshed};
use crate::seal::{Codec, CookieName, KeyRing, Purpose};
use crate::secret::SecretString;
use crate::session::Session;
use crate::token::Form;

const NOW: i64 = 1_800_000_000;

fn granted(token: &str, expires_in: Option<u64>) -> Granted {
    Granted {
        access_token: SecretString::new(token.to_owned()),
        expires_in,
        refresh_token: None,
        token_type: TokenType::Bearer,
    }
}

fn minted(n: usize, reuse_until: i64) -> Outcome {
    Minted::new(
        &granted(&format!("t{n}"), Some(600)),
        reuse_until - 600,
        0,
        None,
    )
}

fn id(b: u8) -> SessionId {
    SessionId::from_bytes([b; 16])
}

fn shown(m: &Outcome) -> String {
    m.as_ref()
        .map(|m| m.bearer.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn a_token_is_reused_until_refresh_before_its_expiry() {
    let m = Minted::new(&granted("abc", Some(3600)), NOW, 30, None).unwrap();
    assert_eq!(m.bearer.to_str().unwrap(), "Bearer abc");
    assert!(m.bearer.is_sensitive());
    assert_eq!(m.reuse_until, NOW + 3570);
    // A short-lived token is reused for half its life, not never.
    let m = Minted::new(&granted("abc", Some(40)), NOW, 30, None).unwrap();
    assert_eq!(m.reuse_until, NOW + 20);
    // Without expires_in: a JWT's exp, else a minute.
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, NOW + 900));
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln");
    let m = Minted::new(&granted(&jwt, None), NOW, 30, None).unwrap();
    assert_eq!(m.reuse_until, NOW + 870);
    let m = Minted::new(&granted("opaque", None), NOW, 30, None).unwrap();
    assert_eq!(m.reuse_until, NOW + 30);
    // An expired JWT is never reused.
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, NOW - 5));
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln");
    let m = Minted::new(&granted(&jwt, None), NOW, 30, None).unwrap();
    assert_eq!(m.reuse_until, NOW);
    assert!(matches!(
        Minted::new(&granted("a\u{7f}b", Some(60)), NOW, 30, None),
        Err(RouteGrantError::BadResponse(_))
    ));
    let shown = format!("{m:?}");
    assert!(!shown.contains("Bearer"), "{shown}");
}

#[tokio::test]
async fn fifty_concurrent_requests_share_one_grant() {
    let tokens = Arc::new(RouteTokens::new(64));
    let grants = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (tokens, grants) = (tokens.clone(), grants.clone());
        tasks.spawn(async move {
            tokens
                .user(id(1), 3, NOW, || async move {
                    let n = grants.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    minted(n, NOW + 100)
                })
                .await
        });
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        seen.insert(shown(&r.unwrap()));
    }
    assert_eq!(grants.load(Ordering::SeqCst), 1);
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[tokio::test]
async fn kept_tokens_are_per_session_and_route_and_minted_again_when_due() {
    let tokens = RouteTokens::new(64);
    let grants = AtomicUsize::new(0);
    let get = |s: u8, route: usize, now: i64| {
        let grants = &grants;
        let tokens = &tokens;
        async move {
            shown(
                &tokens
                    .user(id(s), route, now, || async move {
                        minted(grants.fetch_add(1, Ordering::SeqCst), now + 100)
                    })
                    .await,
            )
        }
    };
    let first = get(1, 0, NOW).await;
    assert_eq!(get(1, 0, NOW + 99).await, first, "reused before it is due");
    assert_ne!(get(1, 1, NOW).await, first, "another route, another token");
    assert_ne!(
        get(2, 0, NOW).await,
        first,
        "another session, another token"
    );
    assert_eq!(grants.load(Ordering::SeqCst), 3);
    let again = get(1, 0, NOW + 100).await;
    assert_ne!(again, first, "minted again when due");
    assert_eq!(grants.load(Ordering::SeqCst), 4);
    tokens.forget(id(1));
    assert_eq!(tokens.len(), 1, "only session 2's token is left");
}

#[tokio::test]
async fn a_failed_grant_is_not_kept() {
    let tokens = RouteTokens::new(64);
    let failed = tokens
        .user(id(1), 0, NOW, || async {
            Err(RouteGrantError::Status(503))
        })
        .await;
    assert_eq!(failed.unwrap_err(), RouteGrantError::Status(503));
    assert_eq!(tokens.len(), 0);
    let ok = tokens
        .user(id(1), 0, NOW, || async { minted(1, NOW + 100) })
        .await;
    assert_eq!(shown(&ok), "Bearer t1");
    let client = tokens
        .client(4, NOW, || async {
            Err(RouteGrantError::Unreachable("down".into()))
        })
        .await;
    assert!(client.is_err());
    let client = tokens
        .client(4, NOW, || async { minted(2, NOW + 100) })
        .await;
    assert_eq!(shown(&client), "Bearer t2", "the next request tries again");
}

#[tokio::test]
async fn client_tokens_are_one_per_route() {
    let tokens = RouteTokens::new(0);
    let grants = AtomicUsize::new(0);
    for (route, now) in [(1, NOW), (1, NOW + 50), (2, NOW), (1, NOW + 100)] {
        let grants = &grants;
        let _ = tokens
            .client(route, now, || async move {
                minted(grants.fetch_add(1, Ordering::SeqCst), now + 100)
            })
            .await;
    }
    assert_eq!(grants.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_table_is_bounded_and_zero_keeps_nothing() {
    // One shard's worth: 16 sessions whose ids land in the same shard.
    let tokens = RouteTokens::new(SHARDS * 2);
    for route in 0..5 {
        let _ = tokens
            .user(id(16), route, NOW, || async { minted(route, NOW + 100) })
            .await;
    }
    assert_eq!(tokens.len(), 2, "a full shard gives up a kept token");
    let off = RouteTokens::new(0);
    let grants = AtomicUsize::new(0);
    for _ in 0..3 {
        let grants = &grants;
        let _ = off
            .user(id(1), 0, NOW, || async move {
                minted(grants.fetch_add(1, Ordering::SeqCst), NOW + 100)
            })
            .await;
    }
    assert_eq!(grants.load(Ordering::SeqCst), 3);
    assert_eq!(off.len(), 0);
}

fn refreshed(rt: Option<&str>) -> Refreshed {
    Refreshed {
        access_token: Token::from_issued("at"),
        access_expires_at: None,
        refresh_token: rt.map(Token::from_issued),
        id_token: None,
        token_type: None,
    }
}

fn session_with(rt: &str) -> Arc<Session> {
    let mut s = crate::session::tests::sample();
    s.id = id(1);
    s.refresh_token = Some(Token::from_issued(rt));
    Arc::new(s)
}

#[tokio::test]
async fn a_replaced_refresh_token_is_never_redeemed_again_and_is_adopted() {
    let lanes = Lanes::default();
    let rt1 = Token::from_issued("rt-one");
    let used = Mutex::new(Vec::new());
    let redeem = |presented: &Token, answer: Option<&'static str>| {
        let used = &used;
        let lanes = &lanes;
        let presented = presented.clone();
        async move {
            lanes
                .redeem(
                    id(1),
                    &presented,
                    (NOW, 30),
                    None,
                    |rt: SecretString| async move {
                        used.lock().unwrap().push(rt.expose().to_owned());
                        Ok::<_, RefreshError>(refreshed(answer))
                    },
                )
                .await
                .unwrap()
        }
    };
    // A route grant rotates rt-one into rt-two.
    let r = redeem(&rt1, Some("rt-two")).await;
    assert_eq!(r.refresh_token, Some(Token::from_issued("rt-two")));
    // The next grant presenting rt-one redeems rt-two, and tells its session to carry it even
    // though the IdP returned no new one.
    let r = redeem(&rt1, None).await;
    assert_eq!(r.refresh_token, Some(Token::from_issued("rt-two")));
    assert_eq!(*used.lock().unwrap(), ["rt-one", "rt-two"]);
    // A request whose cookie still has rt-one adopts rt-two; one with rt-two keeps it.
    let mut stale = session_with("rt-one");
    assert!(lanes.adopt(&mut stale, NOW + 30));
    assert_eq!(stale.refresh_token, Some(Token::from_issued("rt-two")));
    let mut current = session_with("rt-two");
    assert!(!lanes.adopt(&mut current, NOW));
    // Another session is untouched, and the lineage is forgotten after `keep`.
    let mut other = session_with("rt-one");
    Arc::make_mut(&mut other).id = id(2);
    assert!(!lanes.adopt(&mut other, NOW));
    let mut late = session_with("rt-one");
    assert!(!lanes.adopt(&mut late, NOW + 31));
}

#[tokio::test]
async fn a_lineage_remembers_only_its_latest_replaced_tokens() {
    let lanes = Lanes::default();
    let token = |n: usize| Token::from_issued(&format!("rt-{n}"));
    for n in 0..40 {
        let next = format!("rt-{}", n + 1);
        lanes
            .redeem(id(1), &token(n), (NOW, 600), None, |_| async move {
                Ok::<_, RefreshError>(refreshed(Some(&next)))
            })
            .await
            .unwrap();
    }
    // rt-40 is the newest; rt-24 … rt-39 are remembered as replaced, older ones are not.
    let mut recent = session_with("rt-39");
    assert!(lanes.adopt(&mut recent, NOW));
    assert_eq!(recent.refresh_token, Some(token(40)));
    let mut oldest_kept = session_with("rt-24");
    assert!(lanes.adopt(&mut oldest_kept, NOW));
    let mut forgotten = session_with("rt-23");
    assert!(!lanes.adopt(&mut forgotten, NOW));
}

#[tokio::test]
async fn grants_of_one_session_take_turns() {
    let lanes = Arc::new(Lanes::default());
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (lanes, inside, most) = (lanes.clone(), inside.clone(), most.clone());
        tasks.spawn(async move {
            let rt = Token::from_issued("rt");
            lanes
                .redeem(id(1), &rt, (NOW, 30), None, |_| async move {
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, RefreshError>(refreshed(Some(if i % 2 == 0 { "a" } else { "b" })))
                })
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two grants at once");
}

/// A JWS of about `len` characters with random-looking (incompressible) claims and signature,
/// like a real token.
fn jwt_of(len: usize, seed: u8) -> String {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect()
    };
    let header = URL_SAFE_NO_PAD
        .encode(br#"{"typ":"JWT","alg":"RS256","kid":"JDNa_4i4r7FgigL3sHIlI3xV-IU"}"#);
    let sig = URL_SAFE_NO_PAD.encode(noise(256));
    let room = len.saturating_sub(header.len() + sig.len() + 2) * 3 / 4;
    let filler = URL_SAFE_NO_PAD.encode(noise(room.saturating_sub(80) * 3 / 4));
    let claims = format!(
        r#"{{"aud":"api://orders","iss":"https://sts.windows.net/t/","exp":1800003600,"x":"{filler}"}}"#
    );
    format!("{header}.{}.{sig}", URL_SAFE_NO_PAD.encode(claims))
}

/// Measures what sealing two Entra-like route tokens (about 1.2 KB each) into the session
/// cookie would cost, against a session with Entra-like tokens of its own (run with
/// `--nocapture` to see the numbers). Each route token is counted as compactly as the session
/// stores its own: decoded segments, with its route and expiry.
#[test]
fn sealing_two_route_tokens_would_grow_the_cookie() {
    let codec = Codec::new(KeyRing::from_bytes(&[[0x11; 32]]).unwrap(), 4);
    let name = CookieName::new("__Host-sealgate").unwrap();
    let mut session = crate::session::tests::sample();
    session.access_token = Token::from_issued(&jwt_of(1500, 1));
    session.id_token = Some(Token::from_issued(&jwt_of(1100, 2)));
    // An Entra refresh token: opaque, about 1 KB, not canonical base64 (kept as issued).
    let opaque: String = "0.AXEA"
        .chars()
        .chain(jwt_of(1000, 3).chars().filter(|c| *c != '.'))
        .take(1000)
        .collect();
    session.refresh_token = Some(Token::from_issued(&opaque));
    let plain = session.encode().unwrap();
    let base = codec
        .seal(Purpose::Session, &name, NOW + 3600, &plain)
        .unwrap();
    let mut with_routes = plain.to_vec();
    let mut decoded = 0;
    for seed in [4, 5] {
        let issued = jwt_of(1200, seed);
        assert!((1150..=1250).contains(&issued.len()), "{}", issued.len());
        let Form::Dotted(segments) = Token::from_issued(&issued).0 else {
            panic!("a JWS is stored decoded");
        };
        let parts: Vec<&[u8]> = segments.iter().map(|s| s.expose()).collect();
        decoded += parts.iter().map(|p| p.len()).sum::<usize>();
        with_routes.extend(postcard::to_allocvec(&(7_u16, NOW + 3600, parts)).unwrap());
    }
    let grown = codec
        .seal(Purpose::Session, &name, NOW + 3600, &with_routes)
        .unwrap();
    let (before, after) = (base.cookie_bytes(&name), grown.cookie_bytes(&name));
    println!(
        "session cookie: {before} bytes in {} chunk(s); with two sealed route tokens: {after} bytes in {} chunk(s) (+{})",
        base.chunks.len(),
        grown.chunks.len(),
        after - before
    );
    assert!(after - before >= decoded * 4 / 3, "{before} → {after}");
    assert!(
        after * 10 > before * 15,
        "half as large again: {before} → {after}"
    );
}
