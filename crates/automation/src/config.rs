//! The `[automation]`, `[[rule]]`, `[[schedule]]` and `[retention]` tables: what the daemon
//! may start on its own (health rules, cron schedules) and which backups it may delete.
//!
//! Safety invariant 4: automatic runs are rate-limited and guarded by a circuit breaker; a
//! tripped breaker needs a human; a global pause stops every automatic trigger. So every
//! rule has a rate limit and a breaker whether the operator writes them or not (the defaults
//! below); they can be widened, never switched off.
//!
//! These are the serde types of what the operator writes, next to the engines that read
//! them ([`crate::rules`], [`crate::schedule`]); the daemon's config re-exports them, and
//! its checks that point at a file line stay with its locator (`daemon/src/config`).

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `max_runs` of a rule: at most 3 automatic runs …
pub const DEFAULT_RULE_MAX_RUNS: u32 = 3;
/// … per this sliding window.
pub const DEFAULT_RULE_WINDOW: Duration = Duration::from_secs(3600);
/// Default `breaker`: automatic runs of a rule stop after 2 consecutive failed runs.
pub const DEFAULT_RULE_BREAKER: u32 = 2;
/// Default `approval_timeout`: a run waiting for approval expires after 30 minutes.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The default schedule's cron expression: a backup every 4 hours (Splice's guidance).
pub const DEFAULT_BACKUP_CRON: &str = "0 */4 * * *";
/// The default schedule's `max_age`: 4 hours plus slack for the backup's own duration.
pub const DEFAULT_BACKUP_MAX_AGE: Duration = Duration::from_secs(4 * 3600 + 30 * 60);

/// The `[automation]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutomationConfig {
    /// Start with every automatic trigger (rules and schedules) paused.
    pub paused: bool,
    /// Site rules in Rhai (`on(pattern, |e| …)`); relative to the config file's directory.
    /// Use [`AutomationConfig::rules_script_in`] to get the path to read.
    pub rules_script: Option<PathBuf>,
}

impl AutomationConfig {
    /// The rules script to read, resolved against `config_dir` (the config file's
    /// directory, which the caller's loader knows) when relative.
    pub fn rules_script_in(&self, config_dir: &Path) -> Option<PathBuf> {
        self.rules_script.as_ref().map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                config_dir.join(p)
            }
        })
    }
}

/// `approval = "auto" | "required"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// The run starts at once.
    #[default]
    Auto,
    /// The run waits as pending until an operator approves it or it expires.
    Required,
}

/// One `[[rule]]`: an event pattern → a flow, with its guards.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name (`[a-z0-9_-]+`), used by `splice-dr reset <rule>` and in the journal.
    pub name: String,
    /// Event pattern (`health.postgres.down`, `health.*.down`, `alert.**`).
    pub on: String,
    /// Only events of this node; the run targets it. Absent: the event's node.
    #[serde(default)]
    pub node: Option<String>,
    /// The flow to start.
    pub flow: String,
    /// Params passed to the flow (a TOML table).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `for`: the condition must hold this long (no recovery event) before the rule fires.
    #[serde(rename = "for", default, deserialize_with = "opt_duration")]
    pub sustain: Option<Duration>,
    /// The recovery event pattern that cancels a `for` wait. Absent: derived from the
    /// triggering event (see [`recovery_of`]).
    #[serde(default)]
    pub until: Option<String>,
    /// After firing, matches are ignored (and reported as suppressed) this long.
    #[serde(default, deserialize_with = "opt_duration")]
    pub cooldown: Option<Duration>,
    /// At most this many automatic runs per `window` (sliding).
    #[serde(default = "default_max_runs")]
    pub max_runs: u32,
    /// The window of `max_runs`.
    #[serde(with = "crate::duration", default = "default_window")]
    pub window: Duration,
    /// After this many consecutive failed runs, automatic runs stop until `splice-dr reset`.
    #[serde(default = "default_breaker")]
    pub breaker: u32,
    /// Whether a run waits for an operator's approval.
    #[serde(default)]
    pub approval: Approval,
    /// How long a run waits for approval before it expires (only with `approval = "required"`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub approval_timeout: Option<Duration>,
}

impl RuleConfig {
    /// `approval_timeout` or its default.
    pub fn approval_timeout(&self) -> Duration {
        self.approval_timeout.unwrap_or(DEFAULT_APPROVAL_TIMEOUT)
    }
}

/// The recovery event of a triggering event name, when `until` is not set:
/// `….down` → `….up`; `alert.X` → `alert.X.resolved`. `None` when neither applies.
pub fn recovery_of(event_name: &str) -> Option<String> {
    if let Some(stem) = event_name.strip_suffix(".down") {
        return Some(format!("{stem}.up"));
    }
    if event_name == "down" {
        return Some("up".into());
    }
    if event_name.starts_with("alert.") && !event_name.ends_with(".resolved") {
        return Some(format!("{event_name}.resolved"));
    }
    None
}

/// One `[[schedule]]`: a flow started on a cron schedule (UTC).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name.
    pub name: String,
    /// The flow to start.
    pub flow: String,
    /// 5-field cron expression, evaluated in UTC.
    pub cron: CronExpr,
    /// The node the run targets. Absent: the runner's default node.
    #[serde(default)]
    pub node: Option<String>,
    /// Params passed to the flow.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `backup.stale` is raised when the last good backup is older than this.
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_age: Option<Duration>,
}

/// What runs when no `[[schedule]]` is configured: a backup every 4 hours (Splice's
/// guidance), of the runner's default node, with staleness checked at 4h30m.
pub fn default_schedules() -> Vec<ScheduleConfig> {
    vec![ScheduleConfig {
        name: "backup".into(),
        flow: "backup".into(),
        cron: CronExpr::parse(DEFAULT_BACKUP_CRON).expect("the default cron expression parses"),
        node: None,
        params: serde_json::Map::new(),
        max_age: Some(DEFAULT_BACKUP_MAX_AGE),
    }]
}

/// The `[retention]` table. A backup is kept if any rule keeps it; the newest verified
/// backup is never deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep the newest N backups.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Keep every backup younger than N days.
    #[serde(default)]
    pub keep_days: Option<u32>,
    /// Keep the newest backup of each of the last N days (UTC) that have one.
    #[serde(default)]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[serde(default)]
    pub keep_weekly: Option<u32>,
}

/// How `prune --dry-run` and `status` show a policy (the protocol's view of this table).
impl From<&RetentionConfig> for splice_dr_protocol::answers::RetentionPolicyView {
    fn from(r: &RetentionConfig) -> Self {
        splice_dr_protocol::answers::RetentionPolicyView {
            keep_last: r.keep_last,
            keep_days: r.keep_days,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
        }
    }
}

/// A parsed 5-field cron expression (minute hour day-of-month month day-of-week), UTC.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

impl CronExpr {
    /// Parses a 5-field expression; refuses seconds and years fields and expressions that
    /// never fire (`0 0 30 2 *`).
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let example = "write 5 fields: minute hour day-of-month month day-of-week, e.g. \
                       \"0 */4 * * *\" (every 4 hours, UTC)";
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && fields != 5 {
            return Err(format!(
                "cron \"{text}\" has {fields} fields, expected 5; {example}"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("invalid cron \"{text}\": {e}; {example}"))?;
        let expr = CronExpr {
            text: text.to_string(),
            cron,
        };
        // Checked from a fixed instant so a config's validity does not depend on the date.
        let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if epoch.and_then(|t| expr.next_after(t)).is_none() {
            return Err(format!("cron \"{text}\" never fires; {example}"));
        }
        Ok(expr)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `t` the expression matches (whole minutes).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CronVisitor;
        impl Visitor<'_> for CronVisitor {
            type Value = CronExpr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a 5-field cron string such as \"0 */4 * * *\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CronExpr, E> {
                CronExpr::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(CronVisitor)
    }
}

fn default_max_runs() -> u32 {
    DEFAULT_RULE_MAX_RUNS
}

fn default_window() -> Duration {
    DEFAULT_RULE_WINDOW
}

fn default_breaker() -> u32 {
    DEFAULT_RULE_BREAKER
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::duration::deserialize(d).map(Some)
}

/// Whether `pattern` is a valid event pattern: non-empty dotted segments, `**` only last.
pub fn check_event_pattern(pattern: &str) -> Result<(), String> {
    let example = "e.g. \"health.postgres.down\", \"health.*.down\" or \"alert.**\"";
    if pattern.trim().is_empty() {
        return Err(format!("empty event pattern; {example}"));
    }
    let segs: Vec<&str> = pattern.split('.').collect();
    for (i, s) in segs.iter().enumerate() {
        if s.is_empty() {
            return Err(format!(
                "event pattern \"{pattern}\" has an empty segment; {example}"
            ));
        }
        if *s == "**" && i + 1 != segs.len() {
            return Err(format!(
                "event pattern \"{pattern}\": `**` may only be the last segment; {example}"
            ));
        }
        if s.contains(char::is_whitespace) || (s.contains('*') && *s != "*" && *s != "**") {
            return Err(format!(
                "event pattern \"{pattern}\": segment \"{s}\" is not a name, `*` or `**`; \
                 {example}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_derivation() {
        assert_eq!(
            recovery_of("health.postgres.down").as_deref(),
            Some("health.postgres.up")
        );
        assert_eq!(
            recovery_of("alert.ValidatorDown").as_deref(),
            Some("alert.ValidatorDown.resolved")
        );
        assert_eq!(recovery_of("backup.stale"), None);
    }
}
