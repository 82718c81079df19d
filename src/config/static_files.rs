//! `[static]`: the SPA's build output, when sealgate serves it.
//!
//! `dir` must exist, be a directory other than `/`, and hold the index file (itself inside the
//! directory once symlinks are resolved). It is canonicalized once, so request handling compares
//! canonical paths without re-resolving the root. A relative `dir` is resolved against the
//! working directory.

use super::context::{Cx, span};
use super::files;
use super::problem::invalid;
use super::raw::RawStatic;
use super::settings::{DEFAULT_CSP, RouteSettings, StaticSettings};
use super::values;

/// `routes` are the routes that converted: one with prefix `/` would take every path.
pub(super) fn static_files(
    raw: RawStatic,
    routes: &[RouteSettings],
    cx: &mut Cx<'_>,
) -> Option<StaticSettings> {
    let index = raw
        .index
        .as_ref()
        .map_or("index.html", |i| i.get_ref().as_str());
    let index = if values::plain_file_name(index) {
        Some(index.to_owned())
    } else {
        let e = invalid(
            "static.index",
            format!("{index:?} must be a file name like \"index.html\" (no path, not hidden)"),
        );
        cx.refuse(span(raw.index.as_ref()), e)
    };
    let root = root(&raw, index.as_deref(), cx);
    let csp_text = raw
        .csp
        .as_ref()
        .map_or(DEFAULT_CSP, |c| c.get_ref().as_str());
    let csp = cx.ok(
        span(raw.csp.as_ref()),
        http::HeaderValue::from_str(csp_text.trim())
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid("static.csp", "must be a non-empty header value")),
    );
    if routes.iter().any(|r| r.prefix.is_empty()) {
        let e = invalid(
            "static.dir",
            "a [[routes]] entry with prefix \"/\" takes every path, so no static file would be served",
        );
        cx.push(e, Some(raw.dir.span()));
    }
    Some(StaticSettings {
        root: root?,
        index: index?,
        csp: csp?,
    })
}

/// The canonical directory, holding `index` when the index name is valid.
fn root(raw: &RawStatic, index: Option<&str>, cx: &mut Cx<'_>) -> Option<std::path::PathBuf> {
    let dir = raw.dir.get_ref();
    let at = Some(raw.dir.span());
    if dir.is_empty() {
        return cx.refuse(at, invalid("static.dir", "must not be empty"));
    }
    let root = match std::fs::canonicalize(dir) {
        Ok(root) => root,
        Err(e) => {
            return cx.refuse(
                at,
                invalid("static.dir", format!("cannot open {dir:?}: {e}")),
            );
        }
    };
    if !root.is_dir() {
        return cx.refuse(
            at,
            invalid("static.dir", format!("{dir:?} is not a directory")),
        );
    }
    if root.parent().is_none() {
        let e = invalid(
            "static.dir",
            "refusing to serve the root of the file system",
        );
        return cx.refuse(at, e);
    }
    let index = index?;
    let index_ok = std::fs::canonicalize(root.join(index))
        .is_ok_and(|p| p.starts_with(&root) && p != root && p.is_file());
    if !index_ok {
        let e = invalid("static.dir", format!("{dir:?} contains no file {index:?}"));
        return cx.refuse(at, e);
    }
    if cx.check_files {
        // `serve` lists nothing at start-up; a directory or index it cannot read fails every
        // request instead.
        let readable = files::readable_dir(&root)
            .and_then(|()| files::readable_file(&root.join(index)))
            .map_err(|e| invalid("static.dir", e));
        cx.ok(at, readable)?;
    }
    Some(root)
}
