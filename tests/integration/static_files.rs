//! SPA hosting (`[static] dir`) against the real server: the index, client-side route
//! fallback, caching, security headers, path safety, methods, and that the BFF, health and
//! proxy routes still win.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;

use crate::support::app::Harness;
use crate::support::browser::Resp;

const INDEX: &str = "<!doctype html><title>spa</title><p>INDEX-MARKER</p>";
const HASHED_JS: &str = "console.log('hashed asset');";
/// The content of a file next to the root, which no request may ever read.
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";
const DOTENV: &str = "DATABASE_PASSWORD=DOTFILE-SECRET";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; \
    form-action 'self'; frame-ancestors 'none'";

/// A scratch tree: `<base>/secret.txt` beside the served root `<base>/site/`. Removed on drop.
struct Site {
    base: PathBuf,
    root: PathBuf,
}

impl Site {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "sealgate-static-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("site");
        let write = |rel: &str, content: &[u8]| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        };
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(base.join("secret.txt"), SECRET).unwrap();
        write("index.html", INDEX.as_bytes());
        write("assets/main.3f2a9c1b.js", HASHED_JS.as_bytes());
        write("assets/index-BQx8a2kd.css", b"body{color:#222}");
        write("robots.txt", b"User-agent: *\n");
        write("logo.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
        write("download.bin", &[0u8, 1, 2, 3]);
        write(".env", DOTENV.as_bytes());
        write(".git/config", DOTENV.as_bytes());
        write("assets/.hidden.js", DOTENV.as_bytes());
        let big: Vec<u8> = (0..1_000_000u32)
            .map(|i| u8::try_from(i % 253).unwrap())
            .collect();
        write("media/big.bin", &big);
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(base.join("secret.txt"), root.join("leak.txt")).unwrap();
            symlink(base.join("secret.txt"), root.join("leak")).unwrap();
            symlink(&base, root.join("up")).unwrap();
            symlink(root.join(".env"), root.join("env.txt")).unwrap();
            symlink(root.join("assets/main.3f2a9c1b.js"), root.join("alias.js")).unwrap();
        }
        Site { base, root }
    }

    fn extra(&self) -> String {
        format!("static.dir = {:?}", self.root.display().to_string())
    }

    async fn start(&self) -> Harness {
        Harness::start_with(|_| {}, &self.extra()).await
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn url(path: &str) -> String {
    Harness::url(path)
}

/// Asserts the headers every HTML page sealgate serves from `[static]` carries.
fn assert_html_headers(r: &Resp) {
    assert_eq!(
        r.header("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    assert_eq!(r.header("cache-control").unwrap(), "no-cache");
    assert_eq!(r.header("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(r.header("content-security-policy").unwrap(), CSP);
    assert_eq!(r.header("x-frame-options").unwrap(), "DENY");
    assert_eq!(
        r.header("referrer-policy").unwrap(),
        "strict-origin-when-cross-origin"
    );
}

/// One raw HTTP/1.1 exchange (so no client normalizes the path first); the whole answer.
fn raw(addr: std::net::SocketAddr, target: &str) -> String {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: app.example.com\r\nAccept: text/html\r\n\
         Sec-Fetch-Dest: document\r\nConnection: close\r\n\r\n"
    );
    crate::support::raw::whole(addr, request.as_bytes())
}

#[tokio::test]
async fn index_is_served_at_the_root() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    let r = b.navigate(&url("/")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, INDEX);
    assert_html_headers(&r);
    assert_eq!(r.header("content-length").unwrap(), INDEX.len().to_string());
    assert!(r.header("vary").is_none(), "/ does not depend on Accept");
    // Not only for navigations: `/` is the index for any client.
    let r = b.get(&url("/"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, INDEX);
}

#[tokio::test]
async fn client_side_routes_fall_back_to_the_index_with_html_headers() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    for path in [
        "/orders/42",
        "/orders/42/",
        "/settings",
        "/assets",
        "/assets/",
    ] {
        let r = b.navigate(&url(path)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.body, INDEX, "{path}");
        assert_html_headers(&r);
        let vary = r.header("vary").unwrap();
        assert!(
            vary.contains("Accept") && vary.contains("Sec-Fetch-Dest"),
            "{vary}"
        );
    }
    // Either signal alone is enough.
    let r = b.get(&url("/orders/7"), &[("accept", "text/html")]).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, INDEX));
    let r = b
        .get(&url("/orders/7"), &[("sec-fetch-dest", "document")])
        .await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, INDEX));
    // A fetch that wants JSON gets a 404, not a page.
    let r = b
        .get(&url("/orders/7"), &[("accept", "application/json")])
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("content-type").unwrap(),
        "application/problem+json"
    );
    assert!(!r.body.contains("INDEX-MARKER"));
}

#[tokio::test]
async fn hashed_assets_are_immutable_with_their_content_type() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    let r = b.get(&url("/assets/main.3f2a9c1b.js"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, HASHED_JS);
    assert_eq!(
        r.header("content-type").unwrap(),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        r.header("cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.header("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(
        r.header("content-length").unwrap(),
        HASHED_JS.len().to_string()
    );
    assert!(
        r.header("content-security-policy").is_none(),
        "document headers are for documents"
    );

    let r = b.get(&url("/assets/index-BQx8a2kd.css"), &[]).await;
    assert_eq!(r.header("content-type").unwrap(), "text/css; charset=utf-8");
    assert_eq!(
        r.header("cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );

    // Names without a hash are revalidated; unknown types are never sniffed.
    let r = b.get(&url("/robots.txt"), &[]).await;
    assert_eq!(r.header("cache-control").unwrap(), "no-cache");
    assert_eq!(
        r.header("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    let r = b.get(&url("/download.bin"), &[]).await;
    assert_eq!(
        r.header("content-type").unwrap(),
        "application/octet-stream"
    );
    assert_eq!(r.header("x-content-type-options").unwrap(), "nosniff");
    // SVG can run script when opened directly: it gets the document headers.
    let r = b.get(&url("/logo.svg"), &[]).await;
    assert_eq!(r.header("content-type").unwrap(), "image/svg+xml");
    assert_eq!(r.header("content-security-policy").unwrap(), CSP);
    assert_eq!(r.header("cache-control").unwrap(), "no-cache");
}

#[tokio::test]
async fn large_files_stream_whole_with_their_length() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    let r = b.get(&url("/media/big.bin"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").unwrap(), "1000000");
    let expected = std::fs::read(site.root.join("media/big.bin")).unwrap();
    assert_eq!(r.body, String::from_utf8_lossy(&expected));
}

#[tokio::test]
async fn missing_files_with_an_extension_are_404_even_for_navigations() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    for path in [
        "/assets/missing.js",
        "/missing.css",
        "/robots.txt/",
        "/users/jane.doe",
    ] {
        let r = b.navigate(&url(path)).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert_eq!(
            r.header("content-type").unwrap(),
            "application/problem+json"
        );
        assert!(!r.body.contains("INDEX-MARKER"), "{path}");
    }
}

#[tokio::test]
async fn dotfiles_are_404() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    for path in [
        "/.env",
        "/.git/config",
        "/.git",
        "/assets/.hidden.js",
        "/.well-known/security.txt",
        "/env.txt",
    ] {
        let r = b.navigate(&url(path)).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(
            !r.body.contains("DOTFILE-SECRET") && !r.body.contains("INDEX-MARKER"),
            "{path}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn escaping_paths_never_reach_files_outside_the_root() {
    let site = Site::new();
    let h = site.start().await;
    let addr = h.running.addr;
    let targets = [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/assets%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "//secret.txt",
        "/assets//../../secret.txt",
        "/%00/../secret.txt",
        "/index.html%00.js",
        "/..%c0%afsecret.txt",
        "/%2e%2e",
        "/..",
    ];
    let answers = tokio::task::spawn_blocking(move || targets.map(|t| (t, raw(addr, t))))
        .await
        .unwrap();
    for (target, answer) in answers {
        let status = answer.get(9..12).unwrap_or("");
        assert!(status == "400" || status == "404", "{target:?} → {answer}");
        assert!(!answer.contains(SECRET), "{target:?} leaked: {answer}");
        assert!(!answer.contains("INDEX-MARKER"), "{target:?} → {answer}");
        assert!(
            !answer.contains(site.base.to_str().unwrap()),
            "{target:?} revealed a path: {answer}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_pointing_outside_the_root_are_404() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    // `leak` has no extension: a navigation would fall back, but a refused file never does.
    // (`/up/site/index.html` would be served: its canonical path is the root's own index.)
    for path in ["/leak.txt", "/leak", "/up/secret.txt"] {
        let r = b.navigate(&url(path)).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(!r.body.contains(SECRET), "{path} leaked");
        assert!(!r.body.contains(site.base.to_str().unwrap()));
    }
    // A symlink that stays inside the root is served, cached by its own (unhashed) name.
    let r = b.get(&url("/alias.js"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, HASHED_JS);
    assert_eq!(r.header("cache-control").unwrap(), "no-cache");
}

#[tokio::test]
async fn other_methods_are_405() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    for (method, path) in [
        (Method::POST, "/"),
        (Method::POST, "/orders/42"),
        (Method::PUT, "/assets/main.3f2a9c1b.js"),
        (Method::DELETE, "/index.html"),
        (Method::OPTIONS, "/"),
    ] {
        let r = b
            .request(method.clone(), &url(path), &[("accept", "text/html")], "x")
            .await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        assert_eq!(r.header("allow").unwrap(), "GET, HEAD");
        assert_eq!(
            r.header("content-type").unwrap(),
            "application/problem+json"
        );
        assert!(!r.body.contains("INDEX-MARKER"));
    }
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    let r = b
        .request(Method::HEAD, &url("/assets/main.3f2a9c1b.js"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("content-length").unwrap(),
        HASHED_JS.len().to_string()
    );
    assert_eq!(
        r.header("cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );
    let r = b
        .request(
            Method::HEAD,
            &url("/orders/42"),
            &[("accept", "text/html")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_html_headers(&r);
    assert_eq!(r.header("content-length").unwrap(), INDEX.len().to_string());
}

#[tokio::test]
async fn etags_revalidate_with_304() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    let r = b.get(&url("/"), &[]).await;
    let tag = r.header("etag").unwrap();
    assert!(tag.starts_with("W/\""), "{tag}");
    let r = b.get(&url("/"), &[("if-none-match", tag.as_str())]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag").unwrap(), tag);
    assert_eq!(r.header("cache-control").unwrap(), "no-cache");
    // The fallback is the same file: the same validator.
    let r = b
        .get(
            &url("/orders/42"),
            &[("accept", "text/html"), ("if-none-match", tag.as_str())],
        )
        .await;
    assert_eq!(r.status, 304);
    let r = b
        .get(&url("/"), &[("if-none-match", "W/\"something-else\"")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, INDEX);
    // Another file has another validator.
    let js = b.get(&url("/assets/main.3f2a9c1b.js"), &[]).await;
    assert_ne!(js.header("etag").unwrap(), tag);
}

#[tokio::test]
async fn bff_health_and_proxy_routes_still_win() {
    let site = Site::new();
    let h = site.start().await;
    let mut b = h.browser();
    let r = h.user(&mut b).await;
    assert_eq!(r.status, 401, "/bff/user is the BFF's: {}", r.body);
    assert_eq!(
        r.header("content-type").unwrap(),
        "application/problem+json"
    );
    let r = b.navigate(&url("/bff/nothing-here")).await;
    assert_eq!(r.status, 404, "the BFF prefix never falls back to the SPA");
    assert!(!r.body.contains("INDEX-MARKER"));
    let r = b.get(&url("/healthz"), &[]).await;
    assert_eq!(r.json()["status"], "ok");
    let r = b.get(&url("/kept/orders"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["path"], "/base/kept/orders", "proxied upstream");
    let r = b.navigate(&url("/api/orders")).await;
    assert_eq!(r.status, 403, "the proxy refused it, static did not answer");
    h.login(&mut b).await;
    assert_eq!(h.user(&mut b).await.status, 200);
    let r = b.get(&url("/api/orders/42"), &[("x-csrf", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["path"], "/orders/42");
    assert!(
        r.json()["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
}

#[tokio::test]
async fn without_static_unknown_paths_stay_404() {
    let h = Harness::start().await;
    let mut b = h.browser();
    for path in ["/", "/orders/42", "/index.html"] {
        let r = b.navigate(&url(path)).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.header("content-type").unwrap(),
            "application/problem+json"
        );
    }
}

/// The temp tree really has the shape the tests rely on (and is cleaned up).
#[test]
fn the_scratch_site_is_removed_on_drop() {
    let base: PathBuf;
    {
        let site = Site::new();
        base = site.base.clone();
        assert!(Path::new(&site.root).join("index.html").is_file());
        assert!(site.base.join("secret.txt").is_file());
    }
    assert!(!base.exists());
}
