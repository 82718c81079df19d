//! `sealgate demo` end to end: the page, login through the development IdP's form, /bff/user,
//! the demo API reached through the proxy with the token (and without the cookie), logout.

use crate::support::app::{init_logs, urlencode};
use crate::support::browser::Browser;

fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in html.split("<input type=\"hidden\"").skip(1) {
        let attr = |name: &str| {
            let start = chunk.find(&format!("{name}=\""))? + name.len() + 2;
            let end = chunk[start..].find('"')? + start;
            Some(
                chunk[start..end]
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'"),
            )
        };
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            out.push((n, v));
        }
    }
    out
}

#[tokio::test]
async fn demo_login_user_api_and_logout() {
    init_logs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let demo = sealgate::demo::start(listener, any, any).await.unwrap();
    let public = demo.public.clone();
    let mut b = Browser::new();
    b.map_origin(&public, &format!("http://{}", demo.running.addr));

    let home = b.navigate(&format!("{public}/")).await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("not for production"),
        "the demo page is labelled"
    );

    // Login: sealgate → the development IdP's login page (a form asking for a name).
    let page = b.navigate(&format!("{public}/bff/login?returnUrl=/")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("not for production"));
    let mut form: Vec<String> = hidden_fields(&page.body)
        .into_iter()
        .map(|(k, v)| format!("{}={}", urlencode(&k), urlencode(&v)))
        .collect();
    form.push("name=Ada%20Lovelace".into());
    form.push("action=approve".into());
    let back = b
        .submit(
            &format!("{}/authorize", demo.idp.issuer()),
            &[],
            &form.join("&"),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(
        back.url,
        format!("{public}/"),
        "landed on the page after the callback"
    );
    assert!(b.cookie(&public, "__Host-sealgate.0").is_some());

    let user = b
        .get(&format!("{public}/bff/user"), &[("x-csrf", "1")])
        .await;
    assert_eq!(user.status, 200, "{}", user.body);
    let user = user.json();
    assert_eq!(user["claims"]["name"], "Ada Lovelace");

    // The API received the access token from sealgate, and never the browser's cookie.
    let api = b
        .get(&format!("{public}/api/whoami"), &[("x-csrf", "1")])
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    let api = api.json();
    assert_eq!(api["token_claims"]["sub"], user["sub"]);
    assert_eq!(api["cookie_header_received"], false);
    assert_eq!(
        api["path"], "/whoami",
        "the route prefix maps onto the upstream base URL"
    );

    // Logout through the link /bff/user gave, then the IdP's end-session back to the page.
    let out = b
        .navigate(&format!("{public}{}", user["logout_url"].as_str().unwrap()))
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(
        b.get(&format!("{public}/bff/user"), &[("x-csrf", "1")])
            .await
            .status,
        401
    );
    assert_eq!(
        b.get(&format!("{public}/api/whoami"), &[("x-csrf", "1")])
            .await
            .status,
        401
    );
    demo.running.shutdown().await;
}
