//! PKCE with S256 (RFC 7636), as an authorization server checks it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
pub fn is_valid_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge is the unpadded base64url of a SHA-256 digest: exactly 43 characters.
pub fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// `BASE64URL(SHA256(verifier))`, the S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.6: `verifier` is well-formed and `BASE64URL(SHA256(verifier)) == challenge`,
/// compared in constant time.
pub fn s256_matches(verifier: &str, challenge: &str) -> bool {
    if !is_valid_code_verifier(verifier) {
        return false;
    }
    s256_challenge(verifier)
        .as_bytes()
        .ct_eq(challenge.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example_only() {
        assert_eq!(s256_challenge(VERIFIER), CHALLENGE);
        assert!(s256_matches(VERIFIER, CHALLENGE));
        let mut wrong = VERIFIER.to_owned();
        wrong.replace_range(0..1, "e");
        assert!(!s256_matches(&wrong, CHALLENGE));
        // A "plain" verifier equal to the challenge is not accepted.
        assert!(!s256_matches(CHALLENGE, CHALLENGE));
        // Too short / invalid characters.
        assert!(!s256_matches("short", CHALLENGE));
        assert!(!is_valid_code_verifier(&"a".repeat(129)));
        assert!(!is_valid_code_verifier(&format!("{}+", "a".repeat(50))));
        assert!(is_valid_s256_challenge(CHALLENGE));
        assert!(!is_valid_s256_challenge("abc"));
    }
}
