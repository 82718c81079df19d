//! The HTML pages of the development IdP: one style, a "not for production" badge on each.

/// Label shown on every page this IdP renders.
const LABEL: &str = "sealgate development IdP \u{2014} not for production";

const PAGE_STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;\
font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f1f5f9;color:#0f172a}\
main{width:min(28rem,92vw);background:#fff;border-radius:12px;padding:2rem;\
box-shadow:0 10px 30px rgba(15,23,42,.12)}\
.badge{display:block;margin:0 0 1.25rem;padding:.5rem .75rem;border-radius:8px;\
background:#fef3c7;color:#92400e;font-weight:600;font-size:.85rem;text-align:center}\
h1{font-size:1.4rem;margin:0 0 .75rem}\
p{margin:.5rem 0;color:#334155}\
code{background:#f1f5f9;padding:.1rem .3rem;border-radius:4px;font-size:.85em;word-break:break-all}\
label{display:block;margin:1.25rem 0 .35rem;font-weight:600}\
input[type=text]{width:100%;padding:.65rem .75rem;font:inherit;border:1px solid #cbd5e1;border-radius:8px}\
input[type=text]:focus{outline:2px solid #6366f1;border-color:transparent}\
.actions{display:flex;gap:.75rem;margin-top:1.25rem}\
button{flex:1;padding:.65rem;font:inherit;font-weight:600;border:0;border-radius:8px;cursor:pointer;\
background:#4f46e5;color:#fff}\
button.secondary{background:#e2e8f0;color:#0f172a}\
.error{padding:.5rem .75rem;border-radius:8px;background:#fee2e2;color:#991b1b}\
.hint{font-size:.85rem;color:#64748b}";

/// A complete HTML page; `body` must already be escaped.
pub(crate) fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title} \u{2014} {LABEL}</title><style>{PAGE_STYLE}</style></head>\
<body><main><p class=\"badge\">{LABEL}</p>{body}</main></body></html>\n",
        title = escape_html(title),
    )
}

/// Escapes text for HTML element content and quoted attribute values (the same rules as
/// sealgate's own pages).
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_and_carry_the_label() {
        assert_eq!(
            escape_html(r#"<a href="x">'&"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        let page = html_page("<t>", "<p>body</p>");
        assert!(page.contains("&lt;t&gt;") && page.contains("not for production"));
    }
}
