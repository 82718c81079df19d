//! Request-path safety shared by the proxy and the static files (pure; fuzzed through both).

/// Whether `rest`, the part of a request path after a route's prefix (or a whole static path),
/// is safe to append to an upstream path or resolve under a directory: no dot segments, no
/// encoded or doubly encoded slash, backslash, dot or NUL, no empty segment, no control byte.
pub(crate) fn safe_rest(rest: &str) -> bool {
    let lower = rest.to_ascii_lowercase();
    // Control characters and spaces first: URL parsers silently drop tabs and newlines, which
    // would turn `\n..` into a dot segment (the http crate refuses them; this does not rely on it).
    !rest.bytes().any(|b| b <= b' ' || b == 0x7f)
        && !rest.contains('\\')
        && !rest.contains("//")
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !lower.contains("%2e")
        && !lower.contains("%00")
        // Double encodings of the above, which a second decoder upstream would undo.
        && !["%252e", "%252f", "%255c", "%2500"].iter().any(|d| lower.contains(d))
        && !rest.split('/').any(|seg| seg == "." || seg == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_rests_are_refused() {
        for ok in ["", "/", "/orders/1", "/a.b/c", "/x?y"] {
            assert!(safe_rest(ok), "{ok}");
        }
        for bad in [
            "/\n../x",
            "/\t..",
            "/a b",
            "/%252e%252e/x",
            "/a%252Fb",
            "/..",
            "/a/../b",
            "/%2e%2e/x",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "//x",
            "/./x",
            "/%00",
        ] {
            assert!(!safe_rest(bad), "{bad}");
        }
    }
}
