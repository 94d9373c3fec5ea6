//! Catalog queries shared by dump (counting rows in the snapshot) and restore (checking the
//! staged copy against those counts), so both sides count exactly the same set of tables.

use postgres::GenericClient;
use splice_dr_plugin_api::BackendError;

use crate::names::{qualified, quote_ident, quote_literal};

/// Ordinary and partitioned user tables, excluding system schemas and tables that belong
/// to an extension (`CREATE EXTENSION` recreates those, their rows are not the dump's).
const USER_TABLES: &str = "\
SELECT n.nspname, c.relname
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%'
   AND n.nspname NOT LIKE 'pg\\_temp\\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2";

/// Formats a driver error with the server's message, detail and SQLSTATE when there is one.
pub fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(": ");
                m.push_str(d);
            }
            m
        }
        // The driver's own text is generic ("error performing TLS handshake"): the
        // causes say what went wrong.
        None => {
            let mut m = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                m.push_str(": ");
                m.push_str(&cause.to_string());
                source = cause.source();
            }
            m
        }
    }
}

/// Wraps a driver error as [`BackendError::Database`] with what was being done.
pub fn db_err(context: impl Into<String>) -> impl FnOnce(postgres::Error) -> BackendError {
    let context = context.into();
    move |e| BackendError::db(context, pg_message(&e))
}

/// Whether the error is "object in use" (another session is connected to the database).
pub fn is_in_use(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::OBJECT_IN_USE)
}

/// Whether the error is "database already exists": another session (a container's init
/// script finishing late) created it between our existence check and our `CREATE`.
pub fn is_duplicate_database(e: &postgres::Error) -> bool {
    let constraint = e.as_db_error().and_then(|d| d.constraint());
    e.code()
        .is_some_and(|code| names_existing_database(code, constraint))
}

/// `duplicate_database`, or the unique violation on `pg_database`'s name index that a
/// `CREATE DATABASE` racing another one for the same name gets instead (both passed the
/// name check before either committed).
fn names_existing_database(code: &postgres::error::SqlState, constraint: Option<&str>) -> bool {
    use postgres::error::SqlState;
    *code == SqlState::DUPLICATE_DATABASE
        || (*code == SqlState::UNIQUE_VIOLATION && constraint == Some("pg_database_datname_index"))
}

/// `(schema, table)` of every user table, sorted.
pub fn user_tables(c: &mut impl GenericClient) -> Result<Vec<(String, String)>, BackendError> {
    let rows = c
        .query(USER_TABLES, &[])
        .map_err(db_err("listing user tables"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Exact row count of one table (`count(*)`, never the planner's estimate).
pub fn count_rows(
    c: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<u64, BackendError> {
    let sql = format!("SELECT count(*) FROM {}", qualified(schema, table));
    let row = c
        .query_one(sql.as_str(), &[])
        .map_err(db_err(format!("counting rows of {schema}.{table}")))?;
    let n: i64 = row.get(0);
    Ok(u64::try_from(n).unwrap_or_default())
}

/// Whether a database with exactly this name exists.
pub fn database_exists(c: &mut impl GenericClient, name: &str) -> Result<bool, BackendError> {
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
            &[&name],
        )
        .map_err(db_err(format!("looking up database {name}")))?;
    Ok(row.get(0))
}

/// Names of every database of the cluster.
pub fn all_databases(c: &mut impl GenericClient) -> Result<Vec<String>, BackendError> {
    let rows = c
        .query("SELECT datname FROM pg_catalog.pg_database", &[])
        .map_err(db_err("listing databases"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Terminates every other session connected to `names`; renames and drops fail while
/// anyone is connected. Returns how many sessions were signalled.
pub fn terminate_sessions(c: &mut impl GenericClient, names: &[&str]) -> Result<i64, BackendError> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let row = c
        .query_one(
            "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity \
              WHERE datname = ANY($1) AND pid <> pg_catalog.pg_backend_pid()",
            &[&names],
        )
        .map_err(db_err("terminating sessions"))?;
    Ok(row.get(0))
}

/// Drops a database even while sessions are connected to it (they are terminated first,
/// and `WITH (FORCE)` is used on Postgres 13+ so reconnecting clients cannot block it).
pub fn drop_database(c: &mut postgres::Client, name: &str) -> Result<(), BackendError> {
    let version: i32 = c
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .map_err(db_err("reading server_version_num"))?
        .get(0);
    terminate_sessions(c, &[name])?;
    let force = if version >= 130000 {
        " WITH (FORCE)"
    } else {
        ""
    };
    c.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {}{force}",
        quote_ident(name)
    ))
    .map_err(db_err(format!("dropping database {name}")))
}

/// Creates `name` with the same owner, encoding and locale as `like`, so a staged copy
/// differs from the live database in data only. Returns whether `like` existed (when it
/// does not, the new database gets the connecting user's defaults).
pub fn create_database_like(
    admin: &mut postgres::Client,
    name: &str,
    like: &str,
) -> Result<bool, BackendError> {
    let mut create = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    let props = admin
        .query_opt(
            "SELECT pg_catalog.pg_get_userbyid(datdba), \
                    pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype \
               FROM pg_catalog.pg_database WHERE datname = $1",
            &[&like],
        )
        .map_err(db_err(format!("reading the properties of {like}")))?;
    if let Some(p) = &props {
        let (owner, enc, collate, ctype): (String, String, String, String) =
            (p.get(0), p.get(1), p.get(2), p.get(3));
        create.push_str(&format!(
            " OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(&owner),
            quote_literal(&enc),
            quote_literal(&collate),
            quote_literal(&ctype)
        ));
    }
    admin
        .batch_execute(&create)
        .map_err(db_err(format!("creating database {name}")))?;
    Ok(props.is_some())
}

#[cfg(test)]
mod duplicate_tests {
    use super::names_existing_database;
    use postgres::error::SqlState;

    /// Seen in compose_e2e: the container's init script and the restore both create the
    /// database; the loser gets a unique violation on pg_database, which means "exists".
    #[test]
    fn a_create_database_race_reads_as_already_exists() {
        assert!(names_existing_database(&SqlState::DUPLICATE_DATABASE, None));
        assert!(names_existing_database(
            &SqlState::UNIQUE_VIOLATION,
            Some("pg_database_datname_index")
        ));
        assert!(!names_existing_database(
            &SqlState::UNIQUE_VIOLATION,
            Some("items_pkey")
        ));
        assert!(!names_existing_database(&SqlState::UNIQUE_VIOLATION, None));
    }
}
