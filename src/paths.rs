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
        && !rest.split('/').any(|seg| seg == "." || seg == ".." || reads_as_dot_segment(seg))
}

/// Whether a servlet container (Tomcat, Jetty, Spring) would read `segment` as a dot segment or
/// an empty one: it decodes the segment and drops its `;` parameters, so `..;x`, `.;`,
/// `..%3bx` and `;x` become `..`, `.` and an empty segment, which can escape a route's base path
/// upstream even though the URL itself has no dot segment.
fn reads_as_dot_segment(segment: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    match decoded.split_once(';') {
        Some((base, _)) => base.is_empty() || base == "." || base == "..",
        None => false,
    }
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

    /// Paths that Tomcat/Spring, Jetty, Express, ASP.NET Core or nginx would each resolve
    /// differently from a plain URL parser (which keeps `..;` as a name): sealgate refuses every
    /// one whose reading by any of them escapes the segment it is in, and keeps the rest.
    #[test]
    fn paths_other_servers_read_as_dot_segments_are_refused() {
        // (path after the route prefix, why it is refused)
        for (bad, why) in [
            ("/..;/x", "Tomcat/Spring/Jetty: `..;` is `..`"),
            ("/.;/x", "Tomcat/Spring/Jetty: `.;` is `.`"),
            ("/a/..;jsessionid=1/b", "path parameter on a dot segment"),
            ("/..;a=b;c=d/x", "several parameters"),
            (
                "/..%3b/x",
                "encoded `;`: Tomcat decodes before dropping parameters",
            ),
            ("/..%3B/x", "encoded `;`, upper case"),
            (
                "/;/x",
                "empty segment with a parameter: `//` to a servlet container",
            ),
            ("/;jsessionid=1/x", "empty segment with a parameter"),
            ("/.%2e/x", "half-encoded dot (every reader decodes it)"),
            ("/%2e/x", "encoded `.`: Express and ASP.NET Core decode it"),
            ("/..\\x", "backslash: ASP.NET Core and IIS read it as `/`"),
            (
                "/a/%2e%2e%2fb",
                "encoded slash: nginx with merge_slashes off, ASP.NET Core",
            ),
        ] {
            assert!(!safe_rest(bad), "{bad} ({why})");
        }
        // Names that merely contain dots or parameters stay usable.
        for ok in [
            "/a;v=1/b", "/...;x/b", "/a.b;c/d", "/x;", "/..a/b", "/a..;/b",
        ] {
            assert!(safe_rest(ok), "{ok}");
        }
    }
}
