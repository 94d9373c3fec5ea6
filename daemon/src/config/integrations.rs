//! The `[metrics]`, `[notify]` and `[alertmanager]` tables: how the daemon talks to the
//! operator's monitoring (Prometheus scrapes, chat webhooks, Alertmanager alerts).
//!
//! All three are optional; a missing table turns the integration off. Secrets (the webhook
//! URL, the Alertmanager bearer token) are preferably read from files, and `Debug` never
//! prints them: a webhook URL is shown by its host only.

use super::load::{ConfigError, KeyPath, Locator};
use super::schema::{Config, REDACTED};
use serde::{Deserialize, Serialize};
use splice_dr_protocol::RunState;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Default `[notify] timeout`: a chat webhook that takes longer is down.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[metrics]` table: the Prometheus `/metrics` listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:PORT` the exporter listens on, e.g. `127.0.0.1:9464`.
    pub listen: SocketAddr,
}

/// Which run transitions are sent to the `[notify]` webhook (`on = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// A run took its lock and started.
    Started,
    /// A run finished without error.
    Succeeded,
    /// A run failed (including cancelled, timed out and interrupted runs).
    Failed,
    /// A run waits for an operator's approval before it may start.
    PendingApproval,
}

impl NotifyKind {
    /// Every kind, the default of `on`.
    pub const ALL: [NotifyKind; 4] = [
        NotifyKind::Started,
        NotifyKind::Succeeded,
        NotifyKind::Failed,
        NotifyKind::PendingApproval,
    ];

    /// The TOML spelling (`pending_approval`).
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Started => "started",
            NotifyKind::Succeeded => "succeeded",
            NotifyKind::Failed => "failed",
            NotifyKind::PendingApproval => "pending_approval",
        }
    }

    /// The kind a run's final state (`RunEvent::Finished::state`) is reported as:
    /// succeeded → [`NotifyKind::Succeeded`]; failed, cancelled, interrupted →
    /// [`NotifyKind::Failed`]; a state that is not final (pending, running) → `None`.
    pub fn from_final_state(state: RunState) -> Option<NotifyKind> {
        match state {
            RunState::Succeeded => Some(NotifyKind::Succeeded),
            RunState::Failed | RunState::Cancelled | RunState::Interrupted => {
                Some(NotifyKind::Failed)
            }
            RunState::Pending | RunState::Running => None,
        }
    }
}

impl fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn all_kinds() -> Vec<NotifyKind> {
    NotifyKind::ALL.to_vec()
}

fn default_notify_timeout() -> Duration {
    DEFAULT_NOTIFY_TIMEOUT
}

/// The `[notify]` table: a Slack-compatible incoming webhook told about runs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The webhook URL itself (a secret: prefer `webhook_url_file`). Exactly one of the two.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// A file whose first line is the webhook URL. Relative to the config file's directory.
    #[serde(default)]
    pub webhook_url_file: Option<PathBuf>,
    /// Which run transitions are sent; default all four.
    #[serde(default = "all_kinds")]
    pub on: Vec<NotifyKind>,
    /// Timeout of one webhook POST.
    #[serde(with = "super::duration", default = "default_notify_timeout")]
    pub timeout: Duration,
    /// How many times a failed POST (no answer, 429, 5xx) is tried again, with backoff
    /// 1, 2, 4, 8 s… (±50 %, at most 60 s); 0 sends once.
    #[serde(default = "default_notify_retries")]
    pub retries: u32,
}

fn default_notify_retries() -> u32 {
    DEFAULT_NOTIFY_RETRIES
}

/// Default `[notify] retries`: five attempts over about 15 s.
pub const DEFAULT_NOTIFY_RETRIES: u32 = 4;

/// Most `[notify] retries` accepted: past that the message is long stale.
pub const MAX_NOTIFY_RETRIES: u32 = 10;

impl NotifyConfig {
    /// The webhook URL: `webhook_url`, or the first line of `webhook_url_file` (trimmed).
    /// A secret: log [`webhook_host`] instead.
    pub fn webhook_url(&self) -> Result<String, String> {
        if let Some(url) = &self.webhook_url {
            return Ok(url.clone());
        }
        let Some(file) = &self.webhook_url_file else {
            return Err("[notify] has neither webhook_url nor webhook_url_file".into());
        };
        let url = read_secret_file(file)?;
        if !is_http_url(&url) {
            return Err(format!(
                "{} does not hold an http(s):// URL on its first line",
                file.display()
            ));
        }
        Ok(url)
    }

    /// Whether runs of `kind` are sent.
    pub fn wants(&self, kind: NotifyKind) -> bool {
        self.on.contains(&kind)
    }
}

impl fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self
            .webhook_url
            .as_deref()
            .map(|u| format!("{REDACTED} (host {})", webhook_host(u)));
        f.debug_struct("NotifyConfig")
            .field("webhook_url", &url)
            .field("webhook_url_file", &self.webhook_url_file)
            .field("on", &self.on)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The `[alertmanager]` table: the Alertmanager webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// `IP:PORT` the receiver listens on, e.g. `127.0.0.1:9465`.
    pub listen: SocketAddr,
    /// File whose first line is the bearer token every request must carry. Required.
    pub token_file: PathBuf,
}

impl AlertmanagerConfig {
    /// The bearer token: the first line of `token_file`, trimmed; an empty token is an error.
    pub fn token(&self) -> Result<String, String> {
        read_secret_file(&self.token_file)
    }
}

/// The host of a webhook URL, the only part of it that may be logged (`"-"` when the text
/// is not a URL with a host).
pub fn webhook_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
            .split_once(']')
            .map_or(host_port, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        "-".into()
    } else {
        host.to_ascii_lowercase()
    }
}

fn is_http_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && webhook_host(url) != "-"
}

/// The first line of a secret file, trimmed; never echoes the content in errors.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(first.to_string())
}

/// Checks on `[metrics]`, `[notify]` and `[alertmanager]` as written (called from
/// `validate::check`).
pub(super) fn check(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    if let Some(n) = &config.notify {
        check_notify(n, loc)?;
    }
    if let Some(a) = &config.alertmanager {
        let path = KeyPath::root().key("alertmanager");
        if a.token_file.as_os_str().is_empty() {
            return Err(loc
                .error_at_value(&path.key("token_file"), "empty path")
                .with_hint("name the file holding the bearer token, e.g. token_file = \"/etc/splice-dr/alertmanager-token\""));
        }
        if let Some(m) = &config.metrics {
            if same_port(m.listen, a.listen) {
                return Err(loc
                    .error_at_value(
                        &path.key("listen"),
                        format!(
                            "alertmanager.listen {} is the same port as metrics.listen {}",
                            a.listen, m.listen
                        ),
                    )
                    .with_hint("give the Alertmanager receiver its own port, e.g. 9465"));
            }
        }
    }
    Ok(())
}

/// Two listeners collide when their ports match and one address covers the other.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn check_notify(n: &NotifyConfig, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let path = KeyPath::root().key("notify");
    let hint = "set webhook_url_file = \"/etc/splice-dr/webhook-url\" (preferred: never logged) \
                or webhook_url = \"https://hooks.slack.com/services/…\"";
    match (&n.webhook_url, &n.webhook_url_file) {
        (None, None) => {
            return Err(loc
                .error_at_key(&path, "[notify] needs webhook_url or webhook_url_file")
                .with_hint(hint));
        }
        (Some(_), Some(_)) => {
            return Err(loc
                .error_at_value(
                    &path.key("webhook_url"),
                    "webhook_url and webhook_url_file are both set",
                )
                .with_hint("keep one: webhook_url_file is preferred, it is never logged"));
        }
        (Some(url), None) if !is_http_url(url) => {
            // The value is a secret: say what is wrong without echoing it.
            return Err(loc
                .error_at_value(
                    &path.key("webhook_url"),
                    "webhook_url is not an http(s):// URL with a host",
                )
                .with_hint("e.g. webhook_url = \"https://hooks.slack.com/services/…\""));
        }
        (None, Some(file)) if file.as_os_str().is_empty() => {
            return Err(loc
                .error_at_value(&path.key("webhook_url_file"), "empty path")
                .with_hint(hint));
        }
        _ => {}
    }
    if n.on.is_empty() {
        return Err(loc
            .error_at_value(&path.key("on"), "on is empty: nothing would ever be sent")
            .with_hint(
                "list some of \"started\", \"succeeded\", \"failed\", \"pending_approval\", \
                 or remove [notify]",
            ));
    }
    if n.timeout.is_zero() {
        return Err(loc
            .error_at_value(&path.key("timeout"), "timeout must be longer than 0")
            .with_hint("e.g. timeout = \"10s\""));
    }
    if n.retries > MAX_NOTIFY_RETRIES {
        return Err(loc
            .error_at_value(
                &path.key("retries"),
                format!("retries must be at most {MAX_NOTIFY_RETRIES}"),
            )
            .with_hint("the default, 4, tries five times over about 15 s"));
    }
    Ok(())
}

/// Resolves the secret-file paths against `base` (the config file's directory), as
/// `load::resolve_paths` does for the other tables.
// TODO(lead): call this from `load::resolve_paths` (one line), then drop the allow.
pub(super) fn resolve_paths(config: &mut Config, base: &Path) {
    if let Some(f) = config
        .notify
        .as_mut()
        .and_then(|n| n.webhook_url_file.as_mut())
    {
        resolve(base, f);
    }
    if let Some(a) = config.alertmanager.as_mut() {
        resolve(base, &mut a.token_file);
    }
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        let mut joined = base.to_path_buf();
        joined.extend(p.components().filter(|c| *c != Component::CurDir));
        *p = joined;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, ConfigError};
    use super::*;

    const HEAD: &str = r#"[repository]
path = "/var/backups/splice-dr"

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

    fn parse_with(extra: &str) -> Result<Config, ConfigError> {
        parse(&format!("{HEAD}{extra}"), &origin())
    }

    fn err(extra: &str) -> ConfigError {
        match parse_with(extra) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn absent_tables_mean_off() {
        let c = parse_with("").expect("parses");
        assert_eq!(c.metrics, None);
        assert_eq!(c.notify, None);
        assert_eq!(c.alertmanager, None);
    }

    #[test]
    fn full_tables_parse() {
        let c = parse_with(
            r#"
[metrics]
listen = "127.0.0.1:9464"

[notify]
webhook_url = "https://hooks.slack.com/services/T000/B000/XXXX"
on = ["failed", "pending_approval"]
timeout = "5s"

[alertmanager]
listen = "127.0.0.1:9465"
token_file = "/etc/splice-dr/alertmanager-token"
"#,
        )
        .expect("parses");
        assert_eq!(
            c.metrics.as_ref().map(|m| m.listen),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let n = c.notify.as_ref().expect("notify");
        assert_eq!(n.on, vec![NotifyKind::Failed, NotifyKind::PendingApproval]);
        assert_eq!(n.timeout, Duration::from_secs(5));
        assert!(n.wants(NotifyKind::Failed) && !n.wants(NotifyKind::Started));
        assert_eq!(
            n.webhook_url().unwrap(),
            "https://hooks.slack.com/services/T000/B000/XXXX"
        );
        let a = c.alertmanager.as_ref().expect("alertmanager");
        assert_eq!(a.listen, "127.0.0.1:9465".parse().unwrap());
        assert_eq!(a.token_file, Path::new("/etc/splice-dr/alertmanager-token"));
    }

    #[test]
    fn notify_defaults() {
        let c = parse_with("[notify]\nwebhook_url_file = \"/etc/splice-dr/hook\"\n").unwrap();
        let n = c.notify.unwrap();
        assert_eq!(n.on, NotifyKind::ALL.to_vec());
        assert_eq!(n.timeout, DEFAULT_NOTIFY_TIMEOUT);
        assert_eq!(n.webhook_url, None);
    }

    #[test]
    fn debug_hides_the_webhook_url() {
        let c = parse_with(
            "[notify]\nwebhook_url = \"https://hooks.slack.com/services/T0/B0/SECRETPART\"\n",
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRETPART"), "{shown}");
        assert!(!shown.contains("/services/"), "{shown}");
        assert!(shown.contains("hooks.slack.com"), "{shown}");
    }

    #[test]
    fn notify_errors_are_located() {
        let e = err("[notify]\non = [\"failed\"]\n");
        assert_eq!(e.key.as_deref(), Some("notify"), "{e}");
        assert!(e.message.contains("webhook_url"), "{e}");
        assert!(e.line.is_some(), "{e}");

        let e = err("[notify]\nwebhook_url = \"https://h/x\"\nwebhook_url_file = \"f\"\n");
        assert_eq!(e.key.as_deref(), Some("notify.webhook_url"), "{e}");

        let e = err("[notify]\nwebhook_url = \"hooks.slack.com/SECRET\"\n");
        assert_eq!(e.key.as_deref(), Some("notify.webhook_url"), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");

        let e = err("[notify]\nwebhook_url_file = \"f\"\non = []\n");
        assert_eq!(e.key.as_deref(), Some("notify.on"), "{e}");

        let e = err("[notify]\nwebhook_url_file = \"f\"\ntimeout = \"0s\"\n");
        assert_eq!(e.key.as_deref(), Some("notify.timeout"), "{e}");
        let e = err("[notify]\nwebhook_url_file = \"f\"\nretries = 11\n");
        assert_eq!(e.key.as_deref(), Some("notify.retries"), "{e}");

        let e = err("[notify]\nwebhook_url_file = \"f\"\non = [\"exploded\"]\n");
        assert!(e.message.contains("unknown variant"), "{e}");

        let e = err("[notify]\nwebhook_url_file = \"f\"\nattempts = 3\n");
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn listener_errors() {
        let e = err("[metrics]\nlisten = \"localhost\"\n");
        assert_eq!(e.key.as_deref(), Some("metrics.listen"), "{e}");

        let e = err("[alertmanager]\nlisten = \"127.0.0.1:9465\"\n");
        assert!(e.message.contains("token_file"), "{e}");

        let e = err(
            "[metrics]\nlisten = \"0.0.0.0:9464\"\n[alertmanager]\nlisten = \"127.0.0.1:9464\"\ntoken_file = \"t\"\n",
        );
        assert_eq!(e.key.as_deref(), Some("alertmanager.listen"), "{e}");
        assert_eq!(e.line, Some(14), "{e}");
    }

    #[test]
    fn secret_paths_resolve_against_the_config_dir() {
        let mut c = parse_with(
            "[notify]\nwebhook_url_file = \"secrets/hook\"\n[alertmanager]\nlisten = \"127.0.0.1:9465\"\ntoken_file = \"./am-token\"\n",
        )
        .unwrap();
        resolve_paths(&mut c, Path::new("/etc/splice-dr"));
        assert_eq!(
            c.notify.unwrap().webhook_url_file.unwrap(),
            Path::new("/etc/splice-dr/secrets/hook")
        );
        assert_eq!(
            c.alertmanager.unwrap().token_file,
            Path::new("/etc/splice-dr/am-token")
        );
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook");
        std::fs::write(&hook, "https://hooks.example.com/abc \n").unwrap();
        let n = NotifyConfig {
            webhook_url: None,
            webhook_url_file: Some(hook.clone()),
            on: NotifyKind::ALL.to_vec(),
            timeout: DEFAULT_NOTIFY_TIMEOUT,
            retries: DEFAULT_NOTIFY_RETRIES,
        };
        assert_eq!(n.webhook_url().unwrap(), "https://hooks.example.com/abc");
        std::fs::write(&hook, "not a url SECRET\n").unwrap();
        let e = n.webhook_url().unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");

        let tok = dir.path().join("tok");
        std::fs::write(&tok, "\n").unwrap();
        let a = AlertmanagerConfig {
            listen: "127.0.0.1:9465".parse().unwrap(),
            token_file: tok.clone(),
        };
        assert!(a.token().unwrap_err().contains("empty"));
        std::fs::write(&tok, "s3cret\n").unwrap();
        assert_eq!(a.token().unwrap(), "s3cret");
    }

    #[test]
    fn hosts_and_states() {
        assert_eq!(
            webhook_host("https://hooks.slack.com/services/T/B/X"),
            "hooks.slack.com"
        );
        assert_eq!(
            webhook_host("http://user:pw@Example.org:8080/x?y"),
            "example.org"
        );
        assert_eq!(webhook_host("http://[::1]:9/x"), "::1");
        assert_eq!(webhook_host("nothing"), "nothing");
        assert_eq!(webhook_host("https:///x"), "-");
        assert_eq!(
            NotifyKind::from_final_state(RunState::Cancelled),
            Some(NotifyKind::Failed)
        );
        assert_eq!(
            NotifyKind::from_final_state(RunState::Succeeded),
            Some(NotifyKind::Succeeded)
        );
        assert_eq!(NotifyKind::from_final_state(RunState::Running), None);
    }
}
