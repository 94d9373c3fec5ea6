//! The validator API's endpoints: happy paths, error paths and auth, with response bodies
//! checked against the Splice OpenAPI shapes (tests/common/schema.rs).

mod common;

use common::schema::{self, check};
use common::*;
use serde_json::json;
use splice_sim::auth::mint_hs256;

const AUD: &str = "https://validator.example.com";

#[tokio::test]
async fn public_and_admin_endpoints_follow_the_spec() {
    let dbs = TestDbs::new("api");
    let node = start(dbs.sim_config()).await;
    let api = node.api_url();
    let token = node.admin_token();

    assert_eq!(get(&format!("{api}/readyz"), None).await.0, 200);
    assert_eq!(get(&format!("{api}/livez"), None).await.0, 200);

    let (s, user) = get(&format!("{api}/v0/validator-user"), None).await;
    assert_eq!(s, 200);
    check(&user, &schema::validator_user_info()).unwrap();
    assert_eq!(user["user_name"], "administrator");
    assert_eq!(user["featured"], false);
    let party = user["party_id"].as_str().unwrap().to_string();
    assert!(party.starts_with("splice-sim-validator::1220"), "{party}");
    assert_eq!(party, node.info().party_id);

    let (s, ids) = get(
        &format!("{api}/v0/admin/participant/identities"),
        Some(&token),
    )
    .await;
    assert_eq!(s, 200);
    check(&ids, &schema::node_identities_dump()).unwrap();
    assert_eq!(ids["id"], node.info().participant_uid.as_str());
    assert_eq!(ids["keys"].as_array().unwrap().len(), 3);

    let (s, users) = get(&format!("{api}/v0/admin/users"), Some(&token)).await;
    assert_eq!(s, 200);
    check(&users, &schema::list_users()).unwrap();
    assert_eq!(users["usernames"], json!(["administrator"]));

    let (s, balance) = get(&format!("{api}/v0/wallet/balance"), Some(&token)).await;
    assert_eq!(s, 200);
    check(&balance, &schema::balance()).unwrap();
    assert_eq!(balance["effective_unlocked_qty"], "0.0000000000");

    // Unknown paths and wrong methods answer JSON errors too.
    assert_error(&get(&format!("{api}/v0/nope"), None).await, 404);
    assert_error(&get(&format!("{}/nope", node.url()), None).await, 404);
    assert_error(&post(&format!("{api}/readyz"), None, json!({})).await, 405);
    node.shutdown().await;
}

#[tokio::test]
async fn users_onboard_list_offboard_persist_in_the_validator_db() {
    let dbs = TestDbs::new("users");
    let cfg = dbs.sim_config();
    let vdb = cfg.validator_db.clone();
    let node = start(cfg).await;
    let api = node.api_url();
    let token = node.admin_token();
    let users_url = format!("{api}/v0/admin/users");

    let (s, body) = post(&users_url, Some(&token), json!({"name": "alice"})).await;
    assert_eq!(s, 200, "{body}");
    check(&body, &schema::onboard_user()).unwrap();
    let alice_party = body["party_id"].as_str().unwrap().to_string();
    let fingerprint = node.info().party_id.split_once("::").unwrap().1;
    assert_eq!(alice_party, format!("alice::{fingerprint}"));

    // With an explicit party; onboarding again with the same party is idempotent.
    let (s, body) = post(
        &users_url,
        Some(&token),
        json!({"name": "bob", "party_id": "bob::1220ff"}),
    )
    .await;
    assert_eq!((s, body["party_id"].as_str()), (200, Some("bob::1220ff")));
    let (s, _) = post(
        &users_url,
        Some(&token),
        json!({"name": "bob", "party_id": "bob::1220ff"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_error(
        &post(
            &users_url,
            Some(&token),
            json!({"name": "bob", "party_id": "bob::1220aa"}),
        )
        .await,
        409,
    );
    assert_error(
        &post(&users_url, Some(&token), json!({"name": " "})).await,
        400,
    );
    assert_error(
        &post(&users_url, Some(&token), json!({"party_id": "x"})).await,
        400,
    );

    let (_, list) = get(&users_url, Some(&token)).await;
    assert_eq!(list["usernames"], json!(["administrator", "alice", "bob"]));

    // Persisted in the validator DB's users table.
    let v = connect_db(&vdb).await.unwrap();
    let row = v
        .query_one("SELECT party_id FROM users WHERE name = 'alice'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), alice_party);

    // A wallet user sees its own balance; an unknown user gets 404.
    let (s, b) = get(
        &format!("{api}/v0/wallet/balance"),
        Some(&node.token_for("alice")),
    )
    .await;
    assert_eq!(s, 200);
    check(&b, &schema::balance()).unwrap();
    assert_error(
        &get(
            &format!("{api}/v0/wallet/balance"),
            Some(&node.token_for("nobody")),
        )
        .await,
        404,
    );

    let offboard = |u: &str| format!("{api}/v0/admin/users/offboard?username={u}");
    let (s, body) = post(&offboard("alice"), Some(&token), json!({})).await;
    assert_eq!((s, body), (200, serde_json::Value::Null));
    assert_error(
        &post(&offboard("alice"), Some(&token), json!({})).await,
        404,
    );
    assert_error(
        &post(
            &format!("{api}/v0/admin/users/offboard"),
            Some(&token),
            json!({}),
        )
        .await,
        400,
    );
    let (_, list) = get(&users_url, Some(&token)).await;
    assert_eq!(list["usernames"], json!(["administrator", "bob"]));
    node.shutdown().await;
}

#[tokio::test]
async fn auth_rules_401_403() {
    let dbs = TestDbs::new("auth");
    let node = start(dbs.sim_config()).await;
    let api = node.api_url();
    let admin_urls = [
        format!("{api}/v0/admin/users"),
        format!("{api}/v0/admin/participant/identities"),
        format!("{api}/v0/admin/domain/data-snapshot?timestamp=2026-01-01T00:00:00Z"),
        format!("{api}/v0/wallet/balance"),
    ];
    let now = chrono::Utc::now().timestamp();
    let cases: Vec<(Option<String>, u16)> = vec![
        (None, 401),
        (Some("not-a-jwt".into()), 401),
        (
            Some(mint_hs256(
                b"wrong-secret",
                &json!({"sub": "administrator", "aud": AUD}),
            )),
            401,
        ),
        (
            Some(mint_hs256(
                b"unsafe",
                &json!({"sub": "administrator", "aud": AUD, "exp": now - 10}),
            )),
            401,
        ),
        (
            Some(mint_hs256(
                b"unsafe",
                &json!({"sub": "administrator", "aud": "https://other"}),
            )),
            403,
        ),
        (
            Some(mint_hs256(b"unsafe", &json!({"sub": "administrator"}))),
            403,
        ),
    ];
    for url in &admin_urls {
        for (token, status) in &cases {
            let got = get(url, token.as_deref()).await;
            assert_error(&got, *status);
        }
    }
    // Not expired yet, audience in an array: accepted.
    let ok = mint_hs256(
        b"unsafe",
        &json!({"sub": "administrator", "aud": ["x", AUD], "exp": now + 600}),
    );
    assert_eq!(get(&admin_urls[0], Some(&ok)).await.0, 200);
    // Independent minting of the real no-auth token works.
    assert_eq!(
        get(&admin_urls[0], Some(&default_admin_token())).await.0,
        200
    );
    // Admin calls need the operator user: another user is forbidden.
    assert_error(
        &get(&admin_urls[0], Some(&node.token_for("alice"))).await,
        403,
    );
    // Raw header without the Bearer scheme.
    let resp = http()
        .get(&admin_urls[0])
        .header("authorization", ok)
        .send()
        .await
        .unwrap();
    assert_error(&parts(resp).await, 401);
    // validator-user needs no auth.
    assert_eq!(get(&format!("{api}/v0/validator-user"), None).await.0, 200);
    node.shutdown().await;
}

#[tokio::test]
async fn configured_secret_and_audience() {
    let dbs = TestDbs::new("authcfg");
    let mut cfg = dbs.sim_config();
    cfg.auth.secret = b"s3cret".to_vec();
    cfg.auth.audience = "https://my.validator".into();
    cfg.validator_user = "operator".into();
    let node = start(cfg).await;
    let url = format!("{}/v0/admin/users", node.api_url());
    let good = mint_hs256(
        b"s3cret",
        &json!({"sub": "operator", "aud": "https://my.validator"}),
    );
    assert_eq!(get(&url, Some(&good)).await.0, 200);
    assert_eq!(good.split('.').count(), 3);
    assert_eq!(get(&url, Some(&node.admin_token())).await.0, 200);
    assert_error(&get(&url, Some(&default_admin_token())).await, 401);
    let wrong_aud = mint_hs256(b"s3cret", &json!({"sub": "operator", "aud": AUD}));
    assert_error(&get(&url, Some(&wrong_aud)).await, 403);
    let (_, user) = get(&format!("{}/v0/validator-user", node.api_url()), None).await;
    assert_eq!(user["user_name"], "operator");
    node.shutdown().await;
}

#[tokio::test]
async fn state_comes_from_postgres_and_survives_restart() {
    let dbs = TestDbs::new("restart");
    let mut cfg = dbs.sim_config();
    cfg.identity_seed = Some("fixed-seed".into());
    let node = start(cfg.clone()).await;
    let token = node.admin_token();
    let (s, _) = post(
        &format!("{}/v0/admin/users", node.api_url()),
        Some(&token),
        json!({"name": "carol"}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, ids_before) = get(
        &format!("{}/v0/admin/participant/identities", node.api_url()),
        Some(&token),
    )
    .await;
    let info = node.info().clone();
    node.shutdown().await;

    // Same databases, new process: same identity, users still there.
    cfg.identity_seed = Some("another-seed-is-ignored-on-restart".into());
    let node = start(cfg.clone()).await;
    assert_eq!(node.info().start, "restarted");
    assert_eq!(node.info().party_id, info.party_id);
    let (_, ids_after) = get(
        &format!("{}/v0/admin/participant/identities", node.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(ids_before, ids_after);
    let (_, list) = get(&format!("{}/v0/admin/users", node.api_url()), Some(&token)).await;
    assert_eq!(list["usernames"], json!(["administrator", "carol"]));

    // Editing the DB changes what is served (as a restore would).
    let v = connect_db(&cfg.validator_db).await.unwrap();
    v.execute("DELETE FROM users WHERE name = 'carol'", &[])
        .await
        .unwrap();
    let p = connect_db(cfg.participant_db.as_deref().unwrap())
        .await
        .unwrap();
    p.execute(
        "UPDATE party_balances SET effective_unlocked_qty = 42.5",
        &[],
    )
    .await
    .unwrap();
    let (_, list) = get(&format!("{}/v0/admin/users", node.api_url()), Some(&token)).await;
    assert_eq!(list["usernames"], json!(["administrator"]));
    let (_, b) = get(
        &format!("{}/v0/wallet/balance", node.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(b["effective_unlocked_qty"], "42.5000000000");
    node.shutdown().await;

    // A restart under another participant id is refused: the participant DB has its id.
    cfg.participant_id = Some("someone-else".into());
    let err = try_start(cfg).await.err().expect("refused").to_string();
    assert!(
        err.contains("someone-else") && err.contains("initialized with participant id"),
        "{err}"
    );
}
