//! [`ValidatorClient`]: the validator admin API over reqwest + rustls (ring provider).
//!
//! One request path for every call: a token from [`Auth`] when the endpoint needs one,
//! retries with a doubling backoff on connection errors and HTTP 503 (never on another
//! status: a 4xx will not change by asking again), one token refresh on a 401 in `oauth2`
//! mode, and a per-request timeout that is *not* retried (the validator may still be
//! working on the call). Status codes are then turned into [`ValidatorError`]s per endpoint.

use super::auth::{form_encode, Auth, Token};
use super::error::{chain, scrub, ValidatorError};
use super::snapshot_file::{self, SnapshotHead};
use super::types::{
    parse_identities, ListUsersResponse, NodeIdentitiesDump, OnboardUserRequest,
    OnboardUserResponse, ValidatorUserInfo, WalletBalance,
};
use crate::config::ValidatorConfig;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// Longest wait between two attempts, whatever `retry_backoff` and the attempt number say.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Connection set-up limit (the request `timeout` still bounds the whole call).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The API prefix appended to the configured base URL.
pub const API_PREFIX: &str = "/api/validator";
/// Largest answer read into memory. Every answer but the data snapshot is small (the
/// identities dump is the largest, kilobytes to a few megabytes); a server sending more
/// is broken or hostile, and must not make the daemon run out of memory.
pub const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// A client of one node's validator admin API, built from its `[node.validator]` table.
/// Cheap to share (`&self` methods); the OAuth2 token cache is inside.
pub struct ValidatorClient {
    http: reqwest::Client,
    /// The configured base URL without a trailing `/` (shown in messages).
    url: String,
    timeout: Duration,
    /// The data snapshot's own limit: serving a whole ACS takes far longer than an API call.
    snapshot_timeout: Duration,
    retries: u32,
    backoff: Duration,
    auth: Auth,
}

/// How one request is sent: whether a 503 is tried again, and its time limit.
#[derive(Clone, Copy)]
struct Policy {
    retry_503: bool,
    limit: Duration,
}

impl fmt::Debug for ValidatorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatorClient")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("snapshot_timeout", &self.snapshot_timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("auth", &self.auth)
            .finish()
    }
}

/// One HTTP answer and the token sent with it (to scrub it from echoed text).
struct Answer {
    status: StatusCode,
    /// The body, unless it was streamed to a file (then empty).
    body: Vec<u8>,
    /// A 200 body written to the caller's file: its length and sha256.
    streamed: Option<(u64, String)>,
    token: Option<Token>,
}

impl Answer {
    /// The validator's `{"error": "…"}` text, or the start of the body; never the token.
    fn message(&self) -> String {
        error_text(&self.body, self.token.as_ref())
    }
}

fn error_text(body: &[u8], token: Option<&Token>) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => {
            let raw = String::from_utf8_lossy(body);
            let raw = raw.trim();
            if raw.is_empty() {
                "(empty body)".to_string()
            } else if raw.chars().count() > 300 {
                format!("{}…", raw.chars().take(300).collect::<String>())
            } else {
                raw.to_string()
            }
        }
    };
    scrub(&text, token.map(Token::expose))
}

/// Whether a request carries a bearer token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Authn {
    None,
    Bearer,
}

impl ValidatorClient {
    /// A client for the node's `[node.validator]` table. Reads no credential file yet: those
    /// are read when a call needs them, so a rotated file is picked up without a reload.
    pub fn from_config(cfg: &ValidatorConfig) -> Result<Self, ValidatorError> {
        let parsed = reqwest::Url::parse(&cfg.url)
            .map_err(|e| ValidatorError::Setup(format!("url \"{}\": {e}", cfg.url)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ValidatorError::Setup(format!(
                "url \"{}\" is not http(s)",
                cfg.url
            )));
        }
        crate::tls::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(cfg.timeout))
            .user_agent(concat!("splice-dr/", env!("CARGO_PKG_VERSION")));
        if let Some(host) = parsed.host_str().filter(|h| under_localhost(h)) {
            // RFC 6761: names under .localhost are the loopback, without /etc/hosts. The
            // compose bundle's nginx routes `wallet.localhost` to the validator by the Host
            // header, which reqwest sends from the URL. Port 0: the URL's port is used.
            builder = builder.resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        let http = builder
            .build()
            .map_err(|e| ValidatorError::Setup(chain(&e)))?;
        Ok(ValidatorClient {
            http,
            url: base_url(&cfg.url),
            timeout: cfg.timeout,
            snapshot_timeout: cfg.snapshot_timeout,
            retries: cfg.retries,
            backoff: cfg.retry_backoff,
            auth: Auth::from_config(&cfg.auth),
        })
    }

    /// The configured base URL (without `/api/validator`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The auth mode in use (`token_file`, `oauth2`, `self_signed`).
    pub fn auth_mode(&self) -> &'static str {
        self.auth.mode()
    }

    /// `GET readyz`: `true` on 200, `false` on 503 (not retried: it is the answer).
    /// Connection errors are retried, then reported as unreachable.
    pub async fn ready(&self) -> Result<bool, ValidatorError> {
        let a = self
            .call(Method::GET, "readyz", None, Authn::None, false)
            .await?;
        match a.status {
            StatusCode::OK => Ok(true),
            StatusCode::SERVICE_UNAVAILABLE => Ok(false),
            _ => Err(self.failure("readyz", &a)),
        }
    }

    /// `GET v0/validator-user` (no auth): the operator's party and user.
    pub async fn validator_user(&self) -> Result<ValidatorUserInfo, ValidatorError> {
        let path = "v0/validator-user";
        let a = self
            .call(Method::GET, path, None, Authn::None, true)
            .await?;
        self.json(path, a)
    }

    /// `GET v0/admin/participant/identities`, checked (`id`, non-empty `keys`,
    /// `authorizedStoreSnapshot`).
    pub async fn identities(&self) -> Result<NodeIdentitiesDump, ValidatorError> {
        self.identities_raw().await.map(|(_, d)| d)
    }

    /// Like [`ValidatorClient::identities`], with the exact bytes served, for storing them
    /// unchanged.
    pub async fn identities_raw(&self) -> Result<(Vec<u8>, NodeIdentitiesDump), ValidatorError> {
        let path = "v0/admin/participant/identities";
        let a = self
            .call(Method::GET, path, None, Authn::Bearer, true)
            .await?;
        match a.status {
            StatusCode::OK => match parse_identities(&a.body) {
                Ok(dump) => Ok((a.body, dump)),
                Err(problem) => Err(ValidatorError::InvalidIdentities {
                    url: self.endpoint_url(path),
                    problem,
                }),
            },
            StatusCode::NOT_FOUND => Err(ValidatorError::IdentitiesNotFound {
                url: self.endpoint_url(path),
            }),
            _ => Err(self.failure(path, &a)),
        }
    }

    /// `GET v0/admin/domain/data-snapshot?timestamp=T&migration_id=M&force=F`, the answer
    /// streamed as served into `path` (created new, mode 0600: it holds the node's keys and
    /// ledger), never held in memory: a real node's ACS runs to gigabytes. `migration_id`
    /// is always passed (the server's default is *its* id + 1), and both ids in the answer
    /// must be it. 400 "pruned" and 429 "not caught up" become
    /// [`ValidatorError::PrunedBeyond`] / [`ValidatorError::NotCaughtUp`]. The whole
    /// exchange is bounded by `snapshot_timeout`. On an error `path` may hold part of an
    /// answer: the caller removes it.
    pub async fn data_snapshot_to_file(
        &self,
        timestamp: &str,
        migration_id: u64,
        force: bool,
        path: &std::path::Path,
    ) -> Result<SnapshotFile, ValidatorError> {
        let api = "v0/admin/domain/data-snapshot";
        if chrono::DateTime::parse_from_rfc3339(timestamp).is_err() {
            return Err(ValidatorError::InvalidArgument(format!(
                "snapshot timestamp \"{timestamp}\" is not RFC 3339, e.g. 2026-01-01T00:00:00Z"
            )));
        }
        let query = format!(
            "timestamp={}&migration_id={migration_id}&force={force}",
            form_encode(timestamp)
        );
        let policy = Policy {
            retry_503: true,
            limit: self.snapshot_timeout,
        };
        let a = self
            .send(
                Method::GET,
                api,
                Some(query),
                None,
                Authn::Bearer,
                policy,
                Some(path),
            )
            .await?;
        match (a.status, &a.streamed) {
            (StatusCode::OK, Some((bytes, sha256))) => {
                let head = self.snapshot_head(api, path, migration_id).await?;
                Ok(SnapshotFile {
                    bytes: *bytes,
                    sha256: sha256.clone(),
                    head,
                })
            }
            (StatusCode::BAD_REQUEST, _) if looks_pruned(&a.message()) => {
                Err(ValidatorError::PrunedBeyond {
                    timestamp: timestamp.to_string(),
                    message: a.message(),
                })
            }
            (StatusCode::TOO_MANY_REQUESTS, _) => Err(ValidatorError::NotCaughtUp {
                timestamp: timestamp.to_string(),
                message: a.message(),
            }),
            _ => Err(self.failure(api, &a)),
        }
    }

    /// Reads and checks the small fields of the answer at `path` (off the async threads:
    /// it reads the whole file).
    async fn snapshot_head(
        &self,
        api: &str,
        path: &std::path::Path,
        migration_id: u64,
    ) -> Result<SnapshotHead, ValidatorError> {
        let invalid = |problem: String| ValidatorError::InvalidResponse {
            url: self.url.clone(),
            endpoint: endpoint(api),
            problem,
        };
        let file = path.to_path_buf();
        let head = tokio::task::spawn_blocking(move || snapshot_file::read_head(&file))
            .await
            .map_err(|e| invalid(format!("reading the answer: {e}")))?
            .map_err(|e| invalid(e.to_string()))?;
        for (what, got) in [
            ("migration_id", head.migration_id),
            (
                "data_snapshot.migration_id",
                head.data_snapshot.migration_id,
            ),
        ] {
            if u64::try_from(got).ok() != Some(migration_id) {
                return Err(invalid(format!(
                    "{what} is {got}, but {migration_id} was requested; the validator would \
                     refuse this dump"
                )));
            }
        }
        Ok(head)
    }

    /// `GET v0/admin/users`: the onboarded users.
    pub async fn users(&self) -> Result<Vec<String>, ValidatorError> {
        let path = "v0/admin/users";
        let a = self
            .call(Method::GET, path, None, Authn::Bearer, true)
            .await?;
        self.json::<ListUsersResponse>(path, a).map(|r| r.usernames)
    }

    /// `POST v0/admin/users {name, party_id?}`: onboards a user (re-onboarding after a
    /// restore passes the user's old party); returns the user's party id.
    pub async fn onboard_user(
        &self,
        name: &str,
        party_id: Option<&str>,
    ) -> Result<String, ValidatorError> {
        let path = "v0/admin/users";
        if name.trim().is_empty() {
            return Err(ValidatorError::InvalidArgument(
                "the user name to onboard is empty".into(),
            ));
        }
        let body = serde_json::to_vec(&OnboardUserRequest {
            name: name.to_string(),
            party_id: party_id.map(str::to_string),
        })
        .map_err(|e| ValidatorError::InvalidArgument(e.to_string()))?;
        let a = self
            .call_with_body(Method::POST, path, None, Some(body), Authn::Bearer)
            .await?;
        self.json::<OnboardUserResponse>(path, a)
            .map(|r| r.party_id)
    }

    /// `POST v0/admin/users/offboard?username=NAME`; a user the validator does not know is
    /// [`ValidatorError::UserNotFound`].
    pub async fn offboard_user(&self, name: &str) -> Result<(), ValidatorError> {
        let path = "v0/admin/users/offboard";
        let query = format!("username={}", form_encode(name));
        let a = self
            .call(Method::POST, path, Some(query), Authn::Bearer, true)
            .await?;
        match a.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(ValidatorError::UserNotFound {
                url: self.url.clone(),
                user: name.to_string(),
            }),
            _ => Err(self.failure(path, &a)),
        }
    }

    /// `GET v0/wallet/balance` of the token's user (the validator operator with the
    /// `self_signed` defaults).
    pub async fn balance(&self) -> Result<WalletBalance, ValidatorError> {
        let path = "v0/wallet/balance";
        let a = self
            .call(Method::GET, path, None, Authn::Bearer, true)
            .await?;
        self.json(path, a)
    }

    // ---- request path -------------------------------------------------------------------

    fn endpoint_url(&self, path: &str) -> String {
        format!("{}{API_PREFIX}/{path}", self.url)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: Option<String>,
        authn: Authn,
        retry_503: bool,
    ) -> Result<Answer, ValidatorError> {
        let policy = Policy {
            retry_503,
            limit: self.timeout,
        };
        self.send(method, path, query, None, authn, policy, None)
            .await
    }

    async fn call_with_body(
        &self,
        method: Method,
        path: &str,
        query: Option<String>,
        body: Option<Vec<u8>>,
        authn: Authn,
    ) -> Result<Answer, ValidatorError> {
        let policy = Policy {
            retry_503: true,
            limit: self.timeout,
        };
        self.send(method, path, query, body, authn, policy, None)
            .await
    }

    /// Wait before retry number `n` (1-based): `backoff * 2^(n-1)`, at most [`MAX_BACKOFF`].
    fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }

    /// Sends one call with its retries. A 200 body goes to `sink` when one is given
    /// (created new, mode 0600), every other body into memory (at most [`MAX_ANSWER_BYTES`]).
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: Option<String>,
        body: Option<Vec<u8>>,
        authn: Authn,
        policy: Policy,
        sink: Option<&std::path::Path>,
    ) -> Result<Answer, ValidatorError> {
        let mut url = self.endpoint_url(path);
        if let Some(q) = &query {
            url.push('?');
            url.push_str(q);
        }
        let attempts = self.retries + 1;
        let mut failures = 0u32;
        let mut refreshed = false;
        loop {
            let token = match authn {
                Authn::Bearer => Some(self.auth.token(&self.http).await?),
                Authn::None => None,
            };
            let mut req = self
                .http
                .request(method.clone(), &url)
                .timeout(policy.limit);
            if let Some(t) = &token {
                // reqwest marks the header sensitive (hidden from its own Debug output).
                req = req.bearer_auth(t.expose());
            }
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let secret = token.as_ref().map(Token::expose);
            let result = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let to = sink.filter(|_| status == StatusCode::OK);
                    read_body(resp, to).await.map(|(b, s)| (status, b, s))
                }
                Err(e) => Err(BodyError::Http(e)),
            };
            let outcome = match result {
                Ok(ok) => Ok(ok),
                Err(BodyError::Http(e)) => Err(e),
                Err(BodyError::Local(problem)) => {
                    return Err(ValidatorError::InvalidResponse {
                        url: self.url.clone(),
                        endpoint: endpoint(path),
                        problem,
                    })
                }
            };
            let (status, bytes, streamed) = match outcome {
                Ok(ok) => ok,
                Err(e) if e.is_connect() => {
                    failures += 1;
                    let reason = scrub(&connect_reason(&e), secret);
                    if failures >= attempts {
                        return Err(ValidatorError::Unreachable {
                            url: self.url.clone(),
                            attempts,
                            reason,
                        });
                    }
                    let wait = self.delay(failures);
                    tracing::warn!(
                        url = %self.url, endpoint = %endpoint(path), attempt = failures,
                        attempts, wait_ms = wait.as_millis() as u64, %reason,
                        "validator unreachable; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) if e.is_timeout() => {
                    return Err(ValidatorError::Timeout {
                        url: self.url.clone(),
                        endpoint: endpoint(path),
                        timeout: policy.limit,
                    })
                }
                Err(e) => {
                    return Err(ValidatorError::Transport {
                        url: self.url.clone(),
                        endpoint: endpoint(path),
                        reason: scrub(&chain(&e), secret),
                    })
                }
            };
            let answer = Answer {
                status,
                body: bytes,
                streamed,
                token,
            };
            if status == StatusCode::SERVICE_UNAVAILABLE && policy.retry_503 {
                failures += 1;
                if failures >= attempts {
                    return Err(ValidatorError::Unavailable {
                        url: self.url.clone(),
                        endpoint: endpoint(path),
                        attempts,
                        message: answer.message(),
                    });
                }
                let wait = self.delay(failures);
                tracing::warn!(
                    url = %self.url, endpoint = %endpoint(path), attempt = failures, attempts,
                    wait_ms = wait.as_millis() as u64, message = %answer.message(),
                    "validator answered 503; retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                if let Some(t) = &answer.token {
                    if self.auth.invalidate(t).await {
                        refreshed = true;
                        tracing::info!(
                            url = %self.url, endpoint = %endpoint(path),
                            "validator answered 401; fetching a fresh token once"
                        );
                        continue;
                    }
                }
            }
            return Ok(answer);
        }
    }

    /// The error for an answer the endpoint has no specific meaning for.
    fn failure(&self, path: &str, a: &Answer) -> ValidatorError {
        match a.status {
            StatusCode::UNAUTHORIZED => ValidatorError::Unauthorized {
                url: self.url.clone(),
                endpoint: endpoint(path),
                check: self.auth.unauthorized_check(),
            },
            StatusCode::FORBIDDEN => ValidatorError::Forbidden {
                url: self.url.clone(),
                endpoint: endpoint(path),
                message: a.message(),
                check: self.auth.forbidden_check(),
            },
            s => ValidatorError::Http {
                url: self.url.clone(),
                endpoint: endpoint(path),
                status: s.as_u16(),
                message: a.message(),
            },
        }
    }

    /// A 2xx answer parsed as `T`; anything else through [`ValidatorClient::failure`].
    fn json<T: DeserializeOwned>(&self, path: &str, a: Answer) -> Result<T, ValidatorError> {
        if !a.status.is_success() {
            return Err(self.failure(path, &a));
        }
        self.parse(path, &a.body)
    }

    fn parse<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, ValidatorError> {
        serde_json::from_slice(body).map_err(|e| ValidatorError::InvalidResponse {
            url: self.url.clone(),
            endpoint: endpoint(path),
            problem: format!("the body does not match the API ({e})"),
        })
    }
}

/// The base URL the API prefix is appended to: the configured URL without a trailing `/`,
/// and without `/api/validator` when it was given with it (the runbook's form).
fn base_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    url.strip_suffix(API_PREFIX).unwrap_or(url).to_string()
}

/// Whether `host` is a name under `.localhost` (`wallet.localhost`), which RFC 6761 reserves
/// for the loopback. `localhost` itself is left to the system's resolver.
fn under_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.strip_suffix(".localhost")
        .is_some_and(|label| !label.is_empty())
}

/// `/api/validator/PATH`, as messages name endpoints.
fn endpoint(path: &str) -> String {
    format!("{API_PREFIX}/{path}")
}

/// A data-snapshot answer written to disk by [`ValidatorClient::data_snapshot_to_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Length of the answer.
    pub bytes: u64,
    /// sha256 of the answer as served.
    pub sha256: String,
    /// Its checked small fields.
    pub head: SnapshotHead,
}

/// Why a body could not be read: the transport, or something on this side (the file,
/// the memory cap).
enum BodyError {
    Http(reqwest::Error),
    Local(String),
}

/// Reads a body chunk by chunk: into `sink` (created new, mode 0600) with its length and
/// sha256, or into memory up to [`MAX_ANSWER_BYTES`].
async fn read_body(
    mut resp: reqwest::Response,
    sink: Option<&std::path::Path>,
) -> Result<(Vec<u8>, Option<(u64, String)>), BodyError> {
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let Some(path) = sink else {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(BodyError::Http)? {
            if (body.len() + chunk.len()) as u64 > MAX_ANSWER_BYTES {
                return Err(BodyError::Local(format!(
                    "the answer is larger than {} MiB",
                    MAX_ANSWER_BYTES >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok((body, None));
    };
    let local = |e: std::io::Error| BodyError::Local(format!("writing {}: {e}", path.display()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(local)?;
    let (mut len, mut hash) = (0u64, sha2::Sha256::new());
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Http)? {
        hash.update(&chunk);
        len += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.sync_all().await.map_err(local)?;
    Ok((Vec::new(), Some((len, hex::encode(hash.finalize())))))
}

/// The innermost, most specific part of a connection error ("Connection refused (os error
/// 111)"), falling back to the whole chain.
fn connect_reason(e: &reqwest::Error) -> String {
    let mut last = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    last.unwrap_or_else(|| chain(e))
}

/// Whether a data-snapshot 400 says "pruned" (`UNAVAILABLE_ACS_SNAPSHOT`) rather than "bad
/// parameter": only the former may send an operator to the re-onboard flow.
fn looks_pruned(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unavailable_acs_snapshot") || m.contains("pruned")
}

/// A `[node.validator]` table for tests: self-signed tokens, 5 s limits, 10 ms backoff.
#[cfg(test)]
pub(crate) fn test_config(url: &str, retries: u32) -> ValidatorConfig {
    use crate::config::{SelfSignedAuth, ValidatorAuth};
    ValidatorConfig {
        url: url.into(),
        public_url: None,
        timeout: Duration::from_secs(5),
        snapshot_timeout: Duration::from_secs(5),
        retries,
        retry_backoff: Duration::from_millis(10),
        auth: ValidatorAuth::SelfSigned(SelfSignedAuth {
            secret_file: None,
            secret: Some("unsafe".into()),
            user: "administrator".into(),
            audience: "https://validator.example.com".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, retries: u32) -> ValidatorConfig {
        test_config(url, retries)
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = ValidatorClient::from_config(&cfg("http://127.0.0.1:1/", 3)).unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:1");
        assert_eq!(c.delay(1), Duration::from_millis(10));
        assert_eq!(c.delay(2), Duration::from_millis(20));
        assert_eq!(c.delay(4), Duration::from_millis(80));
        assert_eq!(c.delay(40), MAX_BACKOFF);
        assert!(format!("{c:?}").contains("<redacted>"));
    }

    #[test]
    fn the_runbook_url_and_localhost_names_are_understood() {
        for (url, base) in [
            (
                "http://wallet.localhost/api/validator",
                "http://wallet.localhost",
            ),
            (
                "http://wallet.localhost/api/validator/",
                "http://wallet.localhost",
            ),
            ("https://h/prefix/api/validator", "https://h/prefix"),
            ("http://127.0.0.1:5003/", "http://127.0.0.1:5003"),
        ] {
            assert_eq!(base_url(url), base, "{url}");
            let c = ValidatorClient::from_config(&cfg(url, 0)).unwrap();
            assert_eq!(c.url(), base);
            assert_eq!(
                c.endpoint_url("readyz"),
                format!("{base}/api/validator/readyz")
            );
        }
        assert!(under_localhost("wallet.localhost"));
        assert!(under_localhost("Wallet.LOCALHOST."));
        assert!(!under_localhost("localhost"));
        assert!(!under_localhost(".localhost"));
        assert!(!under_localhost("wallet.localhost.example.com"));
    }

    #[test]
    fn error_text_prefers_the_error_field_and_scrubs_the_token() {
        let t = Token::for_test("abc.def.ghi");
        assert_eq!(
            error_text(br#"{"error":"nope abc.def.ghi"}"#, Some(&t)),
            "nope <redacted>"
        );
        assert_eq!(error_text(b"", None), "(empty body)");
        assert_eq!(error_text(b"plain", None), "plain");
        assert!(error_text("x".repeat(1000).as_bytes(), None).len() < 400);
    }

    #[test]
    fn pruned_detection() {
        assert!(looks_pruned("UNAVAILABLE_ACS_SNAPSHOT(9,0): ..."));
        assert!(!looks_pruned("invalid timestamp 'x'"));
    }

    #[tokio::test]
    async fn refused_connections_are_retried_then_reported() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = ValidatorClient::from_config(&cfg(&format!("http://127.0.0.1:{port}"), 2)).unwrap();
        let started = std::time::Instant::now();
        let e = c.users().await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "validator at http://127.0.0.1:{port} is unreachable after 3 attempts"
            )),
            "{text}"
        );
        assert!(e.is_transient());
        // 10 ms + 20 ms of backoff.
        assert!(started.elapsed() >= Duration::from_millis(30));
        let never = std::path::Path::new("/nonexistent/answer.json");
        let e = c
            .data_snapshot_to_file("yesterday", 0, false, never)
            .await
            .unwrap_err();
        assert!(matches!(e, ValidatorError::InvalidArgument(_)), "{e}");
    }
}
