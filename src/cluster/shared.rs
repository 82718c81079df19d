//! What the refresh lock and the grant turns share: a Redis lock held by a random holder, and
//! a value sealed with the session key (chunks joined by `.`), bound to a name, expiring.

use std::time::Duration;

use super::Conn;
use zeroize::Zeroizing;

use super::hex;
use crate::seal::{ChunkSet, Codec, CookieName, Opened, Purpose};

/// Deletes the lock only while it still holds our token: it may have expired and been taken.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A random holder token for a lock (OS CSPRNG).
pub(super) fn new_holder() -> Option<String> {
    let mut token = [0u8; 16];
    crate::secret::fill_random(&mut token).ok()?;
    Some(hex(&token))
}

/// `SET key holder NX PX ttl`: whether `holder` took the lock.
pub(super) async fn take_lock(
    conn: &mut Conn,
    key: &str,
    holder: &str,
    ttl: Duration,
) -> redis::RedisResult<bool> {
    let won: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(holder)
        .arg("NX")
        .arg("PX")
        .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
        .query_async(conn)
        .await?;
    Ok(won.is_some())
}

/// Gives the lock back, if `holder` still holds it.
pub(super) async fn release_lock(conn: &mut Conn, key: &str, holder: &str) {
    let _: redis::RedisResult<i64> = redis::Script::new(RELEASE)
        .key(key)
        .arg(holder)
        .invoke_async(conn)
        .await;
}

/// `SET key value PX millis` (at least 1 ms).
pub(super) async fn put_expiring(
    conn: &mut Conn,
    key: &str,
    value: &str,
    millis: u64,
) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(millis.max(1))
        .query_async(conn)
        .await
}

/// Seals `plain` as one value bound to `name`, opening until `expires`; `None` when it is too
/// large for the codec's chunks.
pub(super) fn seal_value(
    codec: &Codec,
    name: &CookieName,
    expires: i64,
    plain: &[u8],
) -> Option<Zeroizing<String>> {
    let sealed = codec.seal(Purpose::Refresh, name, expires, plain).ok()?;
    Some(Zeroizing::new(sealed.chunks.join(".")))
}

/// Opens what [`seal_value`] sealed under the same `name` at `now`; `None` when it does not.
pub(super) fn open_value(
    codec: &Codec,
    name: &CookieName,
    sealed: &str,
    now: i64,
) -> Option<Opened> {
    let chunk_names: Vec<String> = (0..codec.max_chunks()).map(|i| name.chunk(i)).collect();
    let pairs = sealed
        .split('.')
        .zip(&chunk_names)
        .map(|(v, n)| (n.as_str(), v));
    let set = ChunkSet::from_pairs(name, codec.max_chunks(), pairs);
    codec.open(Purpose::Refresh, name, &set, now).ok()
}
