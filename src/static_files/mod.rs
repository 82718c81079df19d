//! SPA hosting (`[static] dir`): the single-page application's build output, served from the
//! same origin as the BFF and the proxied APIs. It is the *last* fallback of routing
//! ([`crate::routes::handle`]): BFF endpoints, `/healthz` and every proxy route win;
//! only a path none of them handles gets here. Without `[static]` such paths stay a 404
//! problem.
//!
//! Decisions:
//! - **Methods**: `GET` and `HEAD` only; anything else is 405 with `Allow: GET, HEAD`. `HEAD`
//!   answers with the headers of the `GET` (`Content-Length` included) and no body.
//! - **Path safety**, in this order, before the file system is touched: the raw path must pass
//!   [`crate::paths::safe_rest`] (no dot segments, no encoded or doubly encoded slash, backslash,
//!   dot or NUL, no control character, no `//`), else 400; then each segment is percent-decoded
//!   on its own and must be valid UTF-8 without control characters, slashes or backslashes, and
//!   one plain path component (no drive prefix), else 400; a segment starting with `.` (`.env`,
//!   `.git`, `.well-known`) is 404: dotfiles are never served. After resolving symlinks, the
//!   file must still be inside the canonical root and not under a hidden name there (a symlink
//!   pointing outside, or at a dotfile, is 404), and it must be a regular file (no FIFOs or
//!   devices). Only the canonical path is opened.
//! - **Client-side routes**: a path that is no file, whose last segment has no extension
//!   (`/orders/42`), requested by something that wants HTML (`Accept` containing `text/html`,
//!   or `Sec-Fetch-Dest: document`), gets the index page with 200 and `Vary: Accept,
//!   Sec-Fetch-Dest`. A missing file with an extension (`/assets/missing.js`), or a request
//!   that does not want HTML (`fetch` of a missing JSON), gets a plain 404: an HTML page where
//!   a script was expected only hides the bug. A client route whose last segment contains a
//!   dot (`/users/jane.doe`) therefore needs a link that does not end in one.
//! - **Directories**: `/` is the index page. Any other directory follows the client-route rule
//!   above (so `/assets/` in a browser shows the SPA, which renders its own not-found view);
//!   there is no per-directory index and never a listing. A trailing slash on a file
//!   (`/robots.txt/`) does not name the file.
//! - **Caching**: a file whose name carries a content hash ([`is_hashed`]) gets `Cache-Control:
//!   public, max-age=31536000, immutable`; everything else, and always the index page and HTML,
//!   `no-cache` (the browser revalidates each time, cheaply with the `ETag`). The `ETag` is weak
//!   (`W/"…"`): a hash of the file's length and modification time, so it reveals neither;
//!   `If-None-Match` with a match (or `*`) answers 304. No ranges.
//! - **Security headers**: every static response carries `X-Content-Type-Options: nosniff`.
//!   Documents (HTML, XHTML, SVG, XML: what a browser can render as a page) also get the CSP
//!   ([`crate::config::DEFAULT_CSP`] or `static.csp`), `X-Frame-Options: DENY` and
//!   `Referrer-Policy: strict-origin-when-cross-origin`. Not `no-referrer`: with it browsers send
//!   `Origin: null` on the page's own form POSTs, which sealgate's and the APIs' origin checks
//!   must then refuse; the chosen policy still never sends a path or query to another origin.
//! - **Content-Type** from a small extension table (`text/html; charset=utf-8` for HTML, UTF-8
//!   for the other text types); unknown extensions are `application/octet-stream`, which with
//!   `nosniff` a browser neither renders nor runs.
//! - **Bodies stream** from the open file in chunks of at most 64 KiB with a `Content-Length`
//!   taken from the open handle; nothing is read into memory whole.
//! - **Errors** are the usual short problem bodies: 400 for unsafe paths, 404 for anything not
//!   served (missing, hidden, outside the root, unreadable). File-system paths and I/O errors go
//!   to the log only. An index page that vanished after start-up is a 404 with an error log.
//!
//! The path rules, the hash heuristic and the content types are pure functions, unit-tested
//! here and fuzzed (`static_path`); the file system is touched only in [`serve`].

use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, Take};

use crate::config::StaticSettings;
use crate::error::{Failure, Rejection};
use crate::response::{self, Body, BoxError};

/// `Cache-Control` of files whose name carries a content hash.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of everything else: cache, but revalidate before each use.
pub(crate) const REVALIDATE: &str = "no-cache";
/// `Referrer-Policy` of documents (see the module docs for why not `no-referrer`).
pub(crate) const REFERRER: &str = "strict-origin-when-cross-origin";
/// Largest chunk read from a file at once.
const CHUNK: usize = 64 * 1024;

/// Why a request path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// Could escape the root or be read differently by another decoder (400).
    #[error("unsafe path")]
    Unsafe,
    /// Names a dotfile or dot-directory (404).
    #[error("hidden path")]
    Hidden,
}

/// A request path that is safe to join onto the root: decoded segments, each one plain file
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPath {
    /// Decoded segments; empty for `/`.
    pub segments: Vec<String>,
    /// Whether the path ended in `/` (then it cannot name a file).
    pub trailing_slash: bool,
}

/// Checks and decodes a request path. Pure; fuzzed.
///
/// # Errors
/// [`PathError::Unsafe`] for anything the proxy would refuse, undecodable segments and decoded
/// segments that are not one plain path component; [`PathError::Hidden`] for a segment that
/// starts with `.`.
pub(crate) fn parse_path(path: &str) -> Result<RequestPath, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::Unsafe)?;
    // The same refusals as the proxy, on the raw text, before anything is decoded.
    if !crate::paths::safe_rest(path) {
        return Err(PathError::Unsafe);
    }
    let trailing_slash = rest.ends_with('/');
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segments = Vec::new();
    if rest.is_empty() {
        return Ok(RequestPath {
            segments,
            trailing_slash: false,
        });
    }
    for raw in rest.split('/') {
        let segment = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| PathError::Unsafe)?;
        if segment.starts_with('.') {
            return Err(PathError::Hidden);
        }
        let mut components = Path::new(segment.as_ref()).components();
        let plain = matches!(components.next(), Some(Component::Normal(c)) if c == segment.as_ref())
            && components.next().is_none();
        if !plain
            || segment.is_empty()
            || segment.contains(['/', '\\'])
            || segment.chars().any(char::is_control)
        {
            return Err(PathError::Unsafe);
        }
        segments.push(segment.into_owned());
    }
    Ok(RequestPath {
        segments,
        trailing_slash,
    })
}

/// Whether a file name has an extension: a `.` that is neither first nor last.
pub(crate) fn has_extension(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && !ext.is_empty())
}

/// Whether a file name carries a content hash, so its content can never change under it.
///
/// The heuristic: the name has an extension, and a part of the rest, split at `.` and `-`
/// and other than the first part (the base name), is a digest as bundlers write them:
/// - hexadecimal, lower case, 8 to 64 characters, with at least one digit and one letter
///   (webpack's `[contenthash]`, Create React App, the Angular CLI's webpack builds:
///   `main.3f2a9c1b.js`, `runtime.0123456789abcdef.js`, `logo.6ce24c58….svg`); or
/// - exactly 8 characters of `[A-Za-z0-9_]` with at least one digit and one upper-case letter
///   (Vite/Rollup's base64 and esbuild's base32: `index-BQx8a2kd.js`, `chunk-5ZQW3GHL.js`).
///
/// It errs towards "not hashed", because a false "hashed" pins a changing file in browsers for
/// a year while a miss only costs a revalidation: a digest that happens to have no digit
/// (`chunk-ABCDEFGH.css`), to be all lower case in Vite's alphabet, to contain `-`, or to be
/// the whole name (`3f2a9c1b.js`) is not recognised. Dates (`logo-20240101.png`), sizes
/// (`icon-1024x1024.png`), versions (`jquery-3.7.1.min.js`) and camera names (`IMG_1234.jpg`)
/// are not hashes.
pub(crate) fn is_hashed(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && !stem.starts_with('.')
        && !ext.is_empty()
        && stem.split(['.', '-']).skip(1).any(|part| {
            let digit = part.bytes().any(|b| b.is_ascii_digit());
            let hex = (8..=64).contains(&part.len())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && part.bytes().any(|b| (b'a'..=b'f').contains(&b));
            let short = part.len() == 8
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && part.bytes().any(|b| b.is_ascii_uppercase());
            digit && (hex || short)
        })
}

/// The `Content-Type` for a file name, from its extension (case-insensitive).
pub(crate) fn content_type(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "xhtml" => "application/xhtml+xml; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Whether a browser may render this type as a page (then it gets the document headers).
fn is_document(content_type: &str) -> bool {
    [
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "application/xml",
    ]
    .iter()
    .any(|t| content_type.starts_with(t))
}

/// Whether the request wants an HTML page: `Accept` mentions `text/html` (case-insensitive,
/// q-values not weighed) or `Sec-Fetch-Dest` is `document`.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::ACCEPT).iter().any(|v| {
        v.as_bytes()
            .to_ascii_lowercase()
            .windows(9)
            .any(|w| w == b"text/html")
    }) || headers
        .get("sec-fetch-dest")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"document"))
}

/// The weak `ETag` of a file: a hash of its length and modification time (neither is revealed).
fn etag(meta: &std::fs::Metadata) -> Option<String> {
    let modified = meta.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    let mut h = Sha256::new();
    h.update(meta.len().to_be_bytes());
    h.update(since.as_secs().to_be_bytes());
    h.update(since.subsec_nanos().to_be_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Some(format!("W/\"{hex}\""))
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, RFC 9110 13.1.2).
pub(crate) fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || opaque(t) == ours)
}

/// What a request path resolved to on disk.
enum Found {
    /// A regular file inside the root, by its canonical path.
    File(PathBuf),
    /// A directory inside the root.
    Dir,
    /// Nothing there (or nothing readable).
    Missing,
    /// Something that must not be served; the reason is for the log.
    Refused(&'static str),
}

/// Resolves `segments` under `root` (canonical) and checks the result is still inside it.
async fn locate(root: &Path, segments: &[String]) -> Found {
    let mut candidate = root.to_path_buf();
    candidate.extend(segments);
    let canonical = match tokio::fs::canonicalize(&candidate).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(path = %candidate.display(), error = %e, "static: not found");
            return Found::Missing;
        }
    };
    let Ok(inside) = canonical.strip_prefix(root) else {
        tracing::warn!(
            path = %candidate.display(),
            target = %canonical.display(),
            "static: a symlink points outside the static directory; refused"
        );
        return Found::Refused("outside the static directory");
    };
    let hidden = inside
        .components()
        .any(|c| matches!(c, Component::Normal(n) if n.as_encoded_bytes().starts_with(b".")));
    if hidden {
        return Found::Refused("resolves to a hidden file");
    }
    match tokio::fs::metadata(&canonical).await {
        Ok(m) if m.is_file() => Found::File(canonical),
        Ok(m) if m.is_dir() => Found::Dir,
        Ok(_) => Found::Refused("not a regular file"),
        Err(e) => {
            tracing::debug!(path = %canonical.display(), error = %e, "static: not readable");
            Found::Missing
        }
    }
}

/// How a file is being served, which decides its caching.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The file the path names.
    Asset,
    /// The index page, at `/`.
    Index,
    /// The index page, for a client-side route.
    Fallback,
}

/// The parts of the request that decide the response, copied out so nothing borrows it.
struct Ask {
    head: bool,
    if_none_match: Option<String>,
}

/// Serves a request under `[static]`.
///
/// # Errors
/// A [`Failure`]: 405 for methods other than GET and HEAD, 400 for an unsafe path, 404 for
/// anything not served.
pub(crate) async fn serve<B>(
    site: &StaticSettings,
    req: &Request<B>,
) -> Result<Response<Body>, Failure> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            return Err(Failure::new(
                Rejection::MethodNotAllowed,
                format!("static: {}", req.method()),
            )
            .with_allow("GET, HEAD"));
        }
    };
    let raw = req.uri().path();
    let path = parse_path(raw).map_err(|e| match e {
        PathError::Unsafe => Failure::new(Rejection::BadRequest, format!("static: unsafe {raw}")),
        PathError::Hidden => Failure::new(Rejection::NotFound, format!("static: hidden {raw}")),
    })?;
    let html = wants_html(req.headers());
    let ask = Ask {
        head,
        if_none_match: req
            .headers()
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let raw = raw.to_owned();

    let Some(last) = path.segments.last() else {
        return index(site, Kind::Index, &ask).await;
    };
    match locate(&site.root, &path.segments).await {
        Found::File(file) if !path.trailing_slash => {
            serve_file(site, &file, last, Kind::Asset, &ask).await
        }
        Found::Refused(why) => Err(Failure::new(
            Rejection::NotFound,
            format!("static: {raw}: {why}"),
        )),
        Found::File(_) | Found::Dir | Found::Missing if html && !has_extension(last) => {
            index(site, Kind::Fallback, &ask).await
        }
        Found::File(_) | Found::Dir | Found::Missing => Err(Failure::new(
            Rejection::NotFound,
            format!("static: {raw}: no such file"),
        )),
    }
}

/// The index page, through the same containment checks as any file.
async fn index(site: &StaticSettings, kind: Kind, ask: &Ask) -> Result<Response<Body>, Failure> {
    match locate(&site.root, std::slice::from_ref(&site.index)).await {
        Found::File(file) => serve_file(site, &file, &site.index, kind, ask).await,
        _ => {
            tracing::error!(index = %site.index, "static: the index page is gone");
            Err(Failure::new(
                Rejection::NotFound,
                "static: index page missing",
            ))
        }
    }
}

async fn serve_file(
    site: &StaticSettings,
    file: &Path,
    name: &str,
    kind: Kind,
    ask: &Ask,
) -> Result<Response<Body>, Failure> {
    let not_found = |what: &str, e: io::Error| {
        tracing::warn!(path = %file.display(), error = %e, "static: cannot {what}");
        Failure::new(Rejection::NotFound, format!("static: cannot {what}"))
    };
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| not_found("open", e))?;
    let meta = f.metadata().await.map_err(|e| not_found("stat", e))?;
    if !meta.is_file() {
        return Err(Failure::new(
            Rejection::NotFound,
            "static: not a regular file",
        ));
    }
    let len = meta.len();
    let ctype = content_type(name);
    let document = is_document(ctype);
    let cache = if kind == Kind::Asset && !document && is_hashed(name) {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let tag = etag(&meta);
    let not_modified = match (&tag, &ask.if_none_match) {
        (Some(tag), Some(inm)) => etag_matches(inm, tag),
        _ => false,
    };

    let body = if not_modified || ask.head {
        response::full(Bytes::new())
    } else {
        FileBody::new(f, len).boxed()
    };
    let mut r = Response::new(body);
    if not_modified {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let h = r.headers_mut();
    if !not_modified {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(tag) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert(ETAG, tag);
    }
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if document {
        h.insert(CONTENT_SECURITY_POLICY, site.csp.clone());
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(REFERRER_POLICY, HeaderValue::from_static(REFERRER));
    }
    if kind == Kind::Fallback {
        h.insert(VARY, HeaderValue::from_static("Accept, Sec-Fetch-Dest"));
    }
    Ok(r)
}

/// A file's contents as a response body: at most `remaining` bytes, read in chunks. A file that
/// ends early (truncated while being served) fails the body, so the connection is closed
/// instead of promising bytes that never come.
struct FileBody {
    file: Take<tokio::fs::File>,
    remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64) -> Self {
        Self {
            file: file.take(len),
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.buf.capacity() < CHUNK {
            this.buf.reserve(CHUNK);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.file), cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Ok(0)) => Poll::Ready(Some(Err("static file shrank while served".into()))),
            Poll::Ready(Ok(n)) => {
                this.remaining = this.remaining.saturating_sub(n as u64);
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests;
