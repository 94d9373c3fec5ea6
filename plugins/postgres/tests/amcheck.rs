//! (8) Drill checks of a staged database (`check_staged`): amcheck finds a corrupt index
//! and names it with its table, site queries return their one value or say why not, and
//! the backend refuses to check anything but one of its staging databases.

mod common;

use common::{connect, Recorder, TestDbs};
use splice_dr_pg_toolkit::check::check_database;
use splice_dr_plugin_api::{BackendError, Databases, StagedDb, StagedQuery};

/// A B-tree index made inconsistent on purpose: built with one comparison, which is then
/// reversed (what a changed collation does to a real index).
const CORRUPT_INDEX: &str = "
    CREATE TABLE t (id int PRIMARY KEY, k int NOT NULL);
    INSERT INTO t SELECT g, g FROM generate_series(1, 2000) g;
    CREATE FUNCTION sdr_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE
        AS 'SELECT btint4cmp($1, $2)';
    CREATE OPERATOR CLASS sdr_ops FOR TYPE int USING btree AS
        OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
        FUNCTION 1 sdr_cmp(int, int);
    CREATE INDEX t_k ON t (k sdr_ops);
    CREATE OR REPLACE FUNCTION sdr_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE
        AS 'SELECT btint4cmp($2, $1)';";

fn query(name: &str, sql: &str) -> StagedQuery {
    StagedQuery {
        name: name.into(),
        sql: sql.into(),
    }
}

#[test]
fn amcheck_names_a_corrupt_index_and_site_queries_return_one_value() {
    let dbs = TestDbs::new("amcheck");
    let db = format!("{}-scratch", dbs.base);
    connect("postgres")
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .expect("create");
    let mut client = connect(&db);
    client.batch_execute(CORRUPT_INDEX).expect("fixture");
    let rec = Recorder::new();
    let queries = [
        query("rows", "SELECT count(*) FROM t"),
        query("two rows", "SELECT 1 UNION ALL SELECT 2"),
        query("broken", "SELECT * FROM missing_table"),
        query("after an error", "SELECT true"),
    ];

    let found = check_database(&rec.ctx, &mut client, &db, &queries).expect("check");
    assert!(found.amcheck_available, "{found:?}");
    assert_eq!(found.indexes_checked, 2, "{found:?}");
    assert_eq!(found.problems.len(), 1, "only t_k is corrupt: {found:?}");
    assert!(
        found.problems[0].contains("index public.t_k of table public.t is corrupt"),
        "{found:?}"
    );
    let values: Vec<_> = found.queries.iter().map(|q| q.value.as_deref()).collect();
    assert_eq!(values, [Some("2000"), None, None, Some("t")]);
    assert!(found.queries[1]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("2 rows"));
    assert!(found.queries[2]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("missing_table"));
}

#[test]
fn only_staging_databases_are_checked() {
    let dbs = TestDbs::new("amcheck-live");
    let backend = dbs.backend();
    let rec = Recorder::new();
    let live = StagedDb {
        role: "validator".into(),
        live: dbs.validator.clone(),
        staging: dbs.validator.clone(),
    };
    match backend.check_staged(&rec.ctx, &live, &[]) {
        Err(BackendError::Config(m)) => assert!(m.contains("not a staging database"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Whether a role called `name` exists in the cluster.
fn role_exists(name: &str) -> bool {
    connect("postgres")
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&name],
        )
        .expect("pg_roles")
        .is_some()
}

/// Site queries cannot write: several statements are refused before anything runs, and
/// a lone COMMIT or a session-level switch back to read-write does not let the next
/// query write either (real Postgres, with a role that may create roles).
#[test]
fn site_queries_cannot_commit_or_write() {
    let dbs = TestDbs::new("readonly");
    let db = format!("{}-scratch", dbs.base);
    let mut admin = connect("postgres");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .expect("create");
    let role = format!(
        "sdr_ro_{}",
        dbs.base.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    // The test's role can create roles, so a refusal below is the check's doing.
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{role}_probe\"; DROP ROLE \"{role}_probe\""
        ))
        .expect("the test role may create roles");
    let mut client = connect(&db);
    let rec = Recorder::new();
    let queries = [
        query(
            "batch",
            &format!("select 1; commit; create role \"{role}\""),
        ),
        query("commit", "commit"),
        query(
            "switch",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        ),
        query("write", &format!("create role \"{role}\"")),
        query("still fine", "SELECT 42"),
    ];

    let found = check_database(&rec.ctx, &mut client, &db, &queries).expect("check");
    assert!(
        !role_exists(&role),
        "a site query created a role: {found:?}"
    );
    let batch = found.queries[0].error.as_deref().unwrap_or("");
    assert!(batch.contains("one read-only SQL statement"), "{found:?}");
    assert!(
        found.queries[3]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("read-only"),
        "{found:?}"
    );
    assert_eq!(found.queries[4].value.as_deref(), Some("42"), "{found:?}");
}
