//! The simulated SV: balances survive re-onboarding with a new participant id; a reused
//! participant id is refused; restarts of the same node are accepted.

mod common;

use common::schema::{self, check};
use common::*;
use serde_json::json;
use splice_sim::StartMode;

#[tokio::test]
async fn reonboarding_keeps_the_balance_and_burns_the_old_participant_id() {
    let dbs = TestDbs::new("reonb");
    let sv = start_sv(dbs.sv_config()).await;
    let dir = tempfile::tempdir().unwrap();

    // The original node, registered with the SV.
    let mut old_cfg = dbs.sim_config();
    old_cfg.sv_url = Some(sv.url());
    old_cfg.participant_id = Some("validator-1".into());
    let old = start(old_cfg.clone()).await;
    let party = old.info().party_id.clone();
    let token = old.admin_token();

    // The SV sets the party's balance; the wallet reads it through the SV.
    let (s, b) = post(
        &format!("{}/sv/parties/{party}/balance", sv.url()),
        None,
        json!({"effective_unlocked_qty": "1234.5", "total_holding_fees": "0.25", "round": 17}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_error(
        &post(
            &format!("{}/sv/parties/{party}/balance", sv.url()),
            None,
            json!({"effective_unlocked_qty": "lots"}),
        )
        .await,
        400,
    );
    let (s, balance) = get(
        &format!("{}/v0/wallet/balance", old.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(s, 200);
    check(&balance, &schema::balance()).unwrap();
    assert_eq!(balance["effective_unlocked_qty"], "1234.5000000000");
    assert_eq!(balance["round"], 17);

    // Back up the identities, then lose the node entirely.
    let (s, ids) = get(
        &format!("{}/v0/admin/participant/identities", old.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(s, 200);
    let ids_path = dir.path().join("identities.json");
    std::fs::write(&ids_path, serde_json::to_vec(&ids).unwrap()).unwrap();
    old.shutdown().await;

    // A fresh node reusing the old participant id: refused by the SV.
    let mut reuse = dbs.node_config("reuse_");
    reuse.sv_url = Some(sv.url());
    reuse.start_mode = StartMode::IdentitiesDump {
        path: ids_path.clone(),
    };
    reuse.participant_id = Some("validator-1".into());
    let err = try_start(reuse).await.err().expect("refused");
    assert!(
        matches!(err, splice_sim::SimError::ParticipantIdRefused { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("validator-1"), "{err}");

    // A fresh node with a NEW participant id: same party, balance back from the SV.
    let mut fresh = dbs.node_config("fresh_");
    fresh.sv_url = Some(sv.url());
    fresh.start_mode = StartMode::IdentitiesDump {
        path: ids_path.clone(),
    };
    fresh.participant_id = Some("validator-2".into());
    let node = start(fresh.clone()).await;
    assert_eq!(node.info().start, "imported-identities");
    assert_eq!(node.info().party_id, party);
    assert_eq!(node.info().participant_id, "validator-2");
    let (_, balance) = get(
        &format!("{}/v0/wallet/balance", node.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(balance["effective_unlocked_qty"], "1234.5000000000");
    let (_, new_ids) = get(
        &format!("{}/v0/admin/participant/identities", node.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(new_ids["keys"], ids["keys"]);
    assert_eq!(
        new_ids["id"].as_str().unwrap().split_once("::").unwrap().0,
        "validator-2"
    );
    node.shutdown().await;

    // The re-onboarded node restarts with the same -P: accepted (same node instance).
    let node = start(fresh).await;
    assert_eq!(node.info().start, "restarted");
    node.shutdown().await;

    // The SV remembers both ids.
    let (_, list) = get(&format!("{}/sv/participants", sv.url()), None).await;
    let ids: Vec<&str> = list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["participant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["validator-1", "validator-2"]);
    assert_eq!(get(&format!("{}/sv/readyz", sv.url()), None).await.0, 200);
    sv.shutdown().await;
}

#[tokio::test]
async fn in_process_sv_with_sv_listen() {
    let dbs = TestDbs::new("svlisten");
    let mut cfg = dbs.sim_config();
    cfg.sv_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.sv_db = dbs.name("sv");
    let node = start(cfg).await;
    let sv_url = node.sv().expect("in-process sv").url();
    let party = node.info().party_id.clone();
    let (s, _) = post(
        &format!("{sv_url}/sv/parties/{party}/balance"),
        None,
        json!({"effective_unlocked_qty": "5"}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, b) = get(
        &format!("{}/v0/wallet/balance", node.api_url()),
        Some(&node.admin_token()),
    )
    .await;
    assert_eq!(b["effective_unlocked_qty"], "5.0000000000");
    // An unknown party holds nothing.
    let (s, b) = get(&format!("{sv_url}/sv/parties/nobody::1220/balance"), None).await;
    assert_eq!(
        (s, b["effective_unlocked_qty"].as_str()),
        (200, Some("0.0000000000"))
    );
    node.shutdown().await;
}

#[tokio::test]
async fn unreachable_sv_fails_the_start() {
    let dbs = TestDbs::new("svdown");
    let mut cfg = dbs.sim_config();
    // A port nothing listens on (bound then released).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    cfg.sv_url = Some(format!("http://127.0.0.1:{port}"));
    cfg.sv_patience = std::time::Duration::from_millis(500);
    let err = try_start(cfg).await.err().expect("fails").to_string();
    assert!(err.contains("unreachable"), "{err}");
}
