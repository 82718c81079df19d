//! `[[providers]]`: several identity providers, each `[oidc]`'s keys plus a name.

use std::path::Path;

use super::super::check::check_text;
use super::super::{Place, Settings, TokenEndpointAuth};
use super::{EXAMPLE, env};

/// EXAMPLE with its `[oidc]` table replaced by `providers`.
fn with_providers(providers: &str) -> String {
    let start = EXAMPLE.find("[oidc]").unwrap();
    let end = EXAMPLE.find("[session]").unwrap();
    format!("{}{providers}\n{}", &EXAMPLE[..start], &EXAMPLE[end..])
}

const TWO: &str = r#"[[providers]]
name = "work"
issuer = "https://login.example.com/tenant/v2.0"
client_id = "bff-work"
client_secret = "env:SEALGATE_CLIENT_SECRET"
[[providers]]
name = "customers"
issuer = "https://customers.example.com/"
client_id = "bff-customers"
client_secret = "env:SEALGATE_CLIENT_SECRET"
scopes = ["openid", "offline_access"]
"#;

#[test]
fn several_providers_each_get_their_own_callback() {
    let s = Settings::from_toml(&with_providers(TWO), &env).unwrap();
    let names: Vec<_> = s.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["work", "customers"]);
    assert!(s.providers.iter().all(|p| p.listed));
    assert_eq!(s.oidc().name, "work", "the first is the default");
    assert_eq!(
        s.redirect_uri(&s.providers[0]),
        "https://app.example.com/bff/callback/work"
    );
    assert_eq!(
        s.redirect_uri(&s.providers[1]),
        "https://app.example.com/bff/callback/customers"
    );
    assert_eq!(s.providers[1].scopes, ["openid", "offline_access"]);
    assert!(matches!(
        &s.providers[1].token_endpoint_auth,
        TokenEndpointAuth::Basic(secret) if secret.expose() == "s3cret"
    ));
}

#[test]
fn a_lone_oidc_table_is_one_provider_at_the_plain_callback() {
    let s = Settings::from_toml(EXAMPLE, &env).unwrap();
    assert_eq!(s.providers.len(), 1);
    assert!(!s.oidc().listed);
    assert_eq!(s.oidc().name, "default");
    assert_eq!(
        s.redirect_uri(s.oidc()),
        "https://app.example.com/bff/callback"
    );
    let named = EXAMPLE.replace("[oidc]\n", "[oidc]\nname = \"corp\"\n");
    let s = Settings::from_toml(&named, &env).unwrap();
    assert_eq!(s.oidc().name, "corp");
    assert_eq!(
        s.redirect_uri(s.oidc()),
        "https://app.example.com/bff/callback",
        "a name does not move the lone provider's callback"
    );
}

#[test]
fn oidc_and_providers_together_or_neither_are_refused() {
    let both = format!("{EXAMPLE}\n{TWO}");
    let err = Settings::from_toml(&both, &env).unwrap_err().to_string();
    assert!(
        err.contains("[oidc]") && err.contains("[[providers]]"),
        "{err}"
    );
    let neither = with_providers("");
    let err = Settings::from_toml(&neither, &env).unwrap_err().to_string();
    assert!(err.contains("oidc"), "{err}");
}

#[test]
fn each_problem_names_its_provider_entry_and_line() {
    let text = with_providers(
        &TWO.replace("client_id = \"bff-customers\"", "client_id = \"\"")
            .replace(
                "issuer = \"https://customers.example.com/\"",
                "issuer = \"http://customers.example.com/\"",
            )
            .replace("name = \"work\"\n", ""),
    );
    let report = check_text(Path::new("sealgate.toml"), &text, &env, &[]);
    let find = |key: &str| {
        report
            .errors
            .iter()
            .find(|p| p.error.to_string().contains(key))
            .unwrap_or_else(|| panic!("{key}: {:#?}", report.errors))
    };
    let line =
        |start: &str| Place::Line(text.lines().position(|l| l.starts_with(start)).unwrap() + 1);
    assert!(
        find("providers[0].name")
            .error
            .to_string()
            .contains("required")
    );
    assert_eq!(
        find("providers[1].client_id").place,
        line("client_id = \"\"")
    );
    assert_eq!(
        find("providers[1].issuer").place,
        line("issuer = \"http://customers")
    );
    assert!(
        !report
            .errors
            .iter()
            .any(|p| p.error.to_string().contains("oidc.")),
        "no problem is named after [oidc]: {:#?}",
        report.errors
    );
}

#[test]
fn names_are_checked_and_unique_and_so_are_issuer_client_pairs() {
    for bad in ["", "a/b", "..", "with space", &"x".repeat(33)] {
        let text = with_providers(&TWO.replace("\"work\"", &format!("{bad:?}")));
        let err = Settings::from_toml(&text, &env).unwrap_err().to_string();
        assert!(err.contains("providers[0].name"), "{bad:?}: {err}");
    }
    let text = with_providers(&TWO.replace("\"customers\"", "\"work\""));
    let err = Settings::from_toml(&text, &env).unwrap_err().to_string();
    assert!(
        err.contains("providers[1].name") && err.contains("twice"),
        "{err}"
    );
    let text = with_providers(
        &TWO.replace(
            "https://customers.example.com/",
            "https://login.example.com/tenant/v2.0",
        )
        .replace("bff-customers", "bff-work"),
    );
    let err = Settings::from_toml(&text, &env).unwrap_err().to_string();
    assert!(err.contains("providers[1].client_id"), "{err}");
    // The same issuer with another client is fine (two registrations at one IdP).
    let text = with_providers(&TWO.replace(
        "https://customers.example.com/",
        "https://login.example.com/tenant/v2.0",
    ));
    assert!(Settings::from_toml(&text, &env).is_ok());
}

#[test]
fn an_inline_provider_secret_is_refused_without_echoing_it() {
    let text = with_providers(&TWO.replacen(
        "client_secret = \"env:SEALGATE_CLIENT_SECRET\"\nscopes",
        "client_secret = 12345\nscopes",
        1,
    ));
    let err = Settings::from_toml(&text, &env).unwrap_err().to_string();
    assert!(err.contains("providers[1].client_secret"), "{err}");
    assert!(!err.contains("12345"), "{err}");
    let text = with_providers(&TWO.replacen(
        "client_secret = \"env:SEALGATE_CLIENT_SECRET\"\nscopes",
        "client_secret = \"hunter2\"\nscopes",
        1,
    ));
    let err = Settings::from_toml(&text, &env).unwrap_err().to_string();
    assert!(err.contains("providers[1].client_secret"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn environment_overrides_reach_a_provider_entry() {
    let s = Settings::from_toml_with_overrides(
        &with_providers(TWO),
        &env,
        &[(
            "SEALGATE__PROVIDERS__1__CLIENT_ID".to_owned(),
            "from-env".to_owned(),
        )],
    )
    .unwrap();
    assert_eq!(s.providers[1].client_id, "from-env");
}
