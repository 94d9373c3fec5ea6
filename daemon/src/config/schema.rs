//! The TOML schema: what an operator may write in `splice-dr.toml`.
//!
//! Every table denies unknown keys: a misspelt key (`max-age` for `max_age`) silently falling
//! back to a default is how a disaster-recovery tool ends up keeping no backups. The structs
//! are the validated result too: [`super::parse`] fills [`Config::source`], resolves relative
//! paths and runs the semantic checks before anyone sees a `Config`.
//!
//! `Debug` output is safe to print in status output and logs: passwords embedded in Postgres
//! URLs and secret-looking keys of plugin configs are redacted.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use splice_dr_compose::ComposeConfig;
use splice_dr_k8s::K8sConfig;
use splice_dr_postgres::PostgresConfig;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration file, after validation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How the daemon itself runs: socket, state, limits, logs.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Where backups are kept. Required: a DR tool without a repository is a mistake.
    pub repository: RepositoryConfig,
    /// The validator nodes this daemon protects (`[[node]]` in TOML), at least one.
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeConfig>,
    /// `[metrics]`: the Prometheus `/metrics` listener; absent = no listener.
    #[serde(default)]
    pub metrics: Option<super::integrations::MetricsConfig>,
    /// `[notify]`: the chat webhook told about runs; absent = no notifications.
    #[serde(default)]
    pub notify: Option<super::integrations::NotifyConfig>,
    /// `[alertmanager]`: the Alertmanager webhook receiver; absent = not listening.
    #[serde(default)]
    pub alertmanager: Option<super::integrations::AlertmanagerConfig>,
    /// `[automation]`: global pause at start and the Rhai rules script.
    #[serde(default)]
    pub automation: super::automation::AutomationConfig,
    /// `[[rule]]`: events that start flows automatically.
    #[serde(default, rename = "rule")]
    pub rules: Vec<super::automation::RuleConfig>,
    /// `[[schedule]]`: flows started on a cron schedule; empty = `default_schedules()`.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<super::automation::ScheduleConfig>,
    /// `[retention]`: which backups may be deleted; absent = none are.
    #[serde(default)]
    pub retention: Option<super::automation::RetentionConfig>,
    /// `[journal]`: how many finished run records are kept.
    #[serde(default)]
    pub journal: JournalConfig,
    /// The file this configuration came from; relative paths were resolved against its
    /// directory. Not a TOML key: kept so reloads and error messages name the right file.
    #[serde(skip)]
    pub source: PathBuf,
}

impl Config {
    /// The node called `name`, as the socket protocol and flows address nodes by name.
    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// The `[daemon]` table: everything about the process, nothing about the nodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Unix socket the CLI talks to.
    pub socket: PathBuf,
    /// Permission bits of the socket file (TOML: a quoted octal string such as `"0600"`).
    /// Peers are additionally checked by uid, so a wider mode only widens who may try.
    #[serde(deserialize_with = "deserialize_mode")]
    pub socket_mode: u32,
    /// Deprecated alias of `operator_uids` (the uids are operators).
    pub allowed_uids: Vec<u32>,
    /// Uids that may do everything on the socket; root and the daemon's own uid always may.
    pub operator_uids: Vec<u32>,
    /// Uids that may only read (ping, status, runs, show, backups, follow).
    pub viewer_uids: Vec<u32>,
    /// Directories whose files a socket request may name (e.g. reonboard's
    /// `identities_file`); none by default, so file parameters are refused.
    pub input_dirs: Vec<PathBuf>,
    /// Journal, locks and run state: must survive reboots.
    pub state_dir: PathBuf,
    /// Site-specific flow scripts, searched before the built-in ones.
    pub scripts_dir: Option<PathBuf>,
    /// Wall-clock limit for one flow run; a run past it is cancelled and journaled.
    #[serde(with = "super::duration")]
    pub run_timeout: Duration,
    /// Log line format; `None` means text. The `--log-format` flag overrides it.
    pub log_format: Option<LogFormat>,
    /// How often the daemon probes each node's Postgres and components.
    #[serde(with = "super::duration")]
    pub health_interval: Duration,
    /// How long one probe round may take before it counts as down.
    #[serde(with = "super::duration")]
    pub health_timeout: Duration,
    /// How often the validator's user list is recorded (nodes with `[node.validator]`), so
    /// a restore can re-onboard users added after its backup.
    #[serde(with = "super::duration")]
    pub users_interval: Duration,
    /// How often every repository is checked (listable, writable, free space): the
    /// `splice_dr_repository_up` metric and `repository.down`/`repository.up` events.
    #[serde(with = "super::duration")]
    pub repo_check_interval: Duration,
    /// Connections the Alertmanager and `/metrics` listeners each serve at once; more are
    /// closed at once, so idle sockets cannot exhaust the daemon's file descriptors.
    pub http_max_connections: usize,
    /// Time an HTTP client has to send its request head (slowloris bound).
    #[serde(with = "super::duration")]
    pub http_header_timeout: Duration,
    /// Time one HTTP request/response exchange may take in all.
    #[serde(with = "super::duration")]
    pub http_exchange_timeout: Duration,
    /// `[daemon.leader_election]`: share a Kubernetes Lease with other replicas and run
    /// flows only while holding it; absent = always run them.
    pub leader_election: Option<super::LeaderElectionConfig>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            socket_mode: DEFAULT_SOCKET_MODE,
            allowed_uids: Vec::new(),
            operator_uids: Vec::new(),
            viewer_uids: Vec::new(),
            input_dirs: Vec::new(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            scripts_dir: None,
            run_timeout: DEFAULT_RUN_TIMEOUT,
            log_format: None,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            users_interval: DEFAULT_USERS_INTERVAL,
            repo_check_interval: DEFAULT_REPO_CHECK_INTERVAL,
            http_max_connections: 32,
            http_header_timeout: Duration::from_secs(5),
            http_exchange_timeout: Duration::from_secs(30),
            leader_election: None,
        }
    }
}

/// The `[journal]` table: retention of finished run records (`state_dir/runs/*.json`).
/// Unfinished runs (running, pending, waiting for approval) are never removed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Keep the newest N finished runs (by creation time).
    pub keep_runs: usize,
    /// Also remove finished runs that ended longer ago than this; absent = no age limit.
    #[serde(deserialize_with = "opt_duration")]
    pub keep_for: Option<Duration>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            keep_runs: DEFAULT_KEEP_RUNS,
            keep_for: None,
        }
    }
}

/// Default number of finished runs kept: months of four-hourly backups and drills.
pub const DEFAULT_KEEP_RUNS: usize = 1000;

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    super::duration::deserialize(d).map(Some)
}

/// Default probe interval: detection within ten seconds without loading the node.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// Default interval of the user-list recorder: users are onboarded by hand, rarely.
pub const DEFAULT_USERS_INTERVAL: Duration = Duration::from_secs(300);

/// Default repository check interval: an unreachable bucket is noticed within the hour a
/// backup would need it, without a request storm.
pub const DEFAULT_REPO_CHECK_INTERVAL: Duration = Duration::from_secs(900);
/// Default probe timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Default socket path: `/run` is cleared at boot, like a stale socket should be.
pub const DEFAULT_SOCKET: &str = "/run/splice-dr/splice-dr.sock";
/// Default socket mode: owner only (safety invariant 6).
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;
/// Default state directory (FHS: variable state that must persist).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/splice-dr";
/// Default run timeout: a large participant restore takes hours, not days.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Default maximum backup age: Splice cannot restore a backup older than 30 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);

/// How log lines are written, for humans (`text`) or log shippers (`json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[repository]` table: where verified backups live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Root directory of the backup repository.
    pub path: PathBuf,
    /// Backups older than this are refused by restore and pruned by retention. Splice cannot
    /// restore a backup older than 30 days, hence the default.
    #[serde(with = "super::duration", default = "default_max_age")]
    pub max_age: Duration,
    /// A recovery runway (time left before the newest restorable backup, or a node that
    /// stays down, passes `max_age`) shorter than this is low: `runway.*.low` events.
    /// Unset: see [`RepositoryConfig::runway_threshold`].
    #[serde(default, deserialize_with = "opt_duration")]
    pub low_runway: Option<Duration>,
    /// age recipients (`age1…` public keys) that node identities dumps are encrypted to.
    /// Identities hold private keys: they are only ever stored encrypted, and the matching
    /// secret key is kept off the node (it is needed only to re-onboard).
    #[serde(default)]
    pub identities_recipients: Vec<String>,
    /// `[[repository.offsite]]`: S3 buckets or other directories every backup is copied
    /// to, manifest last. Empty = backups stay on this machine only.
    #[serde(default)]
    pub offsite: Vec<super::offsite::OffsiteConfig>,
    /// This site's backup signing key (ed25519, mode 0600); default
    /// `state_dir/keys/signing.key`, generated when missing. Never inside `path`.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Public keys (`ed25519:<hex>`, from `splice-dr keys public` on the other site) whose
    /// signed backups this site trusts besides its own.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

fn default_max_age() -> Duration {
    DEFAULT_MAX_AGE
}

/// The default `low_runway`: a week, the time an operator needs to notice and act.
pub const DEFAULT_LOW_RUNWAY: Duration = Duration::from_secs(7 * 86_400);

impl RepositoryConfig {
    /// The `low_runway` in force: as set, else [`DEFAULT_LOW_RUNWAY`] — or a quarter of
    /// `max_age` when that is shorter, so that a short horizon is not low from the start.
    pub fn runway_threshold(&self) -> Duration {
        self.low_runway
            .unwrap_or_else(|| DEFAULT_LOW_RUNWAY.min(self.max_age / 4))
    }
}

/// One `[[node]]`: a validator node and the backend that reaches it.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Short stable name (`[a-z0-9_-]+`): used in CLI commands, lock and repository paths.
    pub name: String,
    /// Which backend drives this node; its table (`[node.postgres]`, `[node.compose]`,
    /// `[node.k8s]`, `[node.plugin]`) must
    /// be present and the others absent.
    pub backend: BackendKind,
    /// Current Splice migration id. Required, because restore refuses backups from another
    /// migration id and a silent default of 0 would hide a wrong value.
    pub migration_id: u64,
    /// What `backup` takes: `logical` (`pg_dump` of each database, the default) or
    /// `physical` (`pg_basebackup` of the whole database server; bare Postgres only for
    /// now, with the `[node.postgres]` keys a physical restore needs).
    #[serde(default)]
    pub backup_kind: splice_dr_plugin_api::BackupKind,
    /// Stream the server's WAL continuously into the repository (`pg_receivewal` on a
    /// replication slot of the daemon's), so a physical backup restores to `latest` or a
    /// time and the restore point is seconds old. Bare Postgres only, with the keys
    /// physical backups need; turning it off drops the slot.
    #[serde(default)]
    pub wal_streaming: bool,
    /// Slot lag (WAL the server holds that the archive does not yet) above which the
    /// daemon raises `wal.lag_high`, in MiB.
    #[serde(default = "default_wal_lag_alert_mb")]
    pub wal_lag_alert_mb: u64,
    /// Settings of the built-in bare-Postgres backend.
    #[serde(default)]
    pub postgres: Option<PostgresConfig>,
    /// Settings of the built-in docker-compose backend.
    #[serde(default)]
    pub compose: Option<ComposeConfig>,
    /// Settings of the built-in Kubernetes/helm backend.
    #[serde(default)]
    pub k8s: Option<K8sConfig>,
    /// Settings of a dynamically loaded backend.
    #[serde(default)]
    pub plugin: Option<PluginConfig>,
    /// `[node.validator]`: the validator app's admin API (identities, data snapshots,
    /// users). Optional: flows that need it say so when it is missing.
    #[serde(default)]
    pub validator: Option<super::validator::ValidatorConfig>,
    /// `[[node.drill_check]]`: site sanity queries run by restore drills in the scratch
    /// databases (docs/CONFIG.md).
    #[serde(default, rename = "drill_check")]
    pub drill_checks: Vec<super::drill::DrillCheckConfig>,
}

impl NodeConfig {
    /// Participant ids the config shows the node started with, which seed the registry
    /// of used ids (compose: the bundle's `-P` and party hint; other backends name none).
    pub fn configured_participant_ids(&self) -> Vec<String> {
        self.compose
            .as_ref()
            .map(|c| c.configured_participant_ids())
            .unwrap_or_default()
    }

    /// The participant database the node's apps use at `migration_id`, as its backend
    /// names it: compose `participant-<migration_id>`, helm `participant_<migration_id>`,
    /// or the `participant_db` set (bare Postgres: its `participant_db`, by default
    /// `participant-0`); a set name of Splice's form for the config's migration id names
    /// `migration_id`'s instead (see [`follow_migration`]). `None` for a plugin, whose
    /// naming only it knows. The daemon passes the migration id the node runs (the
    /// registry's after a network DR, before the config file says it), which is what the
    /// backend is built for, dumps and restores into: a restore compares it with that
    /// migration.
    pub fn participant_db_at(&self, migration_id: u64) -> Option<String> {
        let name = match self.backend {
            BackendKind::Postgres => self.postgres.as_ref().map(|p| p.participant_db.clone()),
            BackendKind::Compose => self
                .compose
                .as_ref()
                .map(|c| c.participant_db(migration_id)),
            BackendKind::K8s => self.k8s.as_ref().map(|k| k.participant_db(migration_id)),
            BackendKind::Plugin => None,
        }?;
        Some(follow_migration(&name, self.migration_id, migration_id))
    }
}

/// 1 GiB: a few minutes of a busy participant's WAL, far below a disk's worth.
fn default_wal_lag_alert_mb() -> u64 {
    1024
}

/// `name` at migration `running` when the config says `configured`: a name of Splice's
/// form for the configured migration (`participant-3`, `participant_3`) names the running
/// one's database (`participant-4`), since a network DR moves the node to it before the
/// config file is edited; a name of another form is the site's own and stays.
fn follow_migration(name: &str, configured: u64, running: u64) -> String {
    for prefix in ["participant-", "participant_"] {
        if name.strip_prefix(prefix) == Some(configured.to_string().as_str()) {
            return format!("{prefix}{running}");
        }
    }
    name.to_string()
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("migration_id", &self.migration_id)
            .field("backup_kind", &self.backup_kind)
            .field("wal_streaming", &self.wal_streaming)
            .field("wal_lag_alert_mb", &self.wal_lag_alert_mb)
            .field("postgres", &self.postgres.as_ref().map(RedactedPostgres))
            .field("compose", &self.compose)
            .field("k8s", &self.k8s)
            .field("plugin", &self.plugin)
            .field("validator", &self.validator)
            .field("drill_checks", &self.drill_checks)
            .finish()
    }
}

/// Prints a [`PostgresConfig`] with the URL's password replaced, all other fields as they
/// are (a clone, so fields added later show up without touching this code).
struct RedactedPostgres<'a>(&'a PostgresConfig);

impl fmt::Debug for RedactedPostgres<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        shown.url = redact_url(&shown.url);
        shown.fmt(f)
    }
}

/// Which backend implementation drives a node (`backend = "postgres" | "compose" | "k8s" |
/// "plugin"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Built-in: Postgres run by hand (pg_dump / pg_restore / psql).
    Postgres,
    /// Built-in: the Splice docker-compose bundle, through the Docker engine API.
    Compose,
    /// Built-in: the Splice helm charts on Kubernetes, through the Kubernetes API.
    K8s,
    /// A shared library loaded at start through the plugin C ABI.
    Plugin,
}

impl BackendKind {
    /// The TOML spelling, also the name of the table the backend needs.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Postgres => "postgres",
            BackendKind::Compose => "compose",
            BackendKind::K8s => "k8s",
            BackendKind::Plugin => "plugin",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[node.plugin]` table: a site-specific backend library and its own settings.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The shared library (`.so`) to load.
    pub path: PathBuf,
    /// `[node.plugin.config]`: passed to the plugin as JSON, unchecked here (the plugin
    /// validates its own settings when loaded).
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.config.clone();
        redact_json(&mut shown);
        f.debug_struct("PluginConfig")
            .field("path", &self.path)
            .field("config", &shown)
            .finish()
    }
}

/// Placeholder printed instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A Postgres connection string with any password replaced by [`REDACTED`], safe to log.
///
/// Handles both forms `postgres::Config` accepts: URLs (`postgresql://user:PASS@host/db`,
/// `?password=PASS`) and key=value conninfo (`host=h password=PASS`). Errs on the side of
/// hiding: an unparsable string is still scanned for both patterns.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        // The userinfo ends at the last '@' before the query: a password with an unencoded
        // '@' or '/' is still covered.
        let query_start = out[auth_start..]
            .find('?')
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..query_start].rfind('@') {
            let at = auth_start + at;
            if let Some(colon) = out[auth_start..at].find(':') {
                let colon = auth_start + colon;
                out.replace_range(colon + 1..at, REDACTED);
            }
        }
    }
    redact_password_params(&out)
}

/// Replaces the value of every `password=` parameter (URL query or conninfo).
fn redact_password_params(text: &str) -> String {
    const NEEDLE: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(NEEDLE) {
        let key_start = pos + found;
        // Only a whole key: preceded by start, '?', '&' or whitespace.
        let whole = key_start == 0
            || matches!(
                text.as_bytes()[key_start - 1],
                b'?' | b'&' | b' ' | b'\t' | b'\n'
            );
        let value_start = key_start + NEEDLE.len();
        out.push_str(&text[pos..value_start]);
        if !whole {
            pos = value_start;
            continue;
        }
        let rest = &text[value_start..];
        let value_len = if let Some(quoted) = rest.strip_prefix('\'') {
            // conninfo quoting: '...' with \' escapes.
            let mut len = 1;
            let mut escaped = false;
            for c in quoted.chars() {
                len += c.len_utf8();
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '\'' {
                    break;
                }
            }
            len
        } else {
            rest.find(|c: char| c == '&' || c == '#' || c.is_whitespace())
                .unwrap_or(rest.len())
        };
        out.push_str(REDACTED);
        pos = value_start + value_len;
    }
    out.push_str(&text[pos..]);
    out
}

/// Whether a plugin-config key probably holds a secret.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "passphrase",
        "credential",
        "api_key",
        "apikey",
        "private_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Replaces secret-looking values in a plugin config (recursively) by [`REDACTED`].
fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && !v.is_object() {
                    *v = serde_json::Value::String(REDACTED.into());
                } else {
                    redact_json(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

/// Parses a socket mode written as octal text: `"0600"`, `"660"` or `"0o660"`.
///
/// Kept public so the CLI and tests share one definition of a valid mode.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!(
            "invalid mode \"{text}\": write octal permission bits, e.g. \"0600\" or \"0660\""
        ));
    }
    let mode =
        u32::from_str_radix(digits, 8).map_err(|e| format!("invalid mode \"{text}\": {e}"))?;
    if mode > 0o777 {
        return Err(format!(
            "mode \"{text}\" is above 0777: setuid, setgid and sticky bits mean nothing on a socket"
        ));
    }
    Ok(mode)
}

fn deserialize_mode<'de, D>(deserializer: D) -> Result<u32, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(ModeVisitor)
}

/// Accepts only strings: a TOML integer `600` would be decimal, i.e. mode 01130.
struct ModeVisitor;

impl Visitor<'_> for ModeVisitor {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an octal mode string such as \"0600\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        parse_mode(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        Err(E::custom(format!(
            "write the mode as a quoted octal string, e.g. socket_mode = \"0600\" \
             (a bare {v} is a decimal number, not octal permission bits)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("postgresql://cnadmin:s3cr@t/x@db:5432/postgres"),
            "postgresql://cnadmin:<redacted>@db:5432/postgres"
        );
        assert_eq!(
            redact_url("postgresql://cnadmin@127.0.0.1:5432/postgres"),
            "postgresql://cnadmin@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            redact_url("postgresql://u@h/db?sslmode=require&password=hunter2"),
            "postgresql://u@h/db?sslmode=require&password=<redacted>"
        );
        assert_eq!(
            redact_url("host=/run/postgresql user=u password='a b\\' c' dbname=x"),
            "host=/run/postgresql user=u password=<redacted> dbname=x"
        );
        assert_eq!(
            redact_url("host=h Password=pw"),
            "host=h Password=<redacted>"
        );
        assert_eq!(redact_url("host=h mypassword=x"), "host=h mypassword=x");
    }

    #[test]
    fn redacts_plugin_secrets() {
        let mut v = serde_json::json!({"api_token": "t", "nested": {"password": "p"}, "ok": 1});
        redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"api_token": REDACTED, "nested": {"password": REDACTED}, "ok": 1})
        );
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o666"), Ok(0o666));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("4755").is_err());
        assert!(parse_mode("").is_err());
    }
}
