//! Reading chunk cookies from `Cookie` headers and writing `Set-Cookie` values for them.
//!
//! Every cookie sealgate writes is `__Host-` prefixed, `Secure`, `HttpOnly`, `Path=/`, without
//! `Domain`; `SameSite=Strict` for the session and `Lax` for a login flow. Deletion cookies carry
//! the very same attributes (a browser only replaces a cookie whose attributes match).

use cookie::{Cookie, SameSite};

use super::{CookieName, Purpose, Sealed};

/// A set of chunk indices 0..=255.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSet([u64; 4]);

impl IndexSet {
    /// Adds `i`; returns whether it was already present.
    pub fn insert(&mut self, i: u8) -> bool {
        let (word, bit) = (usize::from(i / 64), 1u64 << (i % 64));
        let had = self.0[word] & bit != 0;
        self.0[word] |= bit;
        had
    }

    /// Whether `i` is present.
    pub fn contains(&self, i: u8) -> bool {
        self.0[usize::from(i / 64)] & (1u64 << (i % 64)) != 0
    }

    /// Present indices, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&i| self.contains(i))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The indices below `limit`.
    #[must_use]
    pub fn below(&self, limit: u8) -> Self {
        let mut out = Self::default();
        for i in self.iter().take_while(|&i| i < limit) {
            out.insert(i);
        }
        out
    }
}

/// The `name=value` pairs of a `Cookie` header exactly as `cookie::Cookie::split_parse` reads
/// them (split at `;`, name and value trimmed, pieces without `=` or with an empty name skipped;
/// a property test holds the two equal), but finding the separators with `memchr`'s SIMD search:
/// a session makes this header several kilobytes, and the `cookie` crate scans it twice with a
/// byte-at-a-time search, which was ~2% of a proxied request's CPU.
pub(crate) fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut start = 0;
    let ends = memchr::memchr_iter(b';', header.as_bytes()).chain(std::iter::once(header.len()));
    ends.filter_map(move |end| {
        // `;` is ASCII, so both ends are on character boundaries.
        let piece = header.get(start..end)?;
        start = end + 1;
        let eq = memchr::memchr(b'=', piece.as_bytes())?;
        let (name, value) = (piece.get(..eq)?.trim(), piece.get(eq + 1..)?.trim());
        (!name.is_empty()).then_some((name, value))
    })
}

/// The chunks of one cookie name found in a request.
#[derive(Debug, Clone)]
pub struct ChunkSet<'a> {
    slots: Vec<Option<&'a str>>,
    seen: IndexSet,
    duplicate: bool,
}

impl<'a> ChunkSet<'a> {
    /// Collects the chunks of `name` (indices below `max_chunks`) from `Cookie` header values.
    ///
    /// Every `<name>.<i>` with a canonical decimal `i` ≤ 255 is remembered as seen (so stale
    /// chunks can be deleted); a repeated chunk name marks the set as duplicate. Cookies that
    /// do not parse are skipped, as a browser would never send them.
    pub fn from_headers<I>(name: &CookieName, max_chunks: u8, headers: I) -> Self
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut set = Self::empty(max_chunks);
        for header in headers {
            for (n, v) in cookie_pairs(header) {
                set.add(name, n, v);
            }
        }
        set
    }

    /// Collects chunks from `(name, value)` pairs already split by the caller.
    pub fn from_pairs<I>(name: &CookieName, max_chunks: u8, pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut set = Self::empty(max_chunks);
        for (n, v) in pairs {
            set.add(name, n, v);
        }
        set
    }

    fn empty(max_chunks: u8) -> Self {
        Self {
            slots: vec![None; usize::from(max_chunks.max(1))],
            seen: IndexSet::default(),
            duplicate: false,
        }
    }

    fn add(&mut self, base: &CookieName, name: &str, value: &'a str) {
        let Some(index) = name
            .strip_prefix(base.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(parse_index)
        else {
            return;
        };
        if self.seen.insert(index) {
            self.duplicate = true;
        }
        if let Some(slot) = self.slots.get_mut(usize::from(index)) {
            *slot = Some(value);
        }
    }

    /// Chunk `index`, if present and below the limit.
    pub fn get(&self, index: u8) -> Option<&'a str> {
        self.slots.get(usize::from(index)).copied().flatten()
    }

    /// Every chunk index seen, whether or not below the limit.
    pub fn seen(&self) -> IndexSet {
        self.seen
    }

    /// Whether a chunk name appeared more than once.
    pub fn has_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Whether no chunk of this name was present at all.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A canonical decimal index: `0`, or digits without a leading zero, at most 255.
fn parse_index(s: &str) -> Option<u8> {
    let canonical = !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

fn base_cookie(name: String, value: String, purpose: Purpose) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(match purpose {
            Purpose::Session | Purpose::Refresh => SameSite::Strict,
            Purpose::Login => SameSite::Lax,
        })
        .build()
}

/// `Set-Cookie` values for `sealed`, plus deletions for every previously seen chunk it no
/// longer uses. `Max-Age` runs to the sealed expiry.
pub(crate) fn set_cookies(
    name: &CookieName,
    purpose: Purpose,
    sealed: &Sealed,
    now: i64,
    previously_seen: IndexSet,
) -> Vec<Cookie<'static>> {
    let max_age = time::Duration::seconds(sealed.expires_at.saturating_sub(now).max(0));
    let mut out: Vec<Cookie<'static>> = (0u8..)
        .zip(&sealed.chunks)
        .map(|(i, value)| {
            let mut c = base_cookie(name.chunk(i), value.clone(), purpose);
            c.set_max_age(max_age);
            c
        })
        .collect();
    let used = u8::try_from(sealed.chunks.len()).unwrap_or(u8::MAX);
    out.extend(removal_cookies(
        name,
        purpose,
        previously_seen.iter().filter(|&i| i >= used),
    ));
    out
}

/// Deletion cookies (empty value, `Max-Age=0`, expiry in the past) for chunks `indices`.
pub(crate) fn removal_cookies(
    name: &CookieName,
    purpose: Purpose,
    indices: impl IntoIterator<Item = u8>,
) -> Vec<Cookie<'static>> {
    indices
        .into_iter()
        .map(|i| {
            let mut c = base_cookie(name.chunk(i), String::new(), purpose);
            c.make_removal();
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> CookieName {
        CookieName::new("__Host-s").unwrap()
    }

    #[test]
    fn index_sets_keep_only_what_is_below_a_limit() {
        let mut s = IndexSet::default();
        for i in [0, 3, 7, 8, 200, 255] {
            s.insert(i);
        }
        assert_eq!(s.below(8).iter().collect::<Vec<_>>(), vec![0, 3, 7]);
        assert!(s.below(0).is_empty());
        assert_eq!(s.below(255).iter().count(), 5);
    }

    proptest::proptest! {
        #[test]
        fn cookie_pairs_agree_with_the_cookie_crate(header in "[ a-c=;.\t\u{a0}é_-]{0,40}") {
            let ours: Vec<(&str, &str)> = cookie_pairs(&header).collect();
            let theirs: Vec<(String, String)> = Cookie::split_parse(header.as_str())
                .flatten()
                .map(|c| (c.name_raw().unwrap().to_owned(), c.value_raw().unwrap().to_owned()))
                .collect();
            let theirs: Vec<(&str, &str)> =
                theirs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn parses_chunks_from_several_headers_and_ignores_others() {
        let set = ChunkSet::from_headers(
            &name(),
            4,
            [
                "a=1; __Host-s.0=zero; __Host-s.x=no",
                "__Host-s.1=one; __Host-s=base; __Host-s.01=lead",
            ],
        );
        assert_eq!(set.get(0), Some("zero"));
        assert_eq!(set.get(1), Some("one"));
        assert_eq!(set.get(2), None);
        assert!(!set.has_duplicate());
        assert_eq!(set.seen().iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn duplicates_are_flagged_and_far_indices_only_seen() {
        let set =
            ChunkSet::from_headers(&name(), 4, ["__Host-s.0=a; __Host-s.0=b; __Host-s.200=c"]);
        assert!(set.has_duplicate());
        assert_eq!(set.get(200), None);
        assert!(set.seen().contains(200));
        let set = ChunkSet::from_headers(&name(), 4, ["__Host-s.256=c; __Host-s.-1=d"]);
        assert!(set.is_empty());
    }

    #[test]
    fn attributes_are_host_prefixed_secure_and_strict_or_lax() {
        let sealed = Sealed {
            chunks: vec!["v0".into(), "v1".into()],
            expires_at: 1_000,
        };
        let mut seen = IndexSet::default();
        for i in [0, 1, 2, 3] {
            seen.insert(i);
        }
        let cookies = set_cookies(&name(), Purpose::Session, &sealed, 400, seen);
        let text: Vec<String> = cookies.iter().map(ToString::to_string).collect();
        assert_eq!(
            text[0],
            "__Host-s.0=v0; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=600"
        );
        assert_eq!(text.len(), 4, "two chunks and two deletions: {text:?}");
        for t in &text[2..] {
            assert!(
                t.starts_with("__Host-s.2=;") || t.starts_with("__Host-s.3=;"),
                "{t}"
            );
            assert!(t.contains("Max-Age=0") && t.contains("SameSite=Strict"));
            assert!(t.contains("HttpOnly") && t.contains("Secure") && t.contains("Path=/"));
        }
        assert!(text.iter().all(|t| !t.contains("Domain")));
        let login = set_cookies(&name(), Purpose::Login, &sealed, 400, IndexSet::default());
        assert!(login[0].to_string().contains("SameSite=Lax"));
    }
}
