//! OAuth tokens, kept in their most compact lossless form.
//!
//! A token made of 2 to 5 dot-separated canonical base64url segments (a JWS has 3, a JWE 5) is
//! kept as the decoded segments; a single canonical base64url string as its decoded bytes;
//! anything else verbatim. "Canonical" means the strict decoder accepts it (no padding, zero
//! trailing bits), which is exactly when re-encoding gives back the same text, so
//! [`Token::expose`] restores the issued token byte for byte. Decoding saves a quarter of the
//! room a JWT takes in the cookie.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secret::{SecretBytes, SecretString};

/// Most segments a dotted token may have to be stored decoded (JWE compact has 5).
pub(crate) const MAX_SEGMENTS: usize = 5;

/// An access, refresh or ID token. `Debug` redacts; read it with [`Token::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub(crate) Form);

/// How a token is stored.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Form {
    /// Decoded segments of a dotted token (JWS, JWE).
    Dotted(Vec<SecretBytes>),
    /// Decoded bytes of a single base64url string.
    Base64(SecretBytes),
    /// The token as issued.
    Raw(SecretString),
}

impl Token {
    /// Stores `issued` in its compact form.
    pub fn from_issued(issued: &str) -> Self {
        if issued.contains('.') {
            let parts = issued.split('.');
            if parts.clone().count() <= MAX_SEGMENTS {
                let decoded: Option<Vec<SecretBytes>> = parts.map(decode_canonical).collect();
                if let Some(segments) = decoded {
                    return Self(Form::Dotted(segments));
                }
            }
        } else if let Some(bytes) = decode_canonical(issued) {
            return Self(Form::Base64(bytes));
        }
        Self(Form::Raw(SecretString::new(issued.to_owned())))
    }

    /// The token exactly as the IdP issued it.
    pub fn expose(&self) -> SecretString {
        let mut out = String::with_capacity(self.issued_len());
        match &self.0 {
            Form::Dotted(segments) => {
                for (i, s) in segments.iter().enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    URL_SAFE_NO_PAD.encode_string(s.expose(), &mut out);
                }
            }
            Form::Base64(bytes) => URL_SAFE_NO_PAD.encode_string(bytes.expose(), &mut out),
            Form::Raw(s) => out.push_str(s.expose()),
        }
        SecretString::new(out)
    }

    /// Length of the token as issued.
    pub fn issued_len(&self) -> usize {
        let b64 = |n: usize| (n * 4).div_ceil(3);
        match &self.0 {
            Form::Dotted(segments) => {
                segments.iter().map(|s| b64(s.len())).sum::<usize>() + segments.len() - 1
            }
            Form::Base64(bytes) => b64(bytes.len()),
            Form::Raw(s) => s.expose().len(),
        }
    }

    /// The decoded payload of a JWS (three segments): the claims JSON, unverified.
    pub fn jws_payload(&self) -> Option<&[u8]> {
        match &self.0 {
            Form::Dotted(segments) if segments.len() == 3 => Some(segments[1].expose()),
            _ => None,
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn decode_canonical(s: &str) -> Option<SecretBytes> {
    URL_SAFE_NO_PAD.decode(s).ok().map(SecretBytes::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_byte_exact_restoration() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        let cases = [
            (jwt, "dotted"),
            ("e30.e30.", "dotted"),          // empty signature (unsecured JWT)
            ("e30.AA.e30.AA.e30", "dotted"), // JWE shape
            ("e30.AA.e30.AA.e30.AA", "raw"), // too many segments
            ("abc=.def", "raw"),             // padding is not canonical
            ("AB.CD", "raw"),                // non-zero trailing bits
            ("dGhpcyBpcyBhIHJlZnJlc2ggdG9rZW4", "base64"),
            ("opaque-token_with~tilde", "raw"),
            ("", "base64"),
            ("A", "raw"),
        ];
        for (issued, form) in cases {
            let t = Token::from_issued(issued);
            let got = match &t.0 {
                Form::Dotted(_) => "dotted",
                Form::Base64(_) => "base64",
                Form::Raw(_) => "raw",
            };
            assert_eq!(got, form, "{issued}");
            assert_eq!(t.expose().expose(), issued);
            assert_eq!(t.issued_len(), issued.len(), "{issued}");
        }
        assert_eq!(
            Token::from_issued(jwt).jws_payload(),
            Some(&br#"{"sub":"a"}"#[..])
        );
    }

    #[test]
    fn debug_redacts() {
        let t = Token::from_issued("secret-access-token");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }
}
