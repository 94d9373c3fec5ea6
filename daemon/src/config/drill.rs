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
