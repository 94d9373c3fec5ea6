//! Drill checks of a staged database beyond row counts: `amcheck` over every B-tree index
//! and the site's sanity queries. Shared by every backend that reaches Postgres over SQL
//! (bare, compose); it only ever runs in scratch databases.

use postgres::{Client, SimpleQueryMessage};
use splice_dr_plugin_api::{BackendError, OpContext, QueryOutcome, StagedCheck, StagedQuery};

use crate::names::{qualified, quote_ident};
use crate::sql::{count_rows, db_err, pg_message, user_tables};

/// Schema the drill installs `amcheck` into when the dump did not bring it (scratch only).
const AMCHECK_SCHEMA: &str = "sdr_amcheck";

/// Every valid B-tree index of the user schemas: `(schema, index, table)`.
const BTREE_INDEXES: &str = "\
SELECT n.nspname, c.relname, t.relname
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_am a ON a.oid = c.relam
 WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready
   AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%'
 ORDER BY 1, 3, 2";

/// Runs the drill checks in `db` (already connected as `client`). `amcheck` missing or
/// not permitted is reported in the result; a corrupt index is a problem in the result.
pub fn check_database(
    ctx: &OpContext,
    client: &mut Client,
    db: &str,
    queries: &[StagedQuery],
) -> Result<StagedCheck, BackendError> {
    let mut out = StagedCheck {
        database: db.to_string(),
        ..StagedCheck::default()
    };
    match amcheck_schema(client) {
        Ok(schema) => {
            out.amcheck_available = true;
            check_indexes(ctx, client, db, &schema, &mut out)?;
        }
        Err(note) => {
            ctx.warn(format!("{db}: indexes not checked: {note}"));
            out.amcheck_note = Some(note);
        }
    }
    for q in queries {
        ctx.check_cancelled(&format!("check {db}"))?;
        out.queries.push(run_query(client, q));
    }
    Ok(out)
}

/// Reads every user table of `db` to its end (`count(*)`), recording how many tables and
/// rows were read in `out`. A drill of a physical backup has no recorded row counts to
/// compare with; reading each table once makes every heap page pass through the server,
/// which fails on a page it cannot read (and on a checksum mismatch where the cluster has
/// data checksums). A table that cannot be read is a problem in `out`, naming it.
pub fn read_every_table(
    ctx: &OpContext,
    client: &mut Client,
    db: &str,
    out: &mut StagedCheck,
) -> Result<(), BackendError> {
    let what = format!("read {db}");
    let tables = user_tables(client)?;
    for (i, (schema, table)) in tables.iter().enumerate() {
        ctx.check_cancelled(&what)?;
        match count_rows(client, schema, table) {
            Ok(n) => out.rows_read += n,
            Err(e) => out
                .problems
                .push(format!("table {schema}.{table} cannot be read: {e}")),
        }
        out.tables_read += 1;
        ctx.progress(&what, i as u64 + 1, Some(tables.len() as u64), "tables");
    }
    ctx.info(format!(
        "{db}: {} tables read to the end, {} rows",
        out.tables_read, out.rows_read
    ));
    Ok(())
}

/// The schema holding `amcheck`'s functions, installing the extension when needed.
/// `Err` says why it cannot be used.
fn amcheck_schema(client: &mut Client) -> Result<String, String> {
    let find = "SELECT n.nspname FROM pg_catalog.pg_extension e \
                JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
                WHERE e.extname = 'amcheck'";
    if let Ok(Some(row)) = client.query_opt(find, &[]) {
        return Ok(row.get(0));
    }
    let install = format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA {s}",
        s = quote_ident(AMCHECK_SCHEMA)
    );
    client.batch_execute(&install).map_err(|e| {
        format!(
            "the amcheck extension is not available ({}); install postgresql-contrib and \
             let the drill's user create extensions to check indexes",
            pg_message(&e)
        )
    })?;
    Ok(AMCHECK_SCHEMA.to_string())
}

/// `bt_index_check` on every B-tree index; a failure names the index and its table.
fn check_indexes(
    ctx: &OpContext,
    client: &mut Client,
    db: &str,
    schema: &str,
    out: &mut StagedCheck,
) -> Result<(), BackendError> {
    let rows = client
        .query(BTREE_INDEXES, &[])
        .map_err(db_err(format!("listing the indexes of {db}")))?;
    let what = format!("amcheck {db}");
    let check = format!(
        "SELECT {}.bt_index_check($1::text::regclass)",
        quote_ident(schema)
    );
    for (i, row) in rows.iter().enumerate() {
        ctx.check_cancelled(&what)?;
        let (nsp, index, table): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if let Err(e) = client.query(check.as_str(), &[&qualified(&nsp, &index)]) {
            out.problems.push(format!(
                "index {nsp}.{index} of table {nsp}.{table} is corrupt: {}",
                pg_message(&e)
            ));
        }
        out.indexes_checked += 1;
        ctx.progress(&what, i as u64 + 1, Some(rows.len() as u64), "indexes");
    }
    ctx.info(format!(
        "{db}: {} B-tree indexes checked with amcheck, {} corrupt",
        out.indexes_checked,
        out.problems.len()
    ));
    Ok(())
}

/// Runs one site query read-only; it must return exactly one value.
///
/// The operator's SQL is untrusted text run with the drill's (often privileged) role, so
/// it is first parsed alone with the extended protocol, which refuses more than one
/// statement; only then it runs, on a session whose default is read-only, inside a
/// `BEGIN READ ONLY` transaction that is always rolled back. A single statement cannot
/// both leave that transaction and write.
fn run_query(client: &mut Client, q: &StagedQuery) -> QueryOutcome {
    let mut outcome = QueryOutcome {
        name: q.name.clone(),
        value: None,
        error: None,
    };
    match read_only_value(client, q.sql.trim().trim_end_matches(';')) {
        Ok(v) => outcome.value = v,
        Err(e) => outcome.error = Some(e),
    }
    outcome
}

/// The single value `sql` returns, run as described in [`run_query`].
fn read_only_value(client: &mut Client, sql: &str) -> Result<Option<String>, String> {
    client.prepare(sql).map_err(|e| {
        format!(
            "must be one read-only SQL statement returning one value; it was refused: {}",
            pg_message(&e)
        )
    })?;
    client
        .batch_execute(
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
             SET default_transaction_read_only = on; BEGIN READ ONLY",
        )
        .map_err(|e| format!("could not open a read-only transaction: {}", pg_message(&e)))?;
    let result = client.simple_query(sql);
    let _ = client.batch_execute("ROLLBACK");
    let messages = result.map_err(|e| pg_message(&e))?;
    let rows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    match rows.as_slice() {
        [row] if row.len() == 1 => Ok(row.get(0).map(str::to_string)),
        [row] => Err(format!("returned {} columns, expected one", row.len())),
        _ => Err(format!("returned {} rows, expected one", rows.len())),
    }
}
