//! The `[automation]`, `[[rule]]`, `[[schedule]]` and `[retention]` tables: what the daemon
//! may start on its own (health rules, cron schedules) and which backups it may delete.
//!
//! Safety invariant 4: automatic runs are rate-limited and guarded by a circuit breaker; a
//! tripped breaker needs a human; a global pause stops every automatic trigger. So every
//! rule has a rate limit and a breaker whether the operator writes them or not (the defaults
//! below); they can be widened, never switched off.
//!
//! The decision logic lives in `crate::rules` and `crate::schedule`; this file only holds
//! what the operator writes and the checks that can point at a line.

use super::load::{base_dir, ConfigError, KeyPath, Locator};
use super::schema::Config;
use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::HashMap;
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
    /// Use [`AutomationConfig::rules_script_path`] to get the path to read.
    pub rules_script: Option<PathBuf>,
}

impl AutomationConfig {
    /// The rules script to read, resolved against the directory of `config_source` (the
    /// config file) when relative.
    pub fn rules_script_path(&self, config_source: &Path) -> Option<PathBuf> {
        self.rules_script.as_ref().map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                base_dir(config_source).join(p)
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
    #[serde(with = "super::duration", default = "default_window")]
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
    super::duration::deserialize(d).map(Some)
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

/// Checks one retention policy (`[retention]` or an off-site repository's `retention`):
/// it must keep something, and no count may be 0.
pub(super) fn check_retention(
    r: &RetentionConfig,
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let keys = [
        ("keep_last", r.keep_last),
        ("keep_days", r.keep_days),
        ("keep_daily", r.keep_daily),
        ("keep_weekly", r.keep_weekly),
    ];
    if keys.iter().all(|(_, v)| v.is_none()) {
        return Err(loc
            .error_at_key(
                path,
                "retention keeps nothing: set keep_last, keep_days, keep_daily or keep_weekly",
            )
            .with_hint(
                "e.g. keep_last = 7, keep_daily = 14, keep_weekly = 8; remove the table to never delete",
            ));
    }
    for (key, v) in keys {
        if v == Some(0) {
            return Err(loc
                .error_at_value(&path.key(key), format!("{key} must be at least 1"))
                .with_hint("remove the key instead of setting it to 0"));
        }
    }
    Ok(())
}

/// Checks of the four tables; called from `validate::check`.
pub(super) fn check(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    if let Some(p) = &config.automation.rules_script {
        if p.as_os_str().is_empty() {
            return Err(loc
                .error_at_value(
                    &KeyPath::root().key("automation").key("rules_script"),
                    "empty path",
                )
                .with_hint("give a .rhai file, relative to the config file's directory"));
        }
    }
    let node_known = |n: &str| config.nodes.iter().any(|node| node.name == n);

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, rule) in config.rules.iter().enumerate() {
        let path = KeyPath::root().key("rule").index(i);
        check_name(&rule.name, "rule", &path.key("name"), loc)?;
        unique(&mut seen, &rule.name, i, "rule", loc)?;
        check_event_pattern(&rule.on).map_err(|m| loc.error_at_value(&path.key("on"), m))?;
        if let Some(until) = &rule.until {
            check_event_pattern(until).map_err(|m| loc.error_at_value(&path.key("until"), m))?;
            if rule.sustain.is_none() {
                return Err(loc
                    .error_at_key(&path.key("until"), "until is set but for is not")
                    .with_hint("until names the recovery event that cancels a `for` wait"));
            }
        }
        check_node_ref(rule.node.as_deref(), &path, &node_known, loc)?;
        check_flow(&rule.flow, &path, loc)?;
        if rule.sustain.is_some_and(|d| d.is_zero()) {
            return Err(loc
                .error_at_value(&path.key("for"), "for must be longer than 0")
                .with_hint("remove `for` to fire at once, e.g. for = \"2m\""));
        }
        if rule.sustain.is_some() && rule.until.is_none() && !derivable(&rule.on) {
            return Err(loc
                .error_at_value(
                    &path.key("on"),
                    format!(
                        "for is set but no recovery event can be derived from \"{}\"",
                        rule.on
                    ),
                )
                .with_hint(
                    "patterns ending in `.down` recover with `.up` and `alert.X` with \
                     `alert.X.resolved`; otherwise set until = \"…\"",
                ));
        }
        if rule.max_runs == 0 {
            return Err(loc
                .error_at_value(&path.key("max_runs"), "max_runs must be at least 1")
                .with_hint("automatic runs are always rate-limited (e.g. max_runs = 3)"));
        }
        if rule.window.is_zero() {
            return Err(loc
                .error_at_value(&path.key("window"), "window must be longer than 0")
                .with_hint("e.g. window = \"1h\""));
        }
        if rule.breaker == 0 {
            return Err(loc
                .error_at_value(&path.key("breaker"), "breaker must be at least 1")
                .with_hint("automatic runs are always breaker-guarded (e.g. breaker = 2)"));
        }
        if rule.approval_timeout.is_some() && rule.approval == Approval::Auto {
            return Err(loc
                .error_at_key(
                    &path.key("approval_timeout"),
                    "approval_timeout is set but approval is \"auto\"",
                )
                .with_hint("set approval = \"required\", or remove approval_timeout"));
        }
        if rule.approval_timeout.is_some_and(|d| d.is_zero()) {
            return Err(loc
                .error_at_value(
                    &path.key("approval_timeout"),
                    "approval_timeout must be longer than 0",
                )
                .with_hint("e.g. approval_timeout = \"30m\""));
        }
    }

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in config.schedules.iter().enumerate() {
        let path = KeyPath::root().key("schedule").index(i);
        check_name(&s.name, "schedule", &path.key("name"), loc)?;
        unique(&mut seen, &s.name, i, "schedule", loc)?;
        check_node_ref(s.node.as_deref(), &path, &node_known, loc)?;
        check_flow(&s.flow, &path, loc)?;
        if s.max_age.is_some_and(|d| d.is_zero()) {
            return Err(loc
                .error_at_value(&path.key("max_age"), "max_age must be longer than 0")
                .with_hint("e.g. max_age = \"4h30m\""));
        }
    }

    if let Some(r) = &config.retention {
        check_retention(r, &KeyPath::root().key("retention"), loc)?;
    }
    Ok(())
}

fn derivable(pattern: &str) -> bool {
    pattern.ends_with(".down")
        || (pattern.starts_with("alert.")
            && !pattern.ends_with(".resolved")
            && !pattern.ends_with("**"))
}

fn check_name(
    name: &str,
    what: &str,
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let hint = "use lowercase letters, digits, '-' and '_', e.g. name = \"restore-on-db-loss\"";
    if name.is_empty() || name.len() > 63 {
        return Err(loc
            .error_at_value(path, format!("{what} name must be 1 to 63 bytes long"))
            .with_hint(hint));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(loc
            .error_at_value(path, format!("{what} name \"{name}\" contains {bad:?}"))
            .with_hint(hint));
    }
    Ok(())
}

fn unique<'a>(
    seen: &mut HashMap<&'a str, usize>,
    name: &'a str,
    i: usize,
    what: &str,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    if let Some(first) = seen.insert(name, i) {
        let first_line = loc
            .value_span(&KeyPath::root().key(what).index(first).key("name"))
            .map(|s| format!(" (line {})", loc.line_col(s.start).0))
            .unwrap_or_default();
        return Err(loc
            .error_at_value(
                &KeyPath::root().key(what).index(i).key("name"),
                format!("{what} name \"{name}\" is already used by {what}[{first}]{first_line}"),
            )
            .with_hint(format!("{what} names must be unique")));
    }
    Ok(())
}

fn check_node_ref(
    node: Option<&str>,
    path: &KeyPath,
    known: &dyn Fn(&str) -> bool,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    match node {
        Some(n) if !known(n) => Err(loc
            .error_at_value(&path.key("node"), format!("no [[node]] is named \"{n}\""))
            .with_hint("use the name of a configured [[node]], or remove the key")),
        _ => Ok(()),
    }
}

fn check_flow(flow: &str, path: &KeyPath, loc: &Locator<'_>) -> Result<(), ConfigError> {
    if flow.trim().is_empty() {
        return Err(loc
            .error_at_value(&path.key("flow"), "flow is empty")
            .with_hint("name a flow, e.g. flow = \"restore\" (`splice-dr check` lists them)"));
    }
    Ok(())
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

    fn ok(tail: &str) -> Config {
        parse(&format!("{HEAD}{tail}"), &origin()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(tail: &str) -> ConfigError {
        match parse(&format!("{HEAD}{tail}"), &origin()) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    /// Line numbers in errors count from the top of HEAD + tail.
    fn line_of(tail: &str, needle: &str) -> usize {
        let text = format!("{HEAD}{tail}");
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    const FULL: &str = r#"
[automation]
paused = true
rules_script = "rules.rhai"

[[rule]]
name = "restore-on-db-loss"
on = "health.postgres.down"
node = "validator-1"
flow = "restore"
params = { backup = "latest" }
for = "2m"
cooldown = "30m"
max_runs = 3
window = "1h"
breaker = 2
approval = "required"
approval_timeout = "30m"

[[schedule]]
name = "backup"
flow = "backup"
cron = "0 */4 * * *"
node = "validator-1"
params = {}
max_age = "4h30m"

[retention]
keep_last = 7
keep_days = 30
"#;

    #[test]
    fn full_example_parses() {
        let c = ok(FULL);
        assert!(c.automation.paused);
        assert_eq!(
            c.automation.rules_script_path(&c.source),
            Some(PathBuf::from("/etc/splice-dr/rules.rhai"))
        );
        let r = &c.rules[0];
        assert_eq!(r.name, "restore-on-db-loss");
        assert_eq!(r.sustain, Some(Duration::from_secs(120)));
        assert_eq!(r.cooldown, Some(Duration::from_secs(1800)));
        assert_eq!(r.params.get("backup"), Some(&serde_json::json!("latest")));
        assert_eq!(r.approval, Approval::Required);
        assert_eq!(r.approval_timeout(), Duration::from_secs(1800));
        let s = &c.schedules[0];
        assert_eq!(s.cron.as_str(), "0 */4 * * *");
        assert_eq!(s.max_age, Some(Duration::from_secs(4 * 3600 + 1800)));
        assert_eq!(
            c.retention,
            Some(RetentionConfig {
                keep_last: Some(7),
                keep_days: Some(30),
                ..Default::default()
            })
        );
    }

    #[test]
    fn documented_example_parses() {
        let doc = include_str!("../../../docs/CONFIG.md");
        let block = doc
            .split("## Automation:")
            .nth(1)
            .and_then(|s| s.split("```toml\n").nth(1))
            .and_then(|b| b.split("```").next())
            .expect("docs/CONFIG.md has an automation example");
        let c = ok(block);
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.schedules[0].cron.as_str(), "0 */4 * * *");
    }

    #[test]
    fn defaults() {
        let c = ok("\n[[rule]]\nname = \"r\"\non = \"health.*.down\"\nflow = \"restore\"\n");
        assert!(!c.automation.paused);
        assert!(c.schedules.is_empty());
        assert!(c.retention.is_none());
        let r = &c.rules[0];
        assert_eq!(
            (r.max_runs, r.window, r.breaker, r.approval),
            (3, Duration::from_secs(3600), 2, Approval::Auto)
        );
        assert_eq!(r.sustain, None);
    }

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

    #[test]
    fn errors_are_located() {
        let tail =
            "\n[[rule]]\nname = \"r\"\non = \"health.*.down\"\nflow = \"restore\"\nfor = 120\n";
        let e = err(tail);
        assert_eq!(e.line, Some(line_of(tail, "for = 120")), "{e}");
        assert!(e.message.contains("no unit"), "{e}");

        let tail =
            "\n[[rule]]\nname = \"r\"\non = \"health.*.down\"\nflow = \"restore\"\nfrom = \"x\"\n";
        let e = err(tail);
        assert!(e.message.contains("unknown field"), "{e}");

        let tail = "\n[[schedule]]\nname = \"b\"\nflow = \"backup\"\ncron = \"0 0 */4 * * *\"\n";
        let e = err(tail);
        assert_eq!(e.line, Some(line_of(tail, "cron =")), "{e}");
        assert_eq!(e.key.as_deref(), Some("schedule[0].cron"), "{e}");
        assert!(e.message.contains("expected 5"), "{e}");

        let tail = "\n[[rule]]\nname = \"r\"\non = \"health..down\"\nflow = \"restore\"\n";
        let e = err(tail);
        assert_eq!(e.key.as_deref(), Some("rule[0].on"), "{e}");
        assert_eq!(e.line, Some(line_of(tail, "on =")), "{e}");
    }

    #[test]
    fn semantic_checks() {
        let rule = |extra: &str| {
            format!("\n[[rule]]\nname = \"r\"\non = \"health.*.down\"\nflow = \"restore\"\n{extra}")
        };
        let dup = format!("{}{}", rule(""), rule(""));
        let e = err(&dup);
        assert!(e.message.contains("already used by rule[0]"), "{e}");
        assert_eq!(e.key.as_deref(), Some("rule[1].name"));

        let e = err(&rule("node = \"validator-9\"\n"));
        assert!(e.message.contains("validator-9"), "{e}");
        let e = err(&rule("breaker = 0\n"));
        assert_eq!(e.key.as_deref(), Some("rule[0].breaker"), "{e}");
        let e = err(&rule("max_runs = 0\n"));
        assert_eq!(e.key.as_deref(), Some("rule[0].max_runs"), "{e}");
        let e = err(&rule("approval_timeout = \"5m\"\n"));
        assert!(e.message.contains("approval is \"auto\""), "{e}");
        let e = err(&rule("until = \"health.*.up\"\n"));
        assert!(e.message.contains("for is not"), "{e}");
        let e = err(
            "\n[[rule]]\nname = \"s\"\non = \"backup.stale\"\nflow = \"backup\"\nfor = \"5m\"\n",
        );
        assert!(e.message.contains("no recovery event"), "{e}");
        let e = err("\n[[rule]]\nname = \"Bad Name\"\non = \"a\"\nflow = \"b\"\n");
        assert!(e.message.contains("contains"), "{e}");
        let e = err("\n[retention]\n");
        assert!(e.message.contains("keeps nothing"), "{e}");
        let e = err("\n[retention]\nkeep_last = 0\n");
        assert_eq!(e.key.as_deref(), Some("retention.keep_last"), "{e}");
        let e = err("\n[automation]\npause = true\n");
        assert!(e.message.contains("unknown field"), "{e}");
    }
}
