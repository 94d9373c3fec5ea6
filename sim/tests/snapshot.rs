//! The data-snapshot endpoint (400 / 429 rules, default migration id) and the migrating
//! start mode that consumes its output.

mod common;

use chrono::{Duration, SecondsFormat, Utc};
use common::schema::{self, check};
use common::*;
use serde_json::json;
use splice_sim::StartMode;

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn snapshot_url(api: &str, t: &str, extra: &str) -> String {
    format!("{api}/v0/admin/domain/data-snapshot?timestamp={t}&force=true{extra}")
}

#[tokio::test]
async fn data_snapshot_rules() {
    let dbs = TestDbs::new("snap");
    let mut cfg = dbs.sim_config();
    cfg.migration_id = 4;
    let node = start(cfg).await;
    let api = node.api_url();
    let token = node.admin_token();
    let now = Utc::now();

    // OK: default migration id is configured + 1.
    let (s, body) = get(
        &snapshot_url(&api, &ts(now - Duration::seconds(1)), ""),
        Some(&token),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    check(&body, &schema::data_snapshot_response()).unwrap();
    assert_eq!(body["migration_id"], 5);
    assert_eq!(body["data_snapshot"]["migration_id"], 5);
    assert_eq!(
        body["data_snapshot"]["participant"]["id"],
        node.info().participant_uid.as_str()
    );
    assert!(!body["data_snapshot"]["dars"].as_array().unwrap().is_empty());
    let users = &body["data_snapshot"]["participant_users"]["users"];
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == "administrator"));

    // Explicit migration id.
    let (s, body) = get(
        &snapshot_url(&api, &ts(now - Duration::seconds(1)), "&migration_id=4"),
        Some(&token),
    )
    .await;
    assert_eq!((s, body["migration_id"].as_i64()), (200, Some(4)));

    // The ACS is as of the timestamp: an hour ago nothing existed yet.
    let (_, early) = get(
        &snapshot_url(&api, &ts(now - Duration::hours(1)), ""),
        Some(&token),
    )
    .await;
    let (_, late) = get(&snapshot_url(&api, &ts(now), ""), Some(&token)).await;
    assert!(
        early["data_snapshot"]["acs_snapshot"]
            .as_str()
            .unwrap()
            .len()
            < late["data_snapshot"]["acs_snapshot"]
                .as_str()
                .unwrap()
                .len()
    );

    // 400 UNAVAILABLE_ACS_SNAPSHOT before the pruning horizon (default retention: 30 days).
    let msg = assert_error(
        &get(
            &snapshot_url(&api, &ts(now - Duration::days(31)), ""),
            Some(&token),
        )
        .await,
        400,
    );
    assert!(msg.starts_with("UNAVAILABLE_ACS_SNAPSHOT"), "{msg}");
    // Moving the horizon.
    set_faults(
        &node,
        json!({"pruning_horizon": ts(now - Duration::minutes(10))}),
    )
    .await;
    let msg = assert_error(
        &get(
            &snapshot_url(&api, &ts(now - Duration::minutes(20)), ""),
            Some(&token),
        )
        .await,
        400,
    );
    assert!(msg.starts_with("UNAVAILABLE_ACS_SNAPSHOT"), "{msg}");
    set_faults(&node, json!({"pruning_horizon": null})).await;
    assert_eq!(
        get(
            &snapshot_url(&api, &ts(now - Duration::minutes(20)), ""),
            Some(&token)
        )
        .await
        .0,
        200
    );

    // 429 INVALID_ACS_SNAPSHOT_TIMESTAMP after the caught-up time.
    let msg = assert_error(
        &get(
            &snapshot_url(&api, &ts(Utc::now() + Duration::minutes(5)), ""),
            Some(&token),
        )
        .await,
        429,
    );
    assert!(msg.starts_with("INVALID_ACS_SNAPSHOT_TIMESTAMP"), "{msg}");
    set_faults(&node, json!({"lag_secs": 3600})).await;
    let msg = assert_error(
        &get(
            &snapshot_url(&api, &ts(Utc::now() - Duration::minutes(30)), ""),
            Some(&token),
        )
        .await,
        429,
    );
    assert!(msg.starts_with("INVALID_ACS_SNAPSHOT_TIMESTAMP"), "{msg}");
    assert_eq!(
        get(
            &snapshot_url(&api, &ts(Utc::now() - Duration::minutes(90)), ""),
            Some(&token)
        )
        .await
        .0,
        200
    );

    // Bad parameters.
    assert_error(
        &get(
            &format!("{api}/v0/admin/domain/data-snapshot"),
            Some(&token),
        )
        .await,
        400,
    );
    assert_error(
        &get(&snapshot_url(&api, "yesterday", ""), Some(&token)).await,
        400,
    );
    assert_error(
        &get(
            &snapshot_url(&api, &ts(now), "&migration_id=x"),
            Some(&token),
        )
        .await,
        400,
    );
    node.shutdown().await;
}

/// Takes a dump from a node at migration 0, then starts migration 1 from it.
#[tokio::test]
async fn migrating_start_accepts_a_matching_dump_and_refuses_others() {
    let dbs = TestDbs::new("migr");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = dbs.sim_config();
    // Participant DBs follow the compose naming, inside this test's prefix.
    cfg.participant_db = Some(dbs.name("participant-0"));
    let node = start(cfg.clone()).await;
    let token = node.admin_token();
    let (s, _) = post(
        &format!("{}/v0/admin/users", node.api_url()),
        Some(&token),
        json!({"name": "dave"}),
    )
    .await;
    assert_eq!(s, 200);
    let t = ts(Utc::now());
    let (s, body) = get(
        &snapshot_url(&node.api_url(), &t, "&migration_id=1"),
        Some(&token),
    )
    .await;
    assert_eq!(s, 200);
    let old = node.info().clone();
    node.shutdown().await;
    let dump_path = dir.path().join("domain_migration_dump.json");

    // Migration id 1 without -M: refused.
    let mut next = cfg.clone();
    next.migration_id = 1;
    next.participant_db = Some(dbs.name("participant-1"));
    let err = try_start(next.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("Migration ID was incremented") && err.contains("no migration dump"),
        "{err}"
    );

    // -M but no dump file: refused with the real message.
    next.start_mode = StartMode::Migrating {
        dump_path: dump_path.clone(),
    };
    let err = try_start(next.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("Migration ID was incremented") && err.contains("no migration dump"),
        "{err}"
    );

    // -M with a dump for another migration id: refused, naming both ids.
    let mut wrong = body["data_snapshot"].clone();
    wrong["migration_id"] = json!(7);
    std::fs::write(&dump_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
    let err = try_start(next.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("migration id 7") && err.contains("migration id 1"),
        "{err}"
    );

    // A matching dump: imported into the fresh participant DB.
    std::fs::write(
        &dump_path,
        serde_json::to_vec(&body["data_snapshot"]).unwrap(),
    )
    .unwrap();
    let node = start(next.clone()).await;
    assert_eq!(node.info().start, "migrated");
    assert_eq!(node.info().party_id, old.party_id);
    assert_eq!(node.info().participant_uid, old.participant_uid);
    let (_, ids) = get(
        &format!("{}/v0/admin/participant/identities", node.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(ids, body["data_snapshot"]["participant"]);
    let (_, list) = get(&format!("{}/v0/admin/users", node.api_url()), Some(&token)).await;
    assert_eq!(list["usernames"], json!(["administrator", "dave"]));
    let p = connect_db(next.participant_db.as_deref().unwrap())
        .await
        .unwrap();
    let n: i64 = p
        .query_one("SELECT count(*) FROM contracts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    node.shutdown().await;

    // Restarting with -M still set does not import again; without it, fine too.
    let node = start(next.clone()).await;
    assert_eq!(node.info().start, "restarted");
    node.shutdown().await;
    next.start_mode = StartMode::Fresh;
    let node = start(next.clone()).await;
    assert_eq!(node.info().start, "restarted");
    node.shutdown().await;

    // Going back to migration 0 is refused.
    let err = try_start(cfg).await.err().expect("refused").to_string();
    assert!(err.contains("lower than"), "{err}");
}
