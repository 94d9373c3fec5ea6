//! Helpers shared by the integration tests: a real Postgres 15 (see tests/pg-setup.sh at the
//! workspace root), uniquely named fixture databases dropped on exit, and per-table
//! fingerprints that prove two databases hold identical data.
#![allow(dead_code)]

pub mod tls;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::{Client, NoTls};
use splice_dr_plugin_api::{Backend, DumpInfo, KeptDb, OpContext, OpEvent, StagedDb};
use splice_dr_postgres::PostgresBackend;

/// Where the tests' superuser connects.
pub fn pg_url() -> String {
    std::env::var("SPLICE_DR_TEST_PG_URL").unwrap_or_else(|_| {
        "postgresql://splice_dr_test:splice_dr_test@127.0.0.1:5432/postgres".into()
    })
}

/// A direct SQL session (not through the backend) on `db`.
pub fn connect(db: &str) -> Client {
    let mut cfg: postgres::Config = pg_url().parse().expect("SPLICE_DR_TEST_PG_URL parses");
    cfg.dbname(db);
    cfg.connect(NoTls).unwrap_or_else(|e| {
        panic!("cannot connect to test Postgres as {db} (run tests/pg-setup.sh): {e}")
    })
}

/// Whether `db` exists.
pub fn exists(db: &str) -> bool {
    connect("postgres")
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&db],
        )
        .expect("query")
        .get(0)
}

/// Database names of one test: the node's two live names (with hyphens, like
/// `participant-0`), all starting with a unique base so the guard can drop everything the
/// test or the backend created, including staged/kept/failed copies.
pub struct TestDbs {
    pub base: String,
    pub validator: String,
    pub participant: String,
}

impl TestDbs {
    /// New unique names for a test called `tag`.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let base = format!(
            "sdrt-{tag}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        TestDbs {
            validator: format!("{base}-val"),
            participant: format!("{base}-part"),
            base,
        }
    }

    /// Every database of the cluster whose name starts with this test's base.
    pub fn all(&self) -> Vec<String> {
        let mut c = connect("postgres");
        let rows = c
            .query("SELECT datname FROM pg_database ORDER BY 1", &[])
            .expect("list");
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|n| n.starts_with(&self.base))
            .collect()
    }

    /// The backend's JSON config for these names.
    pub fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "url": pg_url(),
            "validator_db": self.validator,
            "participant_db": self.participant,
            "jobs": 2,
        })
    }

    /// A backend for these names.
    pub fn backend(&self) -> PostgresBackend {
        PostgresBackend::from_json(self.config()).expect("backend")
    }
}

impl Drop for TestDbs {
    fn drop(&mut self) {
        let Ok(mut cfg) = pg_url().parse::<postgres::Config>() else {
            return;
        };
        cfg.dbname("postgres");
        let Ok(mut c) = cfg.connect(NoTls) else {
            return;
        };
        let Ok(rows) = c.query("SELECT datname FROM pg_database", &[]) else {
            return;
        };
        for r in rows {
            let n: String = r.get(0);
            if n.starts_with(&self.base) {
                let _ = c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    n.replace('"', "\"\"")
                ));
            }
        }
    }
}

/// Creates `db` with tables covering jsonb, bytea, a secondary and a GIN index, a
/// sequence, a hyphenated table name, an empty table and a second schema.
pub fn create_fixture(db: &str, rows: i64) {
    connect("postgres")
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .expect("create db");
    let mut c = connect(db);
    c.batch_execute(
        "CREATE SCHEMA app;
         CREATE SEQUENCE app.ticket_seq START 100;
         CREATE TABLE app.items (
             id bigserial PRIMARY KEY,
             tag text NOT NULL,
             payload jsonb NOT NULL,
             blob bytea,
             created timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z');
         CREATE INDEX items_tag_idx ON app.items (tag);
         CREATE INDEX items_payload_idx ON app.items USING gin (payload);
         CREATE TABLE public.\"odd-Name\" (k text PRIMARY KEY, v int);
         CREATE TABLE public.empty_table (x int);
         INSERT INTO public.\"odd-Name\" SELECT 'k' || g, g FROM generate_series(1, 50) g;
         SELECT setval('app.ticket_seq', 4242);",
    )
    .expect("fixture schema");
    c.execute(
        "INSERT INTO app.items (tag, payload, blob)
         SELECT 'tag' || (g % 17),
                jsonb_build_object('n', g, 'arr', jsonb_build_array(g, md5(g::text)), 'q', 'it''s \"x\"'),
                decode(md5(g::text) || md5((g + 1)::text), 'hex')
           FROM generate_series(1, $1::bigint) g",
        &[&rows],
    )
    .expect("fixture rows");
}

/// Changes data in every way a restore must undo: deletes, updates, inserts, sequence.
pub fn modify(db: &str) {
    connect(db)
        .batch_execute(
            "DELETE FROM app.items WHERE id % 3 = 0;
             UPDATE app.items SET payload = payload || '{\"changed\": true}', blob = NULL WHERE id % 5 = 0;
             INSERT INTO public.\"odd-Name\" VALUES ('new', 0);
             INSERT INTO public.empty_table VALUES (1);
             SELECT nextval('app.ticket_seq');",
        )
        .expect("modify");
}

/// Per-table `count:md5` of the rows in a fixed order, every sequence's state and the
/// list of indexes: equal fingerprints mean equal data.
pub fn fingerprint(db: &str) -> BTreeMap<String, String> {
    let mut c = connect(db);
    let mut out = BTreeMap::new();
    let tables = c
        .query(
            "SELECT schemaname, tablename FROM pg_tables
              WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
            &[],
        )
        .expect("tables");
    for t in tables {
        let (s, n): (String, String) = (t.get(0), t.get(1));
        let sql = format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '')
               FROM \"{s}\".\"{n}\" t"
        );
        let v: String = c.query_one(sql.as_str(), &[]).expect("md5").get(0);
        out.insert(format!("table {s}.{n}"), v);
    }
    let seqs = c
        .query(
            "SELECT schemaname, sequencename, coalesce(last_value::text, 'null') FROM pg_sequences",
            &[],
        )
        .expect("sequences");
    for r in seqs {
        let (s, n, v): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        out.insert(format!("sequence {s}.{n}"), v);
    }
    let idx: Vec<String> = c
        .query(
            "SELECT schemaname || '.' || indexname FROM pg_indexes
              WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .expect("indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.insert("indexes".into(), idx.join(","));
    out
}

/// A context recording every event, with a cancel flag the test controls.
pub struct Recorder {
    pub ctx: OpContext,
    pub cancel: Arc<AtomicBool>,
    pub events: Arc<Mutex<Vec<OpEvent>>>,
}

impl Recorder {
    /// A fresh, uncancelled context.
    pub fn new() -> Self {
        Self::with_hook(|_, _| {})
    }

    /// A context that calls `hook(event, cancel_flag)` on each event (to cancel mid-way).
    pub fn with_hook(hook: impl Fn(&OpEvent, &AtomicBool) + Send + Sync + 'static) -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (c, e, c2) = (cancel.clone(), events.clone(), cancel.clone());
        let ctx = OpContext::new(
            move || c.load(Ordering::Relaxed),
            move |ev| {
                hook(&ev, &c2);
                e.lock().expect("events").push(ev);
            },
        );
        Recorder {
            ctx,
            cancel,
            events,
        }
    }

    /// Log messages at `level`.
    pub fn logs(&self, level: &str) -> Vec<String> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter_map(|e| match e {
                OpEvent::Log { level: l, message } if l == level => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Progress events whose `what` starts with `prefix`, as `(done, unit)`.
    pub fn progress(&self, prefix: &str) -> Vec<(u64, String)> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter_map(|e| match e {
                OpEvent::Progress {
                    what, done, unit, ..
                } if what.starts_with(prefix) => Some((*done, unit.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Dumps both roles of `dbs` into `dir`, returning the dumps' paths and manifests.
pub fn dump_both(
    b: &dyn Backend,
    ctx: &OpContext,
    dir: &Path,
) -> Vec<(String, std::path::PathBuf, DumpInfo)> {
    ["validator", "participant"]
        .iter()
        .map(|role| {
            let dest = dir.join(role);
            let info = b.dump(ctx, role, &dest).expect("dump");
            (role.to_string(), dest, info)
        })
        .collect()
}

/// The whole backup → damage → restore → swap → drop-kept cycle, through any backend
/// (built-in or loaded plugin), asserting the data comes back exactly.
pub fn full_cycle(b: &dyn Backend, dbs: &TestDbs, rows: i64) {
    let rec = Recorder::new();
    let ctx = &rec.ctx;
    create_fixture(&dbs.validator, rows);
    create_fixture(&dbs.participant, rows / 2);
    let orig_v = fingerprint(&dbs.validator);
    let orig_p = fingerprint(&dbs.participant);

    let dir = tempfile::tempdir().expect("tempdir");
    let dumps = dump_both(b, ctx, dir.path());
    for (role, path, info) in &dumps {
        assert_eq!(info.format, "directory");
        assert!(
            info.server_version.starts_with("15"),
            "{}",
            info.server_version
        );
        assert!(info.started_at <= info.finished_at);
        let items = info
            .tables
            .iter()
            .find(|t| t.schema == "app" && t.table == "items")
            .expect("items counted");
        let want = if role == "validator" { rows } else { rows / 2 };
        assert_eq!(items.rows, want as u64);
        let mut sorted = info.tables.clone();
        sorted.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
        assert_eq!(sorted, info.tables, "tables sorted");
        assert_eq!(info.tables.len(), 3);
        let check = b.check_dump(ctx, path).expect("check_dump");
        assert_eq!(check.table_data, 3);
        assert!(check.entries > check.table_data);
    }
    assert!(!rec.logs("info").is_empty(), "log lines reach the host");

    modify(&dbs.validator);
    modify(&dbs.participant);
    let modified_v = fingerprint(&dbs.validator);
    let modified_p = fingerprint(&dbs.participant);
    assert_ne!(modified_v, orig_v);

    let staged: Vec<StagedDb> = dumps
        .iter()
        .map(|(role, path, info)| {
            b.restore_staged(ctx, role, path, info)
                .expect("restore_staged")
        })
        .collect();
    for s in &staged {
        assert!(s.staging.contains("__sdr_staging_"), "{}", s.staging);
        assert!(exists(&s.staging));
        assert_eq!(
            fingerprint(&s.live),
            if s.role == "validator" {
                modified_v.clone()
            } else {
                modified_p.clone()
            },
            "live untouched by restore_staged"
        );
    }
    assert_eq!(fingerprint(&staged[0].staging), orig_v);
    let left = b.leftovers(ctx).expect("leftovers");
    assert_eq!(left.staged.len(), 2, "{left:?}");
    assert!(left.kept.is_empty());

    // A client still connected to the live database must not block the swap.
    let mut squatter = connect(&dbs.validator);
    let kept: Vec<KeptDb> = b.swap_in(ctx, &staged).expect("swap_in");
    assert!(
        squatter.simple_query("SELECT 1").is_err(),
        "old session was terminated"
    );
    assert_eq!(kept.len(), 2);
    assert!(kept
        .iter()
        .all(|k| k.existed && k.kept.contains("__sdr_kept_")));

    assert_eq!(fingerprint(&dbs.validator), orig_v, "validator restored");
    assert_eq!(
        fingerprint(&dbs.participant),
        orig_p,
        "participant restored"
    );
    for k in &kept {
        let want = if k.role == "validator" {
            &modified_v
        } else {
            &modified_p
        };
        assert_eq!(
            &fingerprint(&k.kept),
            want,
            "kept db holds the replaced data"
        );
    }
    let left = b.leftovers(ctx).expect("leftovers");
    assert!(left.staged.is_empty(), "{left:?}");
    assert_eq!(left.kept.len(), 2);
    let dbinfo = b.databases(ctx).expect("databases");
    assert!(dbinfo.iter().all(|d| d.exists), "{dbinfo:?}");

    b.drop_kept(ctx, &kept).expect("drop_kept");
    assert!(kept.iter().all(|k| !exists(&k.kept)));
    assert_eq!(b.leftovers(ctx).expect("leftovers"), Default::default());
    assert_eq!(dbs.all(), {
        let mut v = vec![dbs.validator.clone(), dbs.participant.clone()];
        v.sort();
        v
    });
}
