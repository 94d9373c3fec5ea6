//! The daemon's configuration: TOML schema, loading with `file:line:col` errors, semantic
//! validation, and hot reload.
//!
//! Why so strict: a disaster-recovery tool is configured once and trusted for months. A
//! misspelt key that silently falls back to a default, or an error that says "invalid type"
//! without saying where, is found on the day the restore is needed. So every unknown key is an
//! error, every error names the file, line, column and dotted key, and the result is checked
//! for meaning (unique node names, backend ↔ table, parsable Postgres URL) before the daemon
//! sees it.
//!
//! Relative paths in the file are resolved against the file's directory, so a config means
//! the same thing whatever the daemon's working directory. The operator's reference is
//! `docs/CONFIG.md`; `config/*.toml` are working examples.

// `ConfigError` is 128 bytes by design (file, position, key, message, hint as public fields,
// the shape callers and the CLI print). Config errors are rare and cold: boxing buys nothing.
#![allow(clippy::result_large_err)]

mod automation;
mod drill;
mod integrations;
pub mod keys;
mod leader;
mod load;
mod offsite;
mod schema;
mod validate;
mod validator;
mod watch;

pub use automation::{check_flows, load_rules_script};
pub use drill::DrillCheckConfig;
// The automation tables and the duration helper are the automation crate's (its engines
// read them); re-exported so `config::X` paths and the TOML format stay one place.
pub use integrations::{
    webhook_host, AlertmanagerConfig, MetricsConfig, NotifyConfig, NotifyKind,
    DEFAULT_NOTIFY_TIMEOUT,
};
pub use leader::LeaderElectionConfig;
pub use load::{base_dir, load, parse, ConfigError, KeyPath, Seg};
pub use offsite::{OffsiteConfig, OffsiteKind};
pub use schema::{
    parse_mode, redact_url, BackendKind, Config, DaemonConfig, JournalConfig, LogFormat,
    NodeConfig, PluginConfig, RepositoryConfig, DEFAULT_MAX_AGE, DEFAULT_RUN_TIMEOUT,
    DEFAULT_SOCKET, DEFAULT_SOCKET_MODE, DEFAULT_STATE_DIR, REDACTED,
};
pub use splice_dr_automation::config::{
    check_event_pattern, default_schedules, recovery_of, Approval, AutomationConfig, CronExpr,
    RetentionConfig, RuleConfig, ScheduleConfig, DEFAULT_APPROVAL_TIMEOUT, DEFAULT_BACKUP_CRON,
    DEFAULT_BACKUP_MAX_AGE, DEFAULT_RULE_BREAKER, DEFAULT_RULE_MAX_RUNS, DEFAULT_RULE_WINDOW,
};
pub use splice_dr_automation::duration;
pub use validate::{MAX_DB_NAME, MAX_NODE_NAME, MAX_SOCKET_PATH};
pub use validator::{
    OAuth2Auth, SelfSignedAuth, TokenFileAuth, ValidatorAuth, ValidatorConfig,
    DEFAULT_SNAPSHOT_TIMEOUT, DEFAULT_VALIDATOR_AUDIENCE, DEFAULT_VALIDATOR_RETRIES,
    DEFAULT_VALIDATOR_RETRY_BACKOFF, DEFAULT_VALIDATOR_TIMEOUT, DEFAULT_VALIDATOR_USER,
    MAX_VALIDATOR_RETRIES, UNSAFE_NO_AUTH_SECRET,
};
pub use watch::{watch, ConfigWatcher, DEBOUNCE};

#[cfg(test)]
mod tests;
