//! Bearer tokens for the admin and wallet calls, in the three `[node.validator.auth]` modes.
//!
//! * `token_file`: the file's first line, re-read on every call (an external refresher may
//!   rewrite it at any time).
//! * `self_signed`: an HS256 JWT `{sub, aud, iat, exp = iat + 1h}` minted per call with the
//!   secret from `secret_file` (re-read per call) or the public no-auth secret `unsafe`.
//! * `oauth2`: the client-credentials grant; the token is cached until shortly before it
//!   expires (30 s, or half its lifetime for short-lived tokens) and refreshed once when the
//!   validator answers 401.
//!
//! Tokens are wrapped in [`Token`], whose `Debug` is redacted; no error built here contains a
//! token or a secret.

use super::error::{chain, ValidatorError};
use crate::config::{OAuth2Auth, ValidatorAuth, REDACTED, UNSAFE_NO_AUTH_SECRET};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Lifetime of a self-signed token (`exp - iat`).
pub const SELF_SIGNED_LIFETIME: Duration = Duration::from_secs(3600);
/// An OAuth2 token is refreshed this long before it expires (at most half its lifetime).
pub const OAUTH2_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Assumed lifetime of an OAuth2 token whose answer has no `expires_in`.
pub const OAUTH2_DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Longest lifetime believed from an answer's `expires_in`: the token endpoint is outside
/// input, and `Instant + u64::MAX s` panics (found by tests/fuzz_parsers.rs). A longer-lived
/// token is simply fetched again after a day.
pub const OAUTH2_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A bearer token. `Debug` and `Display` never show it; [`Token::expose`] is for the
/// `Authorization` header only.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token text, to put in a header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn for_test(text: &str) -> Token {
        Token(text.to_string())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({REDACTED})")
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Signs `claims` as a compact HS256 JWT (`{"alg":"HS256","typ":"JWT"}` header).
pub fn mint_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The first line of a credential file, whitespace trimmed; empty or unreadable is an error
/// naming the config key (never the content).
async fn read_secret_file(key: &'static str, path: &Path) -> Result<String, ValidatorError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ValidatorError::Credentials {
            key,
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(ValidatorError::Credentials {
            key,
            path: path.to_path_buf(),
            problem: "the file is empty (its first line is the value)".into(),
        });
    }
    Ok(first.to_string())
}

#[derive(Debug)]
pub(crate) enum Secret {
    File(PathBuf),
    Unsafe,
}

pub(crate) struct Cached {
    token: Token,
    refresh_at: Instant,
}

/// The token source of one validator client.
pub(crate) enum Auth {
    TokenFile {
        path: PathBuf,
    },
    SelfSigned {
        secret: Secret,
        user: String,
        audience: String,
    },
    OAuth2 {
        cfg: OAuth2Auth,
        cache: Mutex<Option<Cached>>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::TokenFile { path } => f.debug_struct("TokenFile").field("path", path).finish(),
            Auth::SelfSigned {
                secret,
                user,
                audience,
            } => f
                .debug_struct("SelfSigned")
                .field(
                    "secret",
                    &match secret {
                        Secret::File(p) => format!("file {}", p.display()),
                        Secret::Unsafe => REDACTED.to_string(),
                    },
                )
                .field("user", user)
                .field("audience", audience)
                .finish(),
            Auth::OAuth2 { cfg, .. } => f.debug_struct("OAuth2").field("cfg", cfg).finish(),
        }
    }
}

impl Auth {
    pub(crate) fn from_config(cfg: &ValidatorAuth) -> Self {
        match cfg {
            ValidatorAuth::TokenFile(t) => Auth::TokenFile {
                path: t.token_file.clone(),
            },
            ValidatorAuth::SelfSigned(s) => Auth::SelfSigned {
                secret: match (&s.secret_file, s.secret.as_deref()) {
                    (Some(p), _) => Secret::File(p.clone()),
                    // The config check allows no other inline value.
                    (None, _) => Secret::Unsafe,
                },
                user: s.user.clone(),
                audience: s.audience.clone(),
            },
            ValidatorAuth::OAuth2(o) => Auth::OAuth2 {
                cfg: o.clone(),
                cache: Mutex::new(None),
            },
        }
    }

    /// The TOML name of the mode.
    pub(crate) fn mode(&self) -> &'static str {
        match self {
            Auth::TokenFile { .. } => "token_file",
            Auth::SelfSigned { .. } => "self_signed",
            Auth::OAuth2 { .. } => "oauth2",
        }
    }

    /// What to check after a 401: the keys holding the credential.
    pub(crate) fn unauthorized_check(&self) -> String {
        match self {
            Auth::TokenFile { path } => format!(
                "node.validator.auth.token_file ({}): the token is invalid or expired",
                path.display()
            ),
            Auth::SelfSigned { secret, .. } => match secret {
                Secret::File(p) => format!(
                    "node.validator.auth.secret_file ({}): it must hold the validator's HS256 \
                     secret",
                    p.display()
                ),
                Secret::Unsafe => "node.validator.auth.secret_file: the validator does not use \
                                   the no-auth secret \"unsafe\"; give its HS256 secret in \
                                   secret_file"
                    .to_string(),
            },
            Auth::OAuth2 { cfg, .. } => format!(
                "node.validator.auth.client_id (\"{}\") and client_secret_file ({}), and that \
                 token_url is the identity provider the validator trusts",
                cfg.client_id,
                cfg.client_secret_file.display()
            ),
        }
    }

    /// What to check after a 403: the token is authentic but for another audience or user.
    pub(crate) fn forbidden_check(&self) -> String {
        match self {
            Auth::TokenFile { .. } => "the token's audience (aud) and user (sub): the validator \
                                       wants its configured audience and the operator user"
                .to_string(),
            Auth::SelfSigned { user, audience, .. } => format!(
                "node.validator.auth.audience (\"{audience}\") against the validator's \
                 VALIDATOR_AUTH_AUDIENCE, and node.validator.auth.user (\"{user}\") against its \
                 operator user"
            ),
            Auth::OAuth2 { cfg, .. } => format!(
                "node.validator.auth.audience (\"{}\") against the validator's \
                 VALIDATOR_AUTH_AUDIENCE, and that the client's token subject (user) is the \
                 validator operator user",
                cfg.audience
            ),
        }
    }

    /// A token for the next request.
    pub(crate) async fn token(&self, http: &reqwest::Client) -> Result<Token, ValidatorError> {
        match self {
            Auth::TokenFile { path } => Ok(Token(read_secret_file("token_file", path).await?)),
            Auth::SelfSigned {
                secret,
                user,
                audience,
            } => {
                let secret = match secret {
                    Secret::File(p) => read_secret_file("secret_file", p).await?,
                    Secret::Unsafe => UNSAFE_NO_AUTH_SECRET.to_string(),
                };
                let iat = unix_now();
                let claims = serde_json::json!({
                    "sub": user,
                    "aud": audience,
                    "iat": iat,
                    "exp": iat + SELF_SIGNED_LIFETIME.as_secs(),
                });
                Ok(Token(mint_hs256(secret.as_bytes(), &claims)))
            }
            Auth::OAuth2 { cfg, cache } => {
                let mut cached = cache.lock().await;
                if let Some(c) = cached.as_ref() {
                    if Instant::now() < c.refresh_at {
                        return Ok(c.token.clone());
                    }
                }
                let fetched = fetch_oauth2(http, cfg).await?;
                let token = fetched.token.clone();
                *cached = Some(fetched);
                Ok(token)
            }
        }
    }

    /// Called after a 401 with the token that was refused: drops it from the cache and
    /// returns whether asking again can give a different token (OAuth2 only).
    pub(crate) async fn invalidate(&self, refused: &Token) -> bool {
        match self {
            Auth::OAuth2 { cache, .. } => {
                let mut cached = cache.lock().await;
                if cached.as_ref().is_some_and(|c| &c.token == refused) {
                    *cached = None;
                }
                true
            }
            _ => false,
        }
    }
}

/// `application/x-www-form-urlencoded` (and query) encoding of one component.
pub(crate) fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(serde::Deserialize)]
struct OAuthErrorAnswer {
    error: Option<String>,
    error_description: Option<String>,
}

async fn fetch_oauth2(http: &reqwest::Client, cfg: &OAuth2Auth) -> Result<Cached, ValidatorError> {
    let client_secret = read_secret_file("client_secret_file", &cfg.client_secret_file).await?;
    let mut fields = vec![
        ("grant_type", "client_credentials"),
        ("client_id", cfg.client_id.as_str()),
        ("client_secret", client_secret.as_str()),
        ("audience", cfg.audience.as_str()),
    ];
    if let Some(scope) = &cfg.scope {
        fields.push(("scope", scope.as_str()));
    }
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let problem = |p: String| ValidatorError::TokenEndpoint {
        token_url: cfg.token_url.clone(),
        problem: p,
    };
    let started = Instant::now();
    let resp = http
        .post(&cfg.token_url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| problem(format!("request failed: {}", chain(&e))))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| problem(format!("reading the answer failed: {}", chain(&e))))?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<OAuthErrorAnswer>(&bytes)
            .ok()
            .and_then(|a| match (a.error, a.error_description) {
                (Some(e), Some(d)) => Some(format!(" ({e}: {d})")),
                (Some(e), None) => Some(format!(" ({e})")),
                (None, Some(d)) => Some(format!(" ({d})")),
                (None, None) => None,
            })
            .unwrap_or_default()
            .replace(&client_secret, REDACTED);
        let check = if matches!(status.as_u16(), 400 | 401 | 403) {
            "; check node.validator.auth.client_id and client_secret_file (and audience, scope)"
        } else {
            ""
        };
        return Err(problem(format!("HTTP {}{detail}{check}", status.as_u16())));
    }
    let answer: TokenAnswer = serde_json::from_slice(&bytes)
        .map_err(|e| problem(format!("the answer is not a token response ({e})")))?;
    let token = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| problem("the answer has no access_token".into()))?;
    // Checked here, where the token endpoint can be named: otherwise the next validator call
    // fails as a transport "builder error" blaming the validator (found by
    // tests/fuzz_parsers.rs). The token itself is never shown.
    if reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err(problem(
            "the access_token holds characters an HTTP header cannot carry (control \
             characters)"
                .into(),
        ));
    }
    let lifetime = answer
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(OAUTH2_DEFAULT_LIFETIME)
        .min(OAUTH2_MAX_LIFETIME);
    let margin = OAUTH2_REFRESH_MARGIN.min(lifetime / 2);
    tracing::debug!(
        token_url = %cfg.token_url,
        lifetime_secs = lifetime.as_secs(),
        "fetched an OAuth2 token for the validator"
    );
    Ok(Cached {
        token: Token(token),
        refresh_at: started + lifetime - margin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SelfSignedAuth, TokenFileAuth};

    fn test_http() -> reqwest::Client {
        crate::tls::ensure_crypto_provider();
        reqwest::Client::new()
    }

    fn decode_claims(token: &str) -> serde_json::Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn mint_matches_a_known_vector() {
        // The header is the fixed one every HS256 minter sends; the signature verifies.
        let t = mint_hs256(b"unsafe", &serde_json::json!({"sub": "administrator"}));
        let parts: Vec<_> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        let mut mac = HmacSha256::new_from_slice(b"unsafe").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .expect("signature verifies");
    }

    #[tokio::test]
    async fn self_signed_claims_and_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s");
        std::fs::write(&secret, "topsecret\n").unwrap();
        let auth = Auth::from_config(&ValidatorAuth::SelfSigned(SelfSignedAuth {
            secret_file: Some(secret.clone()),
            secret: None,
            user: "administrator".into(),
            audience: "https://validator.example.com".into(),
        }));
        let http = test_http();
        let t = auth.token(&http).await.unwrap();
        let c = decode_claims(t.expose());
        assert_eq!(c["sub"], "administrator");
        assert_eq!(c["aud"], "https://validator.example.com");
        let iat = c["iat"].as_u64().unwrap();
        assert_eq!(c["exp"].as_u64().unwrap(), iat + 3600);
        assert!(iat.abs_diff(unix_now()) < 5);
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!(!format!("{auth:?}").contains("topsecret"));
        assert!(auth.unauthorized_check().contains("secret_file"));
        assert!(!auth.invalidate(&t).await);

        std::fs::write(&secret, "\n").unwrap();
        let e = auth.token(&http).await.unwrap_err();
        assert!(e.to_string().contains("secret_file"), "{e}");
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[tokio::test]
    async fn token_file_is_reread_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let auth = Auth::from_config(&ValidatorAuth::TokenFile(TokenFileAuth {
            token_file: path.clone(),
        }));
        let http = test_http();
        let e = auth.token(&http).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot use node.validator.auth.token_file"),
            "{e}"
        );
        std::fs::write(&path, "  first-token \nsecond line\n").unwrap();
        assert_eq!(auth.token(&http).await.unwrap().expose(), "first-token");
        std::fs::write(&path, "second-token").unwrap();
        assert_eq!(auth.token(&http).await.unwrap().expose(), "second-token");
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
        assert_eq!(
            form_encode("2026-01-01T00:00:00+01:00"),
            "2026-01-01T00%3A00%3A00%2B01%3A00"
        );
    }
}
