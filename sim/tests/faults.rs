//! Fault knobs and real DB health: readyz goes 503 when a validator table is dropped.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test]
async fn readyz_reflects_database_health() {
    let dbs = TestDbs::new("health");
    let cfg = dbs.sim_config();
    let node = start(cfg.clone()).await;
    let readyz = format!("{}/readyz", node.api_url());
    assert_eq!(get(&readyz, None).await.0, 200);

    let v = connect_db(&cfg.validator_db).await.unwrap();
    v.batch_execute("ALTER TABLE users RENAME TO users_gone")
        .await
        .unwrap();
    let msg = assert_error(&get(&readyz, None).await, 503);
    assert!(msg.contains("users"), "{msg}");
    v.batch_execute("ALTER TABLE users_gone RENAME TO users")
        .await
        .unwrap();
    assert_eq!(get(&readyz, None).await.0, 200);

    v.batch_execute("DROP TABLE users").await.unwrap();
    assert_error(&get(&readyz, None).await, 503);
    assert_eq!(get(&format!("{}/livez", node.api_url()), None).await.0, 200);

    // A dropped participant database: still 503 (and the node keeps answering).
    let admin = admin().await.unwrap();
    let pdb = cfg.participant_db.clone().unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE \"{pdb}\" WITH (FORCE)"))
        .await
        .unwrap();
    let msg = assert_error(&get(&readyz, None).await, 503);
    assert!(msg.contains(&pdb), "{msg}");
    node.shutdown().await;
}

#[tokio::test]
async fn fault_knobs() {
    let dbs = TestDbs::new("faults");
    let node = start(dbs.sim_config()).await;
    let api = node.api_url();
    let token = node.admin_token();
    let ids = format!("{api}/v0/admin/participant/identities");

    // Unhealthy / dead.
    let f = set_faults(&node, json!({"unhealthy": true})).await;
    assert_eq!(f["unhealthy"], true);
    assert_error(&get(&format!("{api}/readyz"), None).await, 503);
    assert_eq!(get(&format!("{api}/livez"), None).await.0, 200);
    set_faults(&node, json!({"unhealthy": false, "dead": true})).await;
    assert_error(&get(&format!("{api}/livez"), None).await, 503);
    assert_error(&get(&format!("{api}/readyz"), None).await, 503);

    // Identities 404 (auth still checked first).
    set_faults(&node, json!({"dead": false, "identities_404": true})).await;
    assert_error(&get(&ids, Some(&token)).await, 404);
    assert_error(&get(&ids, None).await, 401);

    // Clearing everything.
    let resp = http()
        .delete(format!("{}/sim/faults", node.url()))
        .send()
        .await
        .unwrap();
    let (s, f) = parts(resp).await;
    assert_eq!((s, f["identities_404"].as_bool()), (200, Some(false)));
    assert_eq!(get(&ids, Some(&token)).await.0, 200);
    assert_eq!(get(&format!("{}/sim/faults", node.url()), None).await.1, f);

    // Slow responses: every API call, health included.
    // 1.5 s: far above a loaded machine's response time, so "cleared" below is unambiguous.
    set_faults(&node, json!({"delay_ms": 1500})).await;
    let t = Instant::now();
    assert_eq!(get(&format!("{api}/readyz"), None).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(1500));
    let t = Instant::now();
    assert_eq!(get(&format!("{api}/v0/validator-user"), None).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(1500));
    // A client with a short timeout gives up.
    splice_sim::ensure_crypto_provider();
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(quick.get(format!("{api}/readyz")).send().await.is_err());

    // The in-process handle is the same knob.
    node.faults().set(splice_sim::Faults::default());
    let t = Instant::now();
    get(&format!("{api}/readyz"), None).await;
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "the delay is gone"
    );

    // Bad fault bodies are JSON 400s.
    assert_error(
        &post(
            &format!("{}/sim/faults", node.url()),
            None,
            json!({"nonsense": 1}),
        )
        .await,
        400,
    );
    node.shutdown().await;
}

#[tokio::test]
async fn faults_from_the_config() {
    let dbs = TestDbs::new("cfgfaults");
    let mut cfg = dbs.sim_config();
    cfg.faults.unhealthy = true;
    cfg.faults.identities_404 = true;
    let node = start(cfg).await;
    assert_error(&get(&format!("{}/readyz", node.api_url()), None).await, 503);
    assert_error(
        &get(
            &format!("{}/v0/admin/participant/identities", node.api_url()),
            Some(&node.admin_token()),
        )
        .await,
        404,
    );
    node.shutdown().await;
}
