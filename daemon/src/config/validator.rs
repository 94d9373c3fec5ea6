//! The `[node.validator]` table: how splice-dr reaches a node's validator admin API
//! (`/api/validator`) and which credentials it presents there.
//!
//! The admin API is where identities dumps and data snapshots come from, so a wrong URL or a
//! wrong credential must be found by `splice-dr check`, not on the day of a restore. Secrets
//! live in files (`token_file`, `secret_file`, `client_secret_file`), which are re-read when
//! used; the only secret that may be written inline is the compose bundle's well-known
//! no-auth secret `"unsafe"`. `Debug` never prints a secret.

use super::load::{ConfigError, KeyPath, Locator};
use super::schema::REDACTED;
use serde::Deserialize;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Default `timeout`: per request (a data snapshot of a big participant takes a while).
pub const DEFAULT_VALIDATOR_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `snapshot_timeout`: the data snapshot serves the participant's whole ACS.
pub const DEFAULT_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default `retries`: extra attempts after a connection error or an HTTP 503.
pub const DEFAULT_VALIDATOR_RETRIES: u32 = 3;
/// Default `retry_backoff`: the first wait between attempts; doubled after each attempt.
pub const DEFAULT_VALIDATOR_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Upper bound on `retries`: beyond it the doubling backoff makes a call hang for hours.
pub const MAX_VALIDATOR_RETRIES: u32 = 10;
/// The validator's default JWT audience (compose `VALIDATOR_AUTH_AUDIENCE`).
pub const DEFAULT_VALIDATOR_AUDIENCE: &str = "https://validator.example.com";
/// The validator operator's default ledger API user (the admin token's `sub`).
pub const DEFAULT_VALIDATOR_USER: &str = "administrator";
/// The compose bundle's no-auth HS256 secret: public, hence the only inline secret allowed.
pub const UNSAFE_NO_AUTH_SECRET: &str = "unsafe";

/// The `[node.validator]` table: the validator app's admin API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Base URL of the validator app, e.g. `http://wallet.localhost`; the client appends
    /// `/api/validator` unless the URL already ends with it.
    pub url: String,
    /// The same base URL as other hosts reach it (e.g. `http://validator-a.example:5003`),
    /// recorded in every backup as the old node's address: a restore or re-onboard on
    /// another host refuses while anything answers there. Default: `url`, unless its host
    /// is loopback, a single label or a k8s Service name (which from another host or
    /// cluster would name that one's own node).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Limit for one request, body included.
    #[serde(with = "super::duration", default = "default_timeout")]
    pub timeout: Duration,
    /// Limit for the data snapshot request of a network DR, body included: it serves the
    /// participant's whole active contract set, which takes far longer than an API call.
    #[serde(with = "super::duration", default = "default_snapshot_timeout")]
    pub snapshot_timeout: Duration,
    /// Extra attempts after a connection error or an HTTP 503 (never after another 4xx/5xx).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubled before each further one (at most 60 s).
    #[serde(with = "super::duration", default = "default_retry_backoff")]
    pub retry_backoff: Duration,
    /// `[node.validator.auth]`: the credentials for the admin and wallet calls.
    pub auth: ValidatorAuth,
}

impl ValidatorConfig {
    /// The validator's base URL as other hosts reach it: `public_url`, else `url` when its
    /// host means the same from anywhere; `None` when no other host can reach it by a
    /// known name (see [`is_local_name`]).
    pub fn address_for_other_hosts(&self) -> Option<String> {
        if let Some(public) = &self.public_url {
            return Some(public.clone());
        }
        let url = reqwest::Url::parse(&self.url).ok()?;
        let host = url.host_str()?.to_ascii_lowercase();
        (!is_local_name(&host)).then(|| self.url.clone())
    }
}

/// Whether a URL host names something only from where it is used: a loopback address
/// (`127.0.0.0/8`, `::1`, `localhost`, `*.localhost` — the compose bundle's nginx is
/// `wallet.localhost`), a single-label name (a compose service on its network) or a
/// Kubernetes Service name (`*.svc`, `*.cluster.local`): from another host, or another
/// cluster, the same name reaches that host's own node.
fn is_local_name(host: &str) -> bool {
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = ip.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    host == "localhost"
        || !host.contains('.')
        || [".localhost", ".svc", ".cluster.local"]
            .iter()
            .any(|suffix| host.ends_with(suffix))
}

fn default_timeout() -> Duration {
    DEFAULT_VALIDATOR_TIMEOUT
}

fn default_snapshot_timeout() -> Duration {
    DEFAULT_SNAPSHOT_TIMEOUT
}

fn default_retries() -> u32 {
    DEFAULT_VALIDATOR_RETRIES
}

fn default_retry_backoff() -> Duration {
    DEFAULT_VALIDATOR_RETRY_BACKOFF
}

/// `[node.validator.auth]`, chosen by `mode`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ValidatorAuth {
    /// `mode = "token_file"`: a static bearer token kept in a file, re-read on each use.
    TokenFile(TokenFileAuth),
    /// `mode = "oauth2"`: OAuth2 client credentials against the site's identity provider.
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Auth),
    /// `mode = "self_signed"`: HS256 tokens minted by splice-dr (the validator's no-auth
    /// mode, or any validator configured with an HS256 secret).
    SelfSigned(SelfSignedAuth),
}

impl ValidatorAuth {
    /// The TOML spelling of the mode.
    pub fn mode(&self) -> &'static str {
        match self {
            ValidatorAuth::TokenFile(_) => "token_file",
            ValidatorAuth::OAuth2(_) => "oauth2",
            ValidatorAuth::SelfSigned(_) => "self_signed",
        }
    }
}

/// `mode = "token_file"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFileAuth {
    /// File holding the bearer token (first line, whitespace trimmed). Re-read on each use,
    /// so an external refresher may rewrite it.
    pub token_file: PathBuf,
}

/// `mode = "oauth2"`: the client-credentials grant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Auth {
    /// The identity provider's token endpoint (`http(s)://`).
    pub token_url: String,
    /// The OAuth2 client id (not a secret).
    pub client_id: String,
    /// File holding the client secret (first line, whitespace trimmed).
    pub client_secret_file: PathBuf,
    /// The audience the validator expects (`VALIDATOR_AUTH_AUDIENCE`).
    pub audience: String,
    /// Optional `scope` parameter of the token request.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `mode = "self_signed"`: splice-dr signs `{sub, aud, iat, exp}` with HS256.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfSignedAuth {
    /// File holding the HS256 secret (first line, whitespace trimmed).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Inline secret: only the public no-auth secret `"unsafe"` is accepted.
    #[serde(default)]
    pub secret: Option<String>,
    /// The token's `sub`: the validator operator's ledger API user.
    #[serde(default = "default_user")]
    pub user: String,
    /// The token's `aud`.
    #[serde(default = "default_audience")]
    pub audience: String,
}

fn default_user() -> String {
    DEFAULT_VALIDATOR_USER.to_string()
}

fn default_audience() -> String {
    DEFAULT_VALIDATOR_AUDIENCE.to_string()
}

impl fmt::Debug for SelfSignedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSignedAuth")
            .field("secret_file", &self.secret_file)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("user", &self.user)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Semantic checks of one node's `[node.validator]` (`path` is `node[i].validator`).
pub(super) fn check(
    v: &ValidatorConfig,
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    check_base_url(&v.url, &path.key("url"), loc)?;
    if let Some(public) = &v.public_url {
        check_base_url(public, &path.key("public_url"), loc)?;
    }
    if v.snapshot_timeout.is_zero() {
        return Err(loc
            .error_at_value(
                &path.key("snapshot_timeout"),
                "snapshot_timeout must be longer than 0",
            )
            .with_hint("e.g. snapshot_timeout = \"30m\""));
    }
    if v.timeout.is_zero() {
        return Err(loc
            .error_at_value(&path.key("timeout"), "timeout must be longer than 0")
            .with_hint("e.g. timeout = \"30s\""));
    }
    if v.retries > MAX_VALIDATOR_RETRIES {
        return Err(loc
            .error_at_value(
                &path.key("retries"),
                format!(
                    "retries = {} is more than {MAX_VALIDATOR_RETRIES}: with a doubling backoff \
                     a call to a dead validator would hang for hours",
                    v.retries
                ),
            )
            .with_hint("e.g. retries = 3"));
    }
    if v.retry_backoff.is_zero() {
        return Err(loc
            .error_at_value(
                &path.key("retry_backoff"),
                "retry_backoff must be longer than 0",
            )
            .with_hint("e.g. retry_backoff = \"1s\""));
    }
    let auth = path.key("auth");
    match &v.auth {
        ValidatorAuth::TokenFile(t) => check_file(&t.token_file, &auth.key("token_file"), loc),
        ValidatorAuth::OAuth2(o) => {
            check_http_url(&o.token_url, &auth.key("token_url"), loc)?;
            check_non_empty(&o.client_id, &auth.key("client_id"), loc)?;
            check_file(&o.client_secret_file, &auth.key("client_secret_file"), loc)?;
            check_non_empty(&o.audience, &auth.key("audience"), loc)?;
            if let Some(scope) = &o.scope {
                check_non_empty(scope, &auth.key("scope"), loc)?;
            }
            Ok(())
        }
        ValidatorAuth::SelfSigned(s) => {
            match (&s.secret_file, &s.secret) {
                (Some(_), Some(_)) => {
                    return Err(loc
                        .error_at_key(&auth.key("secret"), "secret and secret_file are both set")
                        .with_hint("keep one: secret_file, or secret = \"unsafe\" for no-auth"));
                }
                (None, None) => {
                    return Err(loc
                        .error_at_key(&auth, "mode \"self_signed\" needs secret_file or secret")
                        .with_hint(
                            "secret_file = \"/etc/splice-dr/validator-hs256-secret\", or \
                             secret = \"unsafe\" for a validator started without auth",
                        ));
                }
                (Some(f), None) => check_file(f, &auth.key("secret_file"), loc)?,
                (None, Some(secret)) if secret != UNSAFE_NO_AUTH_SECRET => {
                    // The value is not echoed: it may be a real secret pasted by mistake.
                    return Err(loc
                        .error_at_value(
                            &auth.key("secret"),
                            "an inline secret is only accepted for the public no-auth secret \
                             \"unsafe\"",
                        )
                        .with_hint(
                            "put the HS256 secret in a file (mode 0600) and name it with \
                             secret_file; remove it from this file",
                        ));
                }
                (None, Some(_)) => {}
            }
            check_non_empty(&s.user, &auth.key("user"), loc)?;
            check_non_empty(&s.audience, &auth.key("audience"), loc)
        }
    }
}

fn check_non_empty(value: &str, path: &KeyPath, loc: &Locator<'_>) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(loc
            .error_at_value(path, "must not be empty")
            .with_hint("give a value, or remove the key when it is optional"));
    }
    Ok(())
}

fn check_file(p: &Path, path: &KeyPath, loc: &Locator<'_>) -> Result<(), ConfigError> {
    if p.as_os_str().is_empty() {
        return Err(loc
            .error_at_value(path, "empty path")
            .with_hint("give an absolute path, or one relative to the config file's directory"));
    }
    Ok(())
}

/// An `http(s)://host…` URL with no credentials in it; returns the parsed URL.
fn check_http_url(
    text: &str,
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<reqwest::Url, ConfigError> {
    let example = "e.g. \"https://auth.example.com/oauth/token\"";
    let url = reqwest::Url::parse(text).map_err(|e| {
        loc.error_at_value(path, format!("not a valid URL: {e}"))
            .with_hint(example)
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(loc
            .error_at_value(
                path,
                format!("\"{text}\" is not an http(s) URL with a host"),
            )
            .with_hint(example));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Not echoed: the URL carries credentials.
        return Err(loc
            .error_at_value(path, "the URL contains credentials (user:password@)")
            .with_hint("remove them: credentials come from the auth table's files"));
    }
    Ok(url)
}

fn check_base_url(text: &str, path: &KeyPath, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let example = "e.g. url = \"http://wallet.localhost/api/validator\"";
    let url = check_http_url(text, path, loc).map_err(|e| e.with_hint(example))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(loc
            .error_at_value(path, "the base URL must not have a query or fragment")
            .with_hint(example));
    }
    // A URL ending in /api/validator (the runbook's `http://wallet.localhost/api/validator`)
    // is the API itself: the client takes it as it is instead of appending the prefix again.
    Ok(())
}

/// Resolves the credential files against `base` (the config file's directory).
pub(super) fn resolve_paths(v: &mut ValidatorConfig, base: &Path) {
    let file = match &mut v.auth {
        ValidatorAuth::TokenFile(t) => Some(&mut t.token_file),
        ValidatorAuth::OAuth2(o) => Some(&mut o.client_secret_file),
        ValidatorAuth::SelfSigned(s) => s.secret_file.as_mut(),
    };
    if let Some(p) = file {
        if p.is_relative() {
            let mut joined = base.to_path_buf();
            joined.extend(p.components().filter(|c| *c != Component::CurDir));
            *p = joined;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, ConfigError, NodeConfig};
    use super::*;

    const HEAD: &str = r#"[repository]
path = "/var/backups/splice-dr"
identities_recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
[[node]]
name = "validator-1"
backend = "postgres"
migration_id = 0

[node.postgres]
url = "postgresql://cnadmin@127.0.0.1:5432/postgres"
"#;

    fn origin() -> PathBuf {
        PathBuf::from("/etc/splice-dr/splice-dr.toml")
    }

    fn node(validator: &str) -> Result<NodeConfig, ConfigError> {
        parse(&format!("{HEAD}\n{validator}"), &origin()).map(|c| c.nodes[0].clone())
    }

    fn err(validator: &str) -> ConfigError {
        match node(validator) {
            Ok(n) => panic!("expected an error, got {n:?}"),
            Err(e) => e,
        }
    }

    /// What backups record as the node's address for other hosts: `public_url`, else a
    /// `url` that is not loopback (from elsewhere, a loopback address names that host).
    #[test]
    fn the_address_for_other_hosts_is_public_url_or_a_url_that_is_not_loopback() {
        let auth = "[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n";
        let address = |keys: &str| {
            node(&format!("[node.validator]\n{keys}\n{auth}"))
                .unwrap()
                .validator
                .unwrap()
                .address_for_other_hosts()
        };
        for loopback in [
            "http://127.0.0.1:5003",
            "http://127.8.0.1:5003",
            "http://[::1]:5003",
            "http://localhost:5003",
            "http://wallet.localhost",
            "http://WALLET.LOCALHOST",
            "http://validator:5003",
            "http://validator-app.validator.svc:5003",
            "http://validator-app.validator.svc.cluster.local:5003",
        ] {
            assert_eq!(
                address(&format!("url = \"{loopback}\"")),
                None,
                "{loopback}"
            );
        }
        for global in ["https://wallet.example.com", "http://10.0.0.5:5003"] {
            assert_eq!(
                address(&format!("url = \"{global}\"")).as_deref(),
                Some(global)
            );
        }
        assert_eq!(
            address(
                "url = \"http://wallet.localhost\"\npublic_url = \"http://validator-a.example:80\""
            )
            .as_deref(),
            Some("http://validator-a.example:80")
        );
        let e = err(&format!(
            "[node.validator]\nurl = \"http://127.0.0.1:5003\"\npublic_url = \"ftp://x\"\n{auth}"
        ));
        assert!(
            e.to_string().contains("node[0].validator.public_url"),
            "{e}"
        );
    }

    /// Line of the `[node.validator]` header: HEAD is 10 lines, then one blank line.
    const FIRST: usize = 12;

    #[test]
    fn absent_table_is_none() {
        assert_eq!(node("").unwrap().validator, None);
    }

    #[test]
    fn self_signed_with_defaults() {
        let n = node(
            r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "self_signed"
secret = "unsafe"
"#,
        )
        .unwrap();
        let v = n.validator.expect("validator table");
        assert_eq!(v.url, "http://127.0.0.1:5003");
        assert_eq!(v.timeout, DEFAULT_VALIDATOR_TIMEOUT);
        assert_eq!(v.retries, DEFAULT_VALIDATOR_RETRIES);
        assert_eq!(v.retry_backoff, DEFAULT_VALIDATOR_RETRY_BACKOFF);
        let ValidatorAuth::SelfSigned(s) = &v.auth else {
            panic!("{:?}", v.auth)
        };
        assert_eq!(s.secret.as_deref(), Some("unsafe"));
        assert_eq!(s.secret_file, None);
        assert_eq!(s.user, "administrator");
        assert_eq!(s.audience, "https://validator.example.com");
        assert_eq!(v.auth.mode(), "self_signed");
    }

    #[test]
    fn every_key_and_relative_paths() {
        let n = node(
            r#"[node.validator]
url = "https://validator.example.com/prefix"
timeout = "45s"
retries = 5
retry_backoff = "250ms"
[node.validator.auth]
mode = "self_signed"
secret_file = "secrets/hs256"
user = "ops"
audience = "https://aud.example.com"
"#,
        )
        .unwrap();
        let v = n.validator.unwrap();
        assert_eq!(v.timeout, Duration::from_secs(45));
        assert_eq!(v.retries, 5);
        assert_eq!(v.retry_backoff, Duration::from_millis(250));
        let ValidatorAuth::SelfSigned(s) = &v.auth else {
            panic!()
        };
        assert_eq!(
            s.secret_file.as_deref(),
            Some(Path::new("/etc/splice-dr/secrets/hs256"))
        );
        assert_eq!(s.user, "ops");

        let n = node(
            r#"[node.validator]
url = "http://127.0.0.1:5003/"
[node.validator.auth]
mode = "token_file"
token_file = "./validator-token"
"#,
        )
        .unwrap();
        assert_eq!(
            n.validator.unwrap().auth,
            ValidatorAuth::TokenFile(TokenFileAuth {
                token_file: PathBuf::from("/etc/splice-dr/validator-token")
            })
        );

        let n = node(
            r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "oauth2"
token_url = "https://auth.example.com/oauth/token"
client_id = "splice-dr"
client_secret_file = "/etc/splice-dr/oauth-secret"
audience = "https://validator.example.com"
scope = "daml_ledger_api"
"#,
        )
        .unwrap();
        assert_eq!(
            n.validator.unwrap().auth,
            ValidatorAuth::OAuth2(OAuth2Auth {
                token_url: "https://auth.example.com/oauth/token".into(),
                client_id: "splice-dr".into(),
                client_secret_file: PathBuf::from("/etc/splice-dr/oauth-secret"),
                audience: "https://validator.example.com".into(),
                scope: Some("daml_ledger_api".into()),
            })
        );
    }

    fn assert_at(e: &ConfigError, line: usize, key: &str, needle: &str) {
        assert_eq!((e.line, e.key.as_deref()), (Some(line), Some(key)), "{e}");
        assert!(e.col.is_some(), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }

    #[test]
    fn unknown_keys_are_located() {
        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
timeuot = "30s"
[node.validator.auth]
mode = "self_signed"
secret = "unsafe"
"#);
        assert_at(
            &e,
            FIRST + 2,
            "node[0].validator.timeuot",
            "unknown field `timeuot`",
        );

        // Unknown key inside a mode's table: named, and the mode's keys listed.
        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "token_file"
token_file = "/t"
secret = "unsafe"
"#);
        assert!(e.to_string().contains("unknown field `secret`"), "{e}");
        assert!(e.to_string().contains("token_file"), "{e}");
        assert!(
            e.key
                .as_deref()
                .unwrap_or("")
                .starts_with("node[0].validator.auth"),
            "{e}"
        );
        assert!(e.line.is_some(), "{e}");

        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "kerberos"
"#);
        assert!(e.to_string().contains("kerberos"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn missing_keys() {
        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
"#);
        assert!(e.to_string().contains("missing field `auth`"), "{e}");

        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "oauth2"
token_url = "https://auth.example.com/oauth/token"
client_id = "splice-dr"
audience = "https://validator.example.com"
"#);
        assert!(
            e.to_string().contains("missing field `client_secret_file`"),
            "{e}"
        );

        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "self_signed"
"#);
        assert_at(
            &e,
            FIRST + 2,
            "node[0].validator.auth",
            "needs secret_file or secret",
        );
    }

    #[test]
    fn urls_are_checked() {
        for (url, needle) in [
            ("127.0.0.1:5003", "not"),
            ("ftp://h:21", "not an http(s) URL"),
            ("http://u:pw@h:5003", "contains credentials"),
            ("http://h:5003/?x=1", "query or fragment"),
        ] {
            let e = err(&format!(
                "[node.validator]\nurl = \"{url}\"\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n"
            ));
            assert_at(&e, FIRST + 1, "node[0].validator.url", needle);
            assert!(!e.to_string().contains(":pw@"), "{e}");
        }
        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "oauth2"
token_url = "auth.example.com/token"
client_id = "splice-dr"
client_secret_file = "/s"
audience = "https://validator.example.com"
"#);
        assert_at(
            &e,
            FIRST + 4,
            "node[0].validator.auth.token_url",
            "not a valid URL",
        );
    }

    #[test]
    fn numbers_and_durations() {
        let tail = "[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n";
        let e = err(&format!(
            "[node.validator]\nurl = \"http://h:1\"\ntimeout = 30\n{tail}"
        ));
        assert_at(&e, FIRST + 2, "node[0].validator.timeout", "no unit");
        let e = err(&format!(
            "[node.validator]\nurl = \"http://h:1\"\ntimeout = \"0s\"\n{tail}"
        ));
        assert_at(&e, FIRST + 2, "node[0].validator.timeout", "longer than 0");
        let e = err(&format!(
            "[node.validator]\nurl = \"http://h:1\"\nretries = 11\n{tail}"
        ));
        assert_at(&e, FIRST + 2, "node[0].validator.retries", "more than 10");
        let e = err(&format!(
            "[node.validator]\nurl = \"http://h:1\"\nretry_backoff = \"0ms\"\n{tail}"
        ));
        assert_at(
            &e,
            FIRST + 2,
            "node[0].validator.retry_backoff",
            "longer than 0",
        );
    }

    #[test]
    fn inline_secrets_other_than_unsafe_are_refused_and_not_echoed() {
        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "self_signed"
secret = "hunter2-real-secret"
"#);
        assert_at(
            &e,
            FIRST + 4,
            "node[0].validator.auth.secret",
            "only accepted for the public no-auth secret",
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");

        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "self_signed"
secret = "unsafe"
secret_file = "/s"
"#);
        assert_at(&e, FIRST + 4, "node[0].validator.auth.secret", "both set");

        let e = err(r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "self_signed"
secret_file = "/s"
user = ""
"#);
        assert_at(
            &e,
            FIRST + 5,
            "node[0].validator.auth.user",
            "must not be empty",
        );
    }

    #[test]
    fn debug_hides_the_inline_secret() {
        let n = node(
            r#"[node.validator]
url = "http://127.0.0.1:5003"
[node.validator.auth]
mode = "self_signed"
secret = "unsafe"
"#,
        )
        .unwrap();
        let shown = format!("{n:?}");
        assert!(shown.contains("validator"), "{shown}");
        assert!(shown.contains(REDACTED), "{shown}");
        assert!(!shown.contains("\"unsafe\""), "{shown}");
    }
}
