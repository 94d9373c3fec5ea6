//! The `[automation]`, `[[rule]]`, `[[schedule]]` and `[retention]` tables: the checks
//! that can point at a line, and the daemon's edge to the automation crate.
//!
//! The tables' serde types, their defaults and the decision logic live in
//! `splice-dr-automation` (pure: no file I/O, no locator); this file checks what the
//! operator wrote against the rest of the config (`file:line:col`), reads the rules script
//! the config names, and turns the crate's errors into [`ConfigError`]s.

use super::load::{base_dir, ConfigError, KeyPath, Locator};
use super::schema::Config;
use splice_dr_automation::config::{check_event_pattern, Approval};
// The tables' types are the crate's; the other config modules (schema, offsite) keep
// naming them `super::automation::X`.
pub use splice_dr_automation::config::{
    AutomationConfig, RetentionConfig, RuleConfig, ScheduleConfig,
};
use splice_dr_automation::rules::{RuleScript, ScriptError};
use std::collections::HashMap;

impl From<ScriptError> for ConfigError {
    fn from(e: ScriptError) -> Self {
        let err = ConfigError::new(&e.file, e.message);
        match e.line {
            Some(l) => err.with_position((l, e.col.unwrap_or(1))),
            None => err,
        }
    }
}

/// Reads and compiles `[automation] rules_script`, if set (relative to the config file's
/// directory). Errors are `file:line:col`.
pub fn load_rules_script(config: &Config) -> Result<Option<RuleScript>, ConfigError> {
    let Some(path) = config.automation.rules_script_in(&base_dir(&config.source)) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::unreadable(&path, e))?;
    Ok(Some(RuleScript::compile(&text, &path)?))
}

/// Checks that every `[[rule]]` and `[[schedule]]` names a flow for which `is_flow`
/// holds (the caller passes the flow catalog); the error names the rule.
pub fn check_flows(config: &Config, is_flow: impl Fn(&str) -> bool) -> Result<(), String> {
    let named = config
        .rules
        .iter()
        .map(|r| ("rule", &r.name, &r.flow))
        .chain(
            config
                .schedules
                .iter()
                .map(|s| ("schedule", &s.name, &s.flow)),
        );
    for (what, name, flow) in named {
        if !is_flow(flow) {
            return Err(format!(
                "{}: {what} \"{name}\" starts flow \"{flow}\", which does not exist",
                config.source.display()
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
    use splice_dr_automation::rules::{Decision, RuleEngine};
    use splice_dr_automation::Event;
    use std::path::PathBuf;
    use std::time::Duration;

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
            c.automation.rules_script_in(&base_dir(&c.source)),
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

    /// The engine for a loaded config, as the daemon builds it: its rules, pause flag and
    /// rules script.
    fn engine_of(config: &Config) -> Result<RuleEngine, ConfigError> {
        let engine = RuleEngine::new(&config.rules, &config.automation);
        Ok(match load_rules_script(config)? {
            Some(s) => engine.with_script(s),
            None => engine,
        })
    }

    #[test]
    fn rules_script_is_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rules.rhai"),
            "on(\"health.*.down\", |e| run(\"restore\"));\n",
        )
        .unwrap();
        let mut c = ok("\n[automation]\nrules_script = \"rules.rhai\"\n");
        c.source = dir.path().join("splice-dr.toml");
        let mut e = engine_of(&c).unwrap();
        let now = chrono::Utc::now();
        let mut ev = Event::new("health.postgres.down", Some("validator-1".into()), "probe");
        ev.at = now;
        let d = e.on_event(&ev, now);
        assert!(matches!(d[0], Decision::Start { .. }));

        c.automation.rules_script = Some(PathBuf::from("missing.rhai"));
        let err = engine_of(&c).unwrap_err();
        assert!(err.message.contains("cannot read"), "{err}");
    }

    #[test]
    fn check_flows_names_the_rule() {
        let c = ok(FULL);
        assert!(check_flows(&c, |f| f == "restore" || f == "backup").is_ok());
        let err = check_flows(&c, |f| f == "backup").unwrap_err();
        assert!(err.contains("rule \"restore-on-db-loss\""), "{err}");
    }
}
