//! Value types of restore drills: what checking a staged (scratch) database found.
//!
//! A drill restores a backup into scratch databases and then asks the backend to look
//! deeper than row counts: Postgres' `amcheck` over every B-tree index, and the site's
//! own sanity queries. A drill of a physical backup runs the same checks in the databases
//! of a scratch server started on the copy ([`ScratchChecks`]). They live apart from [`crate::types`] because only drills use them.

use serde::{Deserialize, Serialize};

/// A site sanity query to run in a staged database (`[[node.drill_check]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedQuery {
    /// The check's name, used in results and errors.
    pub name: String,
    /// SQL returning one row with one column.
    pub sql: String,
}

/// What one site query returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryOutcome {
    /// The check's name.
    pub name: String,
    /// The single value as text (`None` for SQL NULL or when the query failed).
    pub value: Option<String>,
    /// Why the query could not run or did not return exactly one value.
    pub error: Option<String>,
}

/// What checking a staged database found. Problems are reported, not raised, so the
/// drill can name every broken index at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedCheck {
    /// The scratch database checked.
    pub database: String,
    /// Whether the `amcheck` extension could be used.
    pub amcheck_available: bool,
    /// Why it could not (not installed, not permitted), when it could not.
    #[serde(default)]
    pub amcheck_note: Option<String>,
    /// B-tree indexes verified with `bt_index_check`.
    pub indexes_checked: u64,
    /// Corrupt indexes, one sentence each naming the index and its table.
    #[serde(default)]
    pub problems: Vec<String>,
    /// The site queries' results, in the order given.
    #[serde(default)]
    pub queries: Vec<QueryOutcome>,
    /// Tables read to the end (a drill of a physical backup, which records no row counts
    /// to compare with, reads every table so that every heap page is read once).
    #[serde(default)]
    pub tables_read: u64,
    /// Rows those tables hold.
    #[serde(default)]
    pub rows_read: u64,
}

/// The checks a drill of a physical backup runs in one of the node's databases: the
/// database of `role` in the scratch server, and the site queries configured for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScratchChecks {
    /// The database role (`validator`, `participant`).
    pub role: String,
    /// The `[[node.drill_check]]` queries of that role.
    pub queries: Vec<StagedQuery>,
}
