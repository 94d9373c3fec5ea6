//! [`ValidatorError`]: every way a call to the validator admin API fails, worded for the
//! operator who reads it in a run's journal — what happened and what to do next.
//!
//! No variant carries a token: messages come from status codes, the validator's own
//! `{"error": …}` text (scrubbed of the token that was sent, in case a server echoes it) and
//! file paths.

use std::path::PathBuf;
use std::time::Duration;

/// A failed call to the validator admin API (or to the OAuth2 token endpoint).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidatorError {
    /// Data snapshot: HTTP 400, the participant pruned past the timestamp (`UNAVAILABLE_ACS_SNAPSHOT`).
    #[error(
        "participant pruned beyond {timestamp}: a snapshot cannot be produced; use the \
         re-onboard flow (validator said: {message})"
    )]
    PrunedBeyond {
        /// The requested snapshot timestamp.
        timestamp: String,
        /// The validator's error text.
        message: String,
    },

    /// Data snapshot: HTTP 429, the participant has not caught up (`INVALID_ACS_SNAPSHOT_TIMESTAMP`).
    #[error(
        "participant has not caught up to {timestamp}; retry later (validator said: {message})"
    )]
    NotCaughtUp {
        /// The requested snapshot timestamp.
        timestamp: String,
        /// The validator's error text.
        message: String,
    },

    /// HTTP 401: the token was not accepted (signature, expiry, malformed, missing).
    #[error(
        "the validator at {url} rejected the credentials (HTTP 401 on {endpoint}): check {check}"
    )]
    Unauthorized {
        /// The configured base URL.
        url: String,
        /// The API path called.
        endpoint: String,
        /// Which config keys to check, e.g. `node.validator.auth.secret_file (mode self_signed)`.
        check: String,
    },

    /// HTTP 403: the token is authentic but for another audience or user.
    #[error(
        "the validator at {url} refused the call (HTTP 403 on {endpoint}: {message}): check \
         {check}"
    )]
    Forbidden {
        /// The configured base URL.
        url: String,
        /// The API path called.
        endpoint: String,
        /// The validator's error text.
        message: String,
        /// Which config keys to check (audience / user).
        check: String,
    },

    /// The identities endpoint answered 404: the known Splice failure that silently breaks
    /// identity backups.
    #[error(
        "the identities endpoint answered 404 — backups of identities are broken (a known Splice \
         failure); restart the validator app and check its logs, and treat this node's backups \
         as incomplete until {url} serves identities again"
    )]
    IdentitiesNotFound {
        /// The full identities URL.
        url: String,
    },

    /// The identities answer is not a usable `NodeIdentitiesDump`.
    #[error("the identities dump from {url} is not usable: {problem}; it was not stored")]
    InvalidIdentities {
        /// The full identities URL.
        url: String,
        /// Which field is wrong.
        problem: String,
    },

    /// No connection could be made (refused, DNS, TLS handshake, reset) on any attempt.
    #[error("validator at {url} is unreachable after {}: {reason}", count(*attempts))]
    Unreachable {
        /// The configured base URL.
        url: String,
        /// Attempts made (`retries + 1`).
        attempts: u32,
        /// The last connection error.
        reason: String,
    },

    /// HTTP 503 on every attempt.
    #[error(
        "validator at {url} answered 503 (unavailable) on {endpoint} to {}: {message}; it is \
         starting, overloaded or unhealthy — retry later",
        count(*attempts)
    )]
    Unavailable {
        /// The configured base URL.
        url: String,
        /// The API path called.
        endpoint: String,
        /// Attempts made (`retries + 1`).
        attempts: u32,
        /// The validator's last error text.
        message: String,
    },

    /// The request did not complete within `timeout` (not retried: the call may still be
    /// running on the validator).
    #[error(
        "validator at {url} did not answer {endpoint} within {}; raise \
         node.validator.timeout if the validator is just slow",
        humantime::format_duration(*timeout)
    )]
    Timeout {
        /// The configured base URL.
        url: String,
        /// The API path called.
        endpoint: String,
        /// The configured per-request timeout.
        timeout: Duration,
    },

    /// `offboard_user` (or a wallet call) named a user the validator does not know.
    #[error("user \"{user}\" is not onboarded on the validator at {url}")]
    UserNotFound {
        /// The configured base URL.
        url: String,
        /// The user name.
        user: String,
    },

    /// Any other non-success answer.
    #[error("the validator at {url} answered HTTP {status} on {endpoint}: {message}")]
    Http {
        /// The configured base URL.
        url: String,
        /// The API path called.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The validator's error text.
        message: String,
    },

    /// A 2xx answer whose body is not what the API promises.
    #[error("unexpected answer from the validator at {url} on {endpoint}: {problem}")]
    InvalidResponse {
        /// The configured base URL.
        url: String,
        /// The API path called.
        endpoint: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A credential file (`token_file`, `secret_file`, `client_secret_file`) is unusable.
    #[error("cannot use node.validator.auth.{key} {}: {problem}", path.display())]
    Credentials {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (unreadable, empty).
        problem: String,
    },

    /// The OAuth2 token endpoint did not hand out a token.
    #[error("the OAuth2 token endpoint {token_url} did not issue a token: {problem}")]
    TokenEndpoint {
        /// The configured `token_url`.
        token_url: String,
        /// What went wrong, with what to check.
        problem: String,
    },

    /// A caller passed an argument the API cannot take (checked before sending).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Any other transport failure (protocol error, body read failure).
    #[error("request to the validator at {url} ({endpoint}) failed: {reason}")]
    Transport {
        /// The configured base URL.
        url: String,
        /// The API path called.
        endpoint: String,
        /// The error chain.
        reason: String,
    },

    /// The HTTP client could not be built (TLS roots, bad URL).
    #[error("cannot set up the validator client: {0}")]
    Setup(String),
}

impl ValidatorError {
    /// Whether the same call may succeed later without anyone changing anything: the
    /// validator is down, busy, slow or not caught up. Pruning, credentials and broken
    /// answers need an operator (or another flow).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ValidatorError::NotCaughtUp { .. }
                | ValidatorError::Unreachable { .. }
                | ValidatorError::Unavailable { .. }
                | ValidatorError::Timeout { .. }
        )
    }
}

/// "1 attempt", "4 attempts".
fn count(attempts: u32) -> String {
    if attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{attempts} attempts")
    }
}

/// The error chain of `e` joined by `": "`, with `secret` (if any) replaced by a marker.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// `text` with every occurrence of `secret` replaced by `<redacted>` (a server might echo
/// the token it refused).
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, crate::config::REDACTED),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let nc = ValidatorError::NotCaughtUp {
            timestamp: "T".into(),
            message: "m".into(),
        };
        assert!(nc.is_transient());
        let pruned = ValidatorError::PrunedBeyond {
            timestamp: "T".into(),
            message: "m".into(),
        };
        assert!(!pruned.is_transient());
        assert!(pruned.to_string().contains("re-onboard"));
    }

    #[test]
    fn scrubbing() {
        assert_eq!(
            scrub("bad token abc.def", Some("abc.def")),
            "bad token <redacted>"
        );
        assert_eq!(scrub("x", Some("")), "x");
        assert_eq!(scrub("x", None), "x");
    }
}
