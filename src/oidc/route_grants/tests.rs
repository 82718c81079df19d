use super::*;

fn ok(body: &str) -> Result<Granted, RouteGrantError> {
    parse_token_response(200, body.as_bytes(), false)
}

#[test]
fn a_bearer_token_response_is_read() {
    let g = ok(r#"{"access_token":"eyJ.a.b","token_type":"Bearer","expires_in":3599,"refresh_token":"rt-2"}"#)
        .unwrap();
    assert_eq!(g.access_token.expose(), "eyJ.a.b");
    assert_eq!(g.expires_in, Some(3599));
    assert_eq!(g.refresh_token.unwrap().expose().expose(), "rt-2");
    // Azure AD v1 and AD FS send expires_in as a string; token_type in any case.
    let g = ok(r#"{"access_token":"t","token_type":"bearer","expires_in":"3600"}"#).unwrap();
    assert_eq!(g.expires_in, Some(3600));
    assert!(g.refresh_token.is_none());
    let g = ok(r#"{"access_token":"t","token_type":"BEARER","expires_in":null}"#).unwrap();
    assert_eq!(g.expires_in, None);
    assert_eq!(g.token_type, TokenType::Bearer);
}

#[test]
fn a_dpop_token_response_is_read_as_bound() {
    let g = ok(r#"{"access_token":"t","token_type":"DPoP","expires_in":60}"#).unwrap();
    assert_eq!(g.token_type, TokenType::Dpop);
    let g = ok(r#"{"access_token":"t","token_type":"dpop"}"#).unwrap();
    assert_eq!(g.token_type, TokenType::Dpop);
}

#[test]
fn unusable_token_responses_are_failures() {
    let long = format!(
        r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
        "a".repeat(MAX_TOKEN_LEN + 1)
    );
    for body in [
        "not json",
        "[]",
        r#"{"token_type":"Bearer"}"#,
        r#"{"access_token":5,"token_type":"Bearer"}"#,
        r#"{"access_token":"","token_type":"Bearer"}"#,
        r#"{"access_token":"a b","token_type":"Bearer"}"#,
        r#"{"access_token":"a\nb","token_type":"Bearer"}"#,
        "{\"access_token\":\"caf\u{e9}\",\"token_type\":\"Bearer\"}",
        r#"{"access_token":"t"}"#,
        r#"{"access_token":"t","token_type":"N_A"}"#,
        r#"{"access_token":"t","token_type":"Bearer","expires_in":0}"#,
        r#"{"access_token":"t","token_type":"Bearer","expires_in":-5}"#,
        r#"{"access_token":"t","token_type":"Bearer","expires_in":1.5}"#,
        r#"{"access_token":"t","token_type":"Bearer","expires_in":"12s"}"#,
        r#"{"access_token":"t","token_type":"Bearer","expires_in":"99999999999"}"#,
        r#"{"access_token":"t","token_type":"Bearer","refresh_token":""}"#,
        r#"{"access_token":"t","token_type":"Bearer","refresh_token":7}"#,
        long.as_str(),
    ] {
        assert!(
            matches!(ok(body), Err(RouteGrantError::BadResponse(_))),
            "{body}"
        );
    }
}

#[test]
fn an_exchange_must_issue_an_access_token() {
    let with = |t: &str| {
        format!(r#"{{"access_token":"t","token_type":"Bearer","issued_token_type":"{t}"}}"#)
    };
    for good in [ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE] {
        assert!(parse_token_response(200, with(good).as_bytes(), true).is_ok());
    }
    let refresh = with("urn:ietf:params:oauth:token-type:refresh_token");
    assert!(matches!(
        parse_token_response(200, refresh.as_bytes(), true),
        Err(RouteGrantError::BadResponse(_))
    ));
    // Only an exchange reports a token type.
    assert!(parse_token_response(200, refresh.as_bytes(), false).is_ok());
    let none = r#"{"access_token":"t","token_type":"Bearer"}"#;
    assert!(parse_token_response(200, none.as_bytes(), true).is_ok());
}

#[test]
fn only_a_4xx_about_the_users_grant_is_a_refusal_and_anything_else_a_failure() {
    let e = parse_token_response(400, br#"{"error":"invalid_target"}"#, false).unwrap_err();
    assert_eq!(
        e,
        RouteGrantError::Refused {
            status: 400,
            error: "invalid_target".into()
        }
    );
    assert!(e.is_refusal());
    let e = parse_token_response(401, br#"{"error":"invalid_client\"<x>"}"#, false).unwrap_err();
    assert_eq!(
        e,
        RouteGrantError::Refused {
            status: 401,
            error: "invalid_clientx".into()
        }
    );
    assert!(
        !e.is_refusal(),
        "sealgate's client is refused: nothing the user can do"
    );
    let e = parse_token_response(400, b"<html>", false).unwrap_err();
    assert!(!e.is_refusal(), "{e}");
    for (status, body) in [
        (400, r#"{"error":"invalid_request"}"#),
        (400, r#"{"error":"unsupported_grant_type"}"#),
        (400, r#"{"error":"unauthorized_client"}"#),
        (404, r#"{"error":"invalid_grant"}"#),
        (429, r#"{"error":"invalid_grant"}"#),
    ] {
        let e = parse_token_response(status, body.as_bytes(), false).unwrap_err();
        assert!(!e.is_refusal(), "{status} {body}");
    }
    for error in ["invalid_grant", "invalid_scope", "consent_required"] {
        let body = format!(r#"{{"error":"{error}"}}"#);
        let e = parse_token_response(400, body.as_bytes(), false).unwrap_err();
        assert!(e.is_refusal(), "{error}");
    }
    for status in [500, 502, 503, 302, 201, 204] {
        let e = parse_token_response(status, br#"{"error":"temporarily_unavailable"}"#, false)
            .unwrap_err();
        assert_eq!(e, RouteGrantError::Status(status));
        assert!(!e.is_refusal());
    }
    for e in [
        RouteGrantError::Unreachable("x".into()),
        RouteGrantError::BadResponse("x"),
        RouteGrantError::NoRefreshToken,
    ] {
        assert!(!e.is_refusal(), "{e}");
    }
}

#[test]
fn debug_shows_no_token() {
    let g = ok(r#"{"access_token":"secret-at","token_type":"Bearer","refresh_token":"secret-rt"}"#)
        .unwrap();
    let shown = format!("{g:?}");
    assert!(!shown.contains("secret"), "{shown}");
}
