//! Shared test helpers: unique databases on the test Postgres (dropped at the end, even on
//! panic), starting nodes and SVs in-process, HTTP helpers, and OpenAPI shape checks.
//!
//! Needs Postgres 15 running with role `splice_dr_test` (see /work/main/tests/pg-setup.sh);
//! URL from `SPLICE_DR_TEST_PG_URL`.
#![allow(dead_code)]

pub mod schema;

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};
use splice_sim::{RunningSim, RunningSv, Sim, SimConfig, SimError, Sv, SvConfig};

/// The Postgres URL the tests use.
pub fn pg_url() -> String {
    std::env::var("SPLICE_DR_TEST_PG_URL").unwrap_or_else(|_| {
        "postgresql://splice_dr_test:splice_dr_test@127.0.0.1:5432/postgres".to_string()
    })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A set of uniquely named databases for one test; all are dropped when this is dropped.
pub struct TestDbs {
    pub prefix: String,
    names: std::sync::Mutex<Vec<String>>,
}

impl TestDbs {
    pub fn new(test: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestDbs {
            prefix: format!("simt_{}_{}_{}", std::process::id(), n, test),
            names: Default::default(),
        }
    }

    /// A unique database name (registered for dropping).
    pub fn name(&self, role: &str) -> String {
        let name = format!("{}_{}", self.prefix, role);
        self.names.lock().unwrap().push(name.clone());
        name
    }

    /// A validator config on port 0 with this test's validator and participant databases.
    pub fn sim_config(&self) -> SimConfig {
        self.node_config("")
    }

    /// Like [`TestDbs::sim_config`], for another node (its own databases) of the same test.
    pub fn node_config(&self, node: &str) -> SimConfig {
        let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), pg_url());
        cfg.validator_db = self.name(&format!("{node}validator"));
        cfg.participant_db = Some(self.name(&format!("{node}participant")));
        cfg
    }

    /// An SV config on port 0 with this test's SV database.
    pub fn sv_config(&self) -> SvConfig {
        let mut cfg = SvConfig::new("127.0.0.1:0".parse().unwrap(), pg_url());
        cfg.sv_db = self.name("sv");
        cfg
    }
}

impl Drop for TestDbs {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        if names.is_empty() {
            return;
        }
        // Runs on its own thread and runtime: Drop may run inside a tokio runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(client) = admin().await else { return };
                for n in names {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A connection to the server's `postgres` database.
pub async fn admin() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_db("postgres").await
}

/// A connection to database `db`.
pub async fn connect_db(db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg: tokio_postgres::Config = pg_url().parse()?;
    cfg.dbname(db);
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

pub async fn start(cfg: SimConfig) -> RunningSim {
    match Sim::start(cfg).await {
        Ok(s) => s,
        Err(e) => panic!("sim failed to start: {e}"),
    }
}

pub async fn try_start(cfg: SimConfig) -> Result<RunningSim, SimError> {
    Sim::start(cfg).await
}

pub async fn start_sv(cfg: SvConfig) -> RunningSv {
    Sv::start(cfg).await.expect("sv starts")
}

pub fn http() -> reqwest::Client {
    splice_sim::ensure_crypto_provider();
    reqwest::Client::new()
}

/// A response as (status, JSON body or Null).
pub async fn parts(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body: {text}"))
    };
    (status, body)
}

pub async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    parts(req.send().await.unwrap()).await
}

pub async fn post(url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http().post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    parts(req.send().await.unwrap()).await
}

/// Asserts an error answer: the status and a body matching `ErrorResponse`.
pub fn assert_error(got: &(u16, Value), status: u16) -> String {
    assert_eq!(got.0, status, "unexpected answer {got:?}");
    schema::check(&got.1, &schema::error_response()).unwrap();
    got.1["error"].as_str().unwrap().to_string()
}

/// Sets faults through the HTTP knob.
pub async fn set_faults(node: &RunningSim, patch: Value) -> Value {
    let (s, body) = post(&format!("{}/sim/faults", node.url()), None, patch).await;
    assert_eq!(s, 200, "{body}");
    body
}

/// The no-auth admin token of a default node, minted independently of the node.
pub fn default_admin_token() -> String {
    splice_sim::auth::mint_hs256(
        b"unsafe",
        &json!({"sub": "administrator", "aud": "https://validator.example.com"}),
    )
}
