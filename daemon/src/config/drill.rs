//! `[[node.drill_check]]`: a site's own sanity queries, run by restore drills in the
//! scratch databases after the row counts and index checks (never in a live database).

use serde::{Deserialize, Serialize};

use super::load::{ConfigError, KeyPath, Locator};

/// One sanity query of a drill.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrillCheckConfig {
    /// Name shown in the drill's result and in the error when it fails.
    pub name: String,
    /// Which database it runs in: `validator` or `participant` (its scratch copy).
    pub database: String,
    /// SQL returning exactly one row with one column; it runs in a read-only transaction.
    pub sql: String,
    /// The value the query must return, compared as text (`true`/`t` and `false`/`f` are
    /// the same). Absent: the value must be non-null, non-empty, not `0` and not false.
    #[serde(default)]
    pub expect: Option<String>,
}

/// Checks each `[[node.drill_check]]` of the node at `path`.
pub(super) fn check(
    checks: &[DrillCheckConfig],
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    for (i, c) in checks.iter().enumerate() {
        let at = path.key("drill_check").index(i);
        if c.name.trim().is_empty() {
            return Err(loc
                .error_at_value(&at.key("name"), "a drill check needs a name")
                .with_hint("name it after what it proves, e.g. \"validator has its party\""));
        }
        if !splice_dr_plugin_api::DB_ROLES.contains(&c.database.as_str()) {
            return Err(loc
                .error_at_value(
                    &at.key("database"),
                    format!("unknown database role \"{}\"", c.database),
                )
                .with_hint("use \"validator\" or \"participant\""));
        }
        if c.sql.trim().is_empty() {
            return Err(loc
                .error_at_value(&at.key("sql"), "a drill check needs its SQL")
                .with_hint("a query returning one value, e.g. SELECT count(*) > 0 FROM …"));
        }
    }
    Ok(())
}

impl DrillCheckConfig {
    /// Whether a query's value satisfies this check (see [`DrillCheckConfig::expect`]).
    pub fn accepts(&self, value: Option<&str>) -> bool {
        let norm = |v: &str| match v.trim() {
            "t" | "true" | "TRUE" => "true".to_string(),
            "f" | "false" | "FALSE" => "false".to_string(),
            other => other.to_string(),
        };
        match (&self.expect, value) {
            (Some(want), Some(got)) => norm(want) == norm(got),
            (Some(_), None) => false,
            (None, Some(got)) => !matches!(norm(got).as_str(), "" | "0" | "false"),
            (None, None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expect: Option<&str>) -> DrillCheckConfig {
        DrillCheckConfig {
            name: "c".into(),
            database: "validator".into(),
            sql: "SELECT 1".into(),
            expect: expect.map(str::to_string),
        }
    }

    #[test]
    fn expect_compares_as_text_with_booleans_normalised() {
        assert!(check(Some("42")).accepts(Some("42")));
        assert!(!check(Some("42")).accepts(Some("41")));
        assert!(check(Some("true")).accepts(Some("t")));
        assert!(!check(Some("true")).accepts(None));
    }

    #[test]
    fn without_expect_a_value_must_be_truthy() {
        assert!(check(None).accepts(Some("3")));
        assert!(check(None).accepts(Some("t")));
        for bad in [Some("0"), Some("f"), Some(""), None] {
            assert!(!check(None).accepts(bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod schedule_tests {
    use chrono::TimeZone;

    /// The scheduled-drill example in docs/CONFIG.md parses and starts `drill` on Sundays
    /// at 03:00 UTC: schedules start any flow.
    #[test]
    fn the_documented_weekly_drill_schedule_fires_on_sunday_at_three() {
        let doc = include_str!("../../../docs/CONFIG.md");
        let example = doc
            .split("**Scheduled drills.**")
            .nth(1)
            .and_then(|s| s.split("```toml\n").nth(1))
            .and_then(|b| b.split("```").next())
            .expect("docs/CONFIG.md has a scheduled-drill example");
        let text = format!(
            "[repository]\npath = \"/var/backups/splice-dr\"\n\n[[node]]\nname = \"validator-1\"\n\
             backend = \"postgres\"\nmigration_id = 0\n\n[node.postgres]\n\
             url = \"postgresql://cnadmin@127.0.0.1:5432/postgres\"\n\n{example}"
        );
        let config = crate::config::parse(&text, std::path::Path::new("/etc/splice-dr.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let saturday = chrono::Utc
            .with_ymd_and_hms(2026, 11, 28, 23, 0, 0)
            .unwrap();
        let mut scheduler =
            splice_dr_automation::schedule::Scheduler::new(&config.schedules, saturday);
        let sunday = chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 3, 0, 30)
            .unwrap();
        let due = scheduler.due(sunday);
        assert!(due.iter().any(|r| r.flow == "drill"), "{due:?}");
    }
}
