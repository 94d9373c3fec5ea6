//! Proof that a restored database is the dumped one: every table with the row count the
//! dump's snapshot recorded, and the failing table named when `pg_restore` stops.

use postgres::Client;
use splice_dr_plugin_api::{BackendError, DumpInfo, OpContext};

use crate::sql::{count_rows, user_tables};

/// Mismatches listed in a verification error before "and N more".
const MAX_LISTED: usize = 10;

/// The table pg_restore was working on when it failed: with its schema when it printed
/// the entry (`from TOC entry 3345; 0 16390 TABLE DATA <schema> <table> <owner>`), else as
/// its COPY error names it (`COPY failed for table "<table>"`).
pub fn failing_table(stderr: &str) -> Option<String> {
    if let Some(rest) = stderr.split("TABLE DATA ").nth(1) {
        let mut words = rest.split_whitespace();
        if let (Some(schema), Some(table)) = (words.next(), words.next()) {
            return Some(format!("{schema}.{table}"));
        }
    }
    let rest = stderr.split("COPY failed for table \"").nth(1)?;
    rest.split('"').next().map(str::to_string)
}

/// Names the table in a failed pg_restore's error, so a drill's result says which table
/// of the backup does not restore. Other errors pass unchanged.
pub fn name_failing_table(e: BackendError) -> BackendError {
    match &e {
        BackendError::Command { stderr, .. } => match failing_table(stderr) {
            Some(t) => BackendError::Verification(format!("table {t} does not restore: {e}")),
            None => e,
        },
        _ => e,
    }
}

/// Checks a restored database against the manifest's record of its dump: every table is
/// there with exactly the row count the dump's snapshot had. Extra tables are only warned
/// about. Shared by every backend that restores with Postgres tools (bare, compose).
pub fn verify_counts(
    ctx: &OpContext,
    client: &mut Client,
    db: &str,
    expected: &DumpInfo,
) -> Result<(), BackendError> {
    let what = format!("verify {db}");
    let present = user_tables(client)?;
    let mut problems = Vec::new();
    let total = expected.tables.len() as u64;
    for (i, t) in expected.tables.iter().enumerate() {
        ctx.check_cancelled(&what)?;
        let name = format!("{}.{}", t.schema, t.table);
        if !present.iter().any(|(s, n)| *s == t.schema && *n == t.table) {
            problems.push(format!("{name}: missing (expected {} rows)", t.rows));
            continue;
        }
        let found = count_rows(client, &t.schema, &t.table)?;
        if found != t.rows {
            problems.push(format!("{name}: expected {} rows, found {found}", t.rows));
        }
        ctx.progress(&format!("verify {db}"), i as u64 + 1, Some(total), "tables");
    }
    let extra = present
        .iter()
        .filter(|(s, n)| {
            !expected
                .tables
                .iter()
                .any(|t| t.schema == *s && t.table == *n)
        })
        .count();
    if extra > 0 {
        ctx.warn(format!(
            "{db} has {extra} tables the dump's manifest does not list (not verified)"
        ));
    }
    if !problems.is_empty() {
        let more = problems.len().saturating_sub(MAX_LISTED);
        problems.truncate(MAX_LISTED);
        let mut msg = format!(
            "restored {db} does not match the dump: {}",
            problems.join("; ")
        );
        if more > 0 {
            msg.push_str(&format!("; and {more} more"));
        }
        return Err(BackendError::Verification(msg));
    }
    ctx.info(format!(
        "{db} verified: {} tables with the dump's exact row counts",
        expected.tables.len()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failing_table_is_read_from_pg_restore_output() {
        let stderr = "pg_restore: while PROCESSING TOC:\npg_restore: from TOC entry 3345; 0 16390 TABLE DATA app items cnadmin\npg_restore: error: COPY failed for table \"items\": ERROR:  invalid input syntax";
        assert_eq!(failing_table(stderr).as_deref(), Some("app.items"));
        assert_eq!(failing_table("pg_restore: error: connection refused"), None);
        let copy = "pg_restore: error: COPY failed for table \"items\": ERROR:  invalid input";
        assert_eq!(failing_table(copy).as_deref(), Some("items"));
        let e = name_failing_table(BackendError::Command {
            command: "pg_restore".into(),
            status: "exit code 1".into(),
            stderr: stderr.into(),
        });
        assert!(
            e.to_string().contains("table app.items does not restore"),
            "{e}"
        );
    }
}
