use super::*;

fn segments(path: &str) -> Vec<String> {
    parse_path(path).unwrap().segments
}

#[test]
fn safe_paths_decode_per_segment() {
    assert_eq!(
        parse_path("/").unwrap(),
        RequestPath {
            segments: vec![],
            trailing_slash: false
        }
    );
    assert_eq!(segments("/assets/main.js"), ["assets", "main.js"]);
    assert_eq!(segments("/my%20file.txt"), ["my file.txt"]);
    assert_eq!(segments("/caf%C3%A9/x"), ["café", "x"]);
    assert_eq!(segments("/a%25b"), ["a%b"], "decoded once, never twice");
    assert_eq!(segments("/v1.2/x..y"), ["v1.2", "x..y"]);
    let p = parse_path("/orders/").unwrap();
    assert_eq!(p.segments, ["orders"]);
    assert!(p.trailing_slash);
}

#[test]
fn unsafe_paths_are_refused() {
    for bad in [
        "",
        "*",
        "assets/x",
        "/..",
        "/../secret.txt",
        "/a/../../secret.txt",
        "/./index.html",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/a%2fb",
        "/a%2F..%2Fb",
        "/a%5cb",
        "/a\\b",
        "/%252e%252e/x",
        "/a%252fb",
        "//etc/passwd",
        "/a//b",
        "/%00",
        "/a%0a",
        "/a%0d%0aSet-Cookie:x",
        "/a%09b",
        "/a%7f",
        "/%ff",
        "/a\u{7f}",
        "/a b",
    ] {
        assert_eq!(parse_path(bad), Err(PathError::Unsafe), "{bad:?}");
    }
}

#[test]
fn dotfiles_are_hidden() {
    for hidden in [
        "/.env",
        "/.git/config",
        "/assets/.DS_Store",
        "/.well-known/x",
        "/...",
        "/a/.htaccess",
    ] {
        assert_eq!(parse_path(hidden), Err(PathError::Hidden), "{hidden:?}");
    }
}

#[test]
fn extensions() {
    for yes in ["main.js", "a.b.c", "x..y"] {
        assert!(has_extension(yes), "{yes}");
    }
    for no in ["orders", "42", "readme.", ".env", ""] {
        assert!(!has_extension(no), "{no}");
    }
}

#[test]
fn hashed_names() {
    for hashed in [
        "main.3f2a9c1b.js",
        "main.3f2a9c1b.js.map",
        "main.3f2a9c1b.chunk.js",
        "2.3f2a9c1b.chunk.js",
        "runtime.0123456789abcdef.js",
        "main.a1b2c3d4e5f6a7b8c9d0.js",
        "logo.6ce24c58023cc2f8fd88fe9d219db6c6.svg",
        "index-BQx8a2kd.js",
        "index-D5Zw0TDs.css",
        "vendor-Cmc1Ql3K.js",
        "chunk-5ZQW3GHL.js",
        "polyfills-RX4V3J3S.js",
        "styles-5INURTSO.css",
        "lib-a_B3cdEf.js",
    ] {
        assert!(is_hashed(hashed), "{hashed}");
    }
    for plain in [
        "index.html",
        "favicon.ico",
        "robots.txt",
        "main.js",
        "manifest.webmanifest",
        "ngsw-worker.js",
        "service-worker.js",
        "jquery-3.7.1.min.js",
        "bootstrap.min.css",
        "vendor-datepicker.js",
        "logo-20240101.png",
        "icon-1024x1024.png",
        "app-company1.js",
        "index-bqx8a2kd.js",
        "IMG_1234.jpg",
        "3f2a9c1b.js",
        "main.3f2a9c1.js",
        "x.deadbeefcafe.js",
        "chunk-ABCDEFGH.css",
        "main.3f2a9c1b",
        ".3f2a9c1b.js",
        "",
    ] {
        assert!(!is_hashed(plain), "{plain}");
    }
}

#[test]
fn content_types() {
    assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
    assert_eq!(content_type("INDEX.HTM"), "text/html; charset=utf-8");
    assert_eq!(
        content_type("index-BQx8a2kd.js"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(content_type("a.css"), "text/css; charset=utf-8");
    assert_eq!(content_type("a.woff2"), "font/woff2");
    assert_eq!(content_type("a.svg"), "image/svg+xml");
    assert_eq!(content_type("a.wasm"), "application/wasm");
    for unknown in ["LICENSE", "a.exe", "a.", ".bashrc"] {
        assert_eq!(
            content_type(unknown),
            "application/octet-stream",
            "{unknown}"
        );
    }
    assert!(is_document("text/html; charset=utf-8"));
    assert!(is_document("image/svg+xml"));
    assert!(!is_document("text/javascript; charset=utf-8"));
}

#[test]
fn html_is_wanted_by_navigations() {
    let mut h = HeaderMap::new();
    assert!(!wants_html(&h));
    h.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    assert!(!wants_html(&h));
    h.append(
        http::header::ACCEPT,
        HeaderValue::from_static("TEXT/HTML,application/xhtml+xml"),
    );
    assert!(wants_html(&h));
    let mut h = HeaderMap::new();
    h.insert("sec-fetch-dest", HeaderValue::from_static("document"));
    assert!(wants_html(&h));
    h.insert("sec-fetch-dest", HeaderValue::from_static("script"));
    assert!(!wants_html(&h));
}

#[test]
fn if_none_match_compares_weakly() {
    let tag = "W/\"0011223344556677\"";
    assert!(etag_matches(tag, tag));
    assert!(etag_matches("\"0011223344556677\"", tag));
    assert!(etag_matches("\"other\", W/\"0011223344556677\"", tag));
    assert!(etag_matches("*", tag));
    assert!(!etag_matches("\"other\"", tag));
    assert!(!etag_matches("", tag));
}

/// A unique scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sealgate-static-unit-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn site(dir: &Path) -> StaticSettings {
    StaticSettings {
        root: std::fs::canonicalize(dir).unwrap(),
        index: "index.html".into(),
        csp: HeaderValue::from_static(crate::config::settings::DEFAULT_CSP),
    }
}

fn get(path: &str) -> Request<()> {
    Request::builder().uri(path).body(()).unwrap()
}

#[tokio::test]
async fn large_files_stream_in_chunks_with_their_length() {
    let scratch = Scratch::new("large");
    std::fs::write(scratch.0.join("index.html"), "<!doctype html>").unwrap();
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    std::fs::write(scratch.0.join("big.bin"), &data).unwrap();
    let site = site(&scratch.0);

    let r = serve(&site, &get("/big.bin")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_LENGTH], "300000");
    assert_eq!(r.headers()[CONTENT_TYPE], "application/octet-stream");
    let mut body = r.into_body();
    let mut got = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        let chunk = frame.unwrap().into_data().unwrap();
        assert!(chunk.len() <= CHUNK);
        got.extend_from_slice(&chunk);
        frames += 1;
    }
    assert!(frames >= 5, "{frames} frames");
    assert_eq!(got, data);
}

#[tokio::test]
async fn empty_files_and_vanished_index_pages() {
    let scratch = Scratch::new("empty");
    std::fs::write(scratch.0.join("index.html"), "").unwrap();
    let site = site(&scratch.0);
    let r = serve(&site, &get("/")).await.unwrap();
    assert_eq!(r.headers()[CONTENT_LENGTH], "0");
    assert!(r.into_body().collect().await.unwrap().to_bytes().is_empty());

    std::fs::remove_file(scratch.0.join("index.html")).unwrap();
    let f = serve(&site, &get("/")).await.unwrap_err();
    assert!(matches!(f.rejection, Rejection::NotFound), "{f:?}");
}
