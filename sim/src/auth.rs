//! HS256 JWT verification (and minting, for tests and demo clients), written with `hmac` +
//! `sha2` so the simulator pulls in no TLS or JOSE stack.
//!
//! Rule, in order:
//! 1. no `Authorization` header, not `Bearer <token>`, not three base64url parts, header not
//!    `{"alg":"HS256"}`, payload not a JSON object → **401**;
//! 2. bad signature → **401**;
//! 3. `exp` present and `now >= exp` → **401** (`nbf`/`iat` are not checked);
//! 4. `aud` missing, or neither equal to (string) nor containing (array) the configured
//!    audience → **403**;
//! 5. (checked by the handlers) admin calls need `sub` = the validator operator user → **403**;
//!    wallet calls need `sub` to be an onboarded user → **404** otherwise.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused; [`AuthError::is_forbidden`] separates 403 from 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The token is not a well-formed HS256 JWT.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The signature does not match the configured secret.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// Signed correctly, but for another audience.
    #[error("token audience does not include {expected}")]
    WrongAudience {
        /// The audience this node expects.
        expected: String,
    },
    /// Signed correctly, but for a user who may not make this call.
    #[error("user '{0}' may not call this endpoint")]
    WrongSubject(String),
}

impl AuthError {
    /// True when the token was authentic but not allowed (HTTP 403 rather than 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            AuthError::WrongAudience { .. } | AuthError::WrongSubject(_)
        )
    }
}

/// The claims the simulator looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `sub`: the ledger API user.
    pub sub: Option<String>,
    /// The whole payload, for anything else.
    pub raw: Value,
}

/// Signs `claims` as an HS256 JWT. The real validator's no-auth token is
/// `mint_hs256(b"unsafe", &json!({"sub": "administrator", "aud": AUDIENCE}))`.
pub fn mint_hs256(secret: &[u8], claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(sign(secret, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

fn sign(secret: &[u8], input: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Checks tokens against one secret and audience.
#[derive(Clone, Debug)]
pub struct Verifier {
    secret: Vec<u8>,
    audience: String,
}

impl Verifier {
    /// A verifier for `secret` and `audience`.
    pub fn new(secret: Vec<u8>, audience: String) -> Self {
        Verifier { secret, audience }
    }

    /// Verifies an `Authorization` header value at unix time `now` (rules 1-4 above).
    pub fn verify_header(&self, header: Option<&str>, now: i64) -> Result<Claims, AuthError> {
        let header = header.ok_or(AuthError::Missing)?.trim();
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        self.verify(token, now)
    }

    /// Verifies a bare token at unix time `now` (rules 1-4 above).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected three dot-separated parts"));
        };
        let header: Value = decode_json(h).ok_or(AuthError::Malformed("header is not JSON"))?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(AuthError::Malformed("alg must be HS256"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .map_err(|_| AuthError::Malformed("unusable secret"))?;
        mac.update(format!("{h}.{p}").as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        let payload: Value = decode_json(p).ok_or(AuthError::Malformed("payload is not JSON"))?;
        if !payload.is_object() {
            return Err(AuthError::Malformed("payload is not a JSON object"));
        }
        if let Some(exp) = payload.get("exp") {
            let exp = exp
                .as_f64()
                .ok_or(AuthError::Malformed("exp is not a number"))?;
            if (now as f64) >= exp {
                return Err(AuthError::Expired);
            }
        }
        let audience_ok = match payload.get("aud") {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience {
                expected: self.audience.clone(),
            });
        }
        Ok(Claims {
            sub: payload
                .get("sub")
                .and_then(Value::as_str)
                .map(str::to_string),
            raw: payload,
        })
    }
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUD: &str = "https://validator.example.com";

    fn verifier() -> Verifier {
        Verifier::new(b"unsafe".to_vec(), AUD.to_string())
    }

    #[test]
    fn accepts_a_token_it_minted() {
        let t = mint_hs256(b"unsafe", &json!({"sub": "administrator", "aud": AUD}));
        let c = verifier().verify(&t, 0).unwrap();
        assert_eq!(c.sub.as_deref(), Some("administrator"));
    }

    #[test]
    fn audience_may_be_an_array() {
        let t = mint_hs256(b"unsafe", &json!({"sub": "a", "aud": ["x", AUD]}));
        assert!(verifier().verify(&t, 0).is_ok());
    }

    #[test]
    fn classifies_failures() {
        let v = verifier();
        assert_eq!(v.verify_header(None, 0), Err(AuthError::Missing));
        assert_eq!(
            v.verify_header(Some("Basic abc"), 0),
            Err(AuthError::Missing)
        );
        assert!(matches!(v.verify("a.b", 0), Err(AuthError::Malformed(_))));
        let other = mint_hs256(b"other", &json!({"aud": AUD}));
        assert_eq!(v.verify(&other, 0), Err(AuthError::BadSignature));
        let expired = mint_hs256(b"unsafe", &json!({"aud": AUD, "exp": 100}));
        assert_eq!(v.verify(&expired, 100), Err(AuthError::Expired));
        assert!(v.verify(&expired, 99).is_ok());
        let wrong = mint_hs256(b"unsafe", &json!({"aud": "https://other"}));
        let err = v.verify(&wrong, 0).unwrap_err();
        assert!(err.is_forbidden());
        let none = mint_hs256(b"unsafe", &json!({"sub": "x"}));
        assert!(v.verify(&none, 0).unwrap_err().is_forbidden());
    }
}
