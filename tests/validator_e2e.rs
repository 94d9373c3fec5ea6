//! End-to-end tests of the validator admin API client (`splice_dr::validator`) against the
//! simulated validator (splice-sim, in-process, on real Postgres) and small axum servers:
//! every call's happy path, the Splice failure modes mapped to operator messages, the three
//! auth modes, retries and unreachable validators.
//!
//! Needs Postgres 15 with the test role: `sh tests/pg-setup.sh` as root.

mod common;
#[path = "common/sim.rs"]
mod sim;

use sim::*;
use splice_dr::config::{OAuth2Auth, SelfSignedAuth, TokenFileAuth, ValidatorAuth};
use splice_dr::validator::{ValidatorClient, ValidatorError};
use splice_sim::FaultsPatch;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn client(cfg: &splice_dr::config::ValidatorConfig) -> ValidatorClient {
    ValidatorClient::from_config(cfg).expect("client builds")
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// No JWT in the text: every JWT starts with the base64 of `{"`.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The data snapshot at `t` for `migration_id`, streamed into a file of its own.
async fn snapshot(
    c: &ValidatorClient,
    t: &str,
    migration_id: u64,
) -> Result<splice_dr::validator::SnapshotFile, ValidatorError> {
    let dir = tempfile::tempdir().unwrap();
    c.data_snapshot_to_file(t, migration_id, true, &dir.path().join("a.json"))
        .await
}

fn assert_no_token(text: &str) {
    assert!(!text.contains("eyJ"), "a token leaked: {text}");
}

#[tokio::test]
async fn every_call_happy_path() {
    let dbs = SimDbs::new("happy");
    let node = dbs.start().await;
    let c = client(&validator_config(&node.url(), no_auth()));
    assert_eq!(c.auth_mode(), "self_signed");

    assert!(c.ready().await.unwrap());

    let me = c.validator_user().await.unwrap();
    assert_eq!(me.party_id, node.info().party_id);
    assert_eq!(me.user_name, "administrator");

    let (bytes, dump) = c.identities_raw().await.unwrap();
    assert_eq!(dump.id, node.info().participant_uid);
    assert!(!dump.keys.is_empty());
    assert!(!dump.authorized_store_snapshot.is_empty());
    // The exact bytes served, and they parse to the same dump.
    let reparsed: splice_dr::validator::NodeIdentitiesDump =
        serde_json::from_slice(&bytes).unwrap();
    assert_eq!(reparsed, dump);
    assert_eq!(c.identities().await.unwrap(), dump);

    let ts = rfc3339(chrono::Utc::now() - chrono::Duration::seconds(5));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answer.json");
    let got = c.data_snapshot_to_file(&ts, 0, true, &file).await.unwrap();
    let raw = std::fs::read(&file).unwrap();
    assert_eq!(got.bytes, raw.len() as u64);
    assert_eq!(got.sha256, sha256_hex(&raw));
    let snap: splice_dr::validator::DataSnapshotResponse = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        snap.migration_id, 0,
        "the migration id passed is the one served"
    );
    assert_eq!(got.head.migration_id, 0);
    assert_eq!(snap.data_snapshot.migration_id, 0);
    assert_eq!(snap.data_snapshot.participant, dump);
    assert!(!snap.data_snapshot.acs_snapshot.is_empty());
    assert!(!snap.data_snapshot.dars.is_empty());
    // The dump inside the answer, located byte for byte, is the dump served.
    let range = splice_dr::validator::dump_range(&file).unwrap();
    let inner: splice_dr::validator::DomainMigrationDump =
        serde_json::from_slice(&raw[range.start as usize..range.end as usize]).unwrap();
    assert_eq!(inner, snap.data_snapshot);
    let again = dir.path().join("again.json");
    let got = c
        .data_snapshot_to_file(&ts, 1, false, &again)
        .await
        .unwrap();
    assert_eq!(got.head.migration_id, 1);
    assert_eq!(got.head.data_snapshot.migration_id, 1);
    // The file is created new: an existing one is never overwritten (or followed).
    let e = c
        .data_snapshot_to_file(&ts, 1, false, &again)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("again.json"), "{e}");

    let users = c.users().await.unwrap();
    assert!(users.contains(&"administrator".to_string()), "{users:?}");

    let alice = c.onboard_user("alice", None).await.unwrap();
    assert!(alice.starts_with("alice"), "{alice}");
    assert_eq!(c.onboard_user("alice", Some(&alice)).await.unwrap(), alice);
    assert!(c.users().await.unwrap().contains(&"alice".to_string()));
    c.offboard_user("alice").await.unwrap();
    assert!(!c.users().await.unwrap().contains(&"alice".to_string()));
    let e = c.offboard_user("alice").await.unwrap_err();
    assert!(matches!(e, ValidatorError::UserNotFound { .. }), "{e}");
    assert!(e.to_string().contains("\"alice\" is not onboarded"), "{e}");
    // A conflicting onboarding is the validator's 409, passed on with its message.
    c.onboard_user("bob", None).await.unwrap();
    let e = c.onboard_user("bob", Some(&alice)).await.unwrap_err();
    assert!(matches!(e, ValidatorError::Http { status: 409, .. }), "{e}");

    let balance = c.balance().await.unwrap();
    assert!(balance.round >= 0);
    assert!(
        balance.effective_unlocked_qty.parse::<f64>().is_ok(),
        "{balance:?}"
    );

    node.shutdown().await;
}

#[tokio::test]
async fn identities_404_is_the_known_failure() {
    let dbs = SimDbs::new("id404");
    let node = dbs.start().await;
    node.faults().apply(FaultsPatch {
        identities_404: Some(true),
        ..Default::default()
    });
    let c = client(&validator_config(&node.url(), no_auth()));
    let e = c.identities_raw().await.unwrap_err();
    assert!(
        matches!(e, ValidatorError::IdentitiesNotFound { .. }),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with(
            "the identities endpoint answered 404 — backups of identities are broken (a known \
             Splice failure)"
        ),
        "{text}"
    );
    assert!(!e.is_transient());
    node.shutdown().await;
}

#[tokio::test]
async fn data_snapshot_pruned_and_not_caught_up() {
    let dbs = SimDbs::new("snapfaults");
    let node = dbs.start().await;
    let c = client(&validator_config(&node.url(), no_auth()));
    let now = chrono::Utc::now();

    // Pruned past T: 400 → re-onboard.
    node.faults().apply(FaultsPatch {
        pruning_horizon: Some(Some(now)),
        ..Default::default()
    });
    let t = rfc3339(now - chrono::Duration::hours(1));
    let e = snapshot(&c, &t, 0).await.unwrap_err();
    assert!(matches!(e, ValidatorError::PrunedBeyond { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "participant pruned beyond {t}: a snapshot cannot be produced; use the re-onboard flow"
        )),
        "{e}"
    );
    assert!(e.to_string().contains("UNAVAILABLE_ACS_SNAPSHOT"), "{e}");
    assert!(!e.is_transient());

    // Not caught up to T: 429 → retry later (not retried by the client itself).
    node.faults().apply(FaultsPatch {
        pruning_horizon: Some(None),
        lag_secs: Some(3600),
        ..Default::default()
    });
    let t = rfc3339(now - chrono::Duration::minutes(10));
    let e = snapshot(&c, &t, 0).await.unwrap_err();
    assert!(matches!(e, ValidatorError::NotCaughtUp { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "participant has not caught up to {t}; retry later"
        )),
        "{e}"
    );
    assert!(e.is_transient());

    // An earlier timestamp inside the caught-up window works again.
    let t = rfc3339(now - chrono::Duration::hours(2));
    snapshot(&c, &t, 0).await.unwrap();
    node.shutdown().await;
}

/// The data snapshot serves a whole ACS: it has its own limit (`snapshot_timeout`), so a
/// slow but working snapshot is not cut off by the API call limit, while the other calls
/// keep theirs.
#[tokio::test]
async fn the_data_snapshot_has_its_own_timeout() {
    let dbs = SimDbs::new("snaptimeout");
    let node = dbs.start().await;
    let mut cfg = validator_config(&node.url(), no_auth());
    cfg.timeout = std::time::Duration::from_millis(700);
    cfg.snapshot_timeout = std::time::Duration::from_secs(20);
    let c = client(&cfg);
    let t = rfc3339(chrono::Utc::now() - chrono::Duration::minutes(1));
    node.faults().apply(FaultsPatch {
        delay_ms: Some(1500),
        ..Default::default()
    });
    let e = c.identities_raw().await.unwrap_err();
    assert!(matches!(e, ValidatorError::Timeout { .. }), "{e}");
    let snap = snapshot(&c, &t, 0).await.unwrap();
    assert_eq!(snap.head.migration_id, 0);
    node.shutdown().await;
}

#[tokio::test]
async fn self_signed_secret_file_ok_and_wrong_secret_is_401_naming_secret_file() {
    let dbs = SimDbs::new("selfsigned");
    let node = dbs.start().await;
    let dir = tempfile::tempdir().unwrap();

    // Through the config parser: relative secret_file resolved against the config's dir.
    std::fs::write(dir.path().join("hs256"), "unsafe\n").unwrap();
    let toml = format!(
        r#"[repository]
path = "repo"
identities_recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[[node]]
name = "v1"
backend = "postgres"
migration_id = 0

[node.postgres]
url = "postgresql://cnadmin@127.0.0.1:5432/postgres"

[node.validator]
url = "{}"
timeout = "10s"
retries = 1
retry_backoff = "10ms"

[node.validator.auth]
mode = "self_signed"
secret_file = "hs256"
"#,
        node.url()
    );
    let config = splice_dr::config::parse(&toml, &dir.path().join("splice-dr.toml")).unwrap();
    let vcfg = config.nodes[0].validator.clone().unwrap();
    let c = client(&vcfg);
    assert!(!c.identities().await.unwrap().keys.is_empty());

    // Wrong secret: 401, naming secret_file, no token and no secret in the message.
    std::fs::write(dir.path().join("hs256"), "wrong-secret-4242\n").unwrap();
    let e = c.identities().await.unwrap_err();
    assert!(matches!(e, ValidatorError::Unauthorized { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("rejected the credentials"), "{text}");
    assert!(text.contains("node.validator.auth.secret_file"), "{text}");
    assert!(!text.contains("wrong-secret-4242"), "{text}");
    assert_no_token(&text);
    assert_no_token(&format!("{e:?}"));

    // Right secret, wrong audience: 403, naming audience and user.
    let mut wrong_aud = validator_config(&node.url(), no_auth());
    wrong_aud.auth = ValidatorAuth::SelfSigned(SelfSignedAuth {
        secret_file: None,
        secret: Some("unsafe".into()),
        user: "administrator".into(),
        audience: "https://other.example.com".into(),
    });
    let e = client(&wrong_aud).users().await.unwrap_err();
    assert!(matches!(e, ValidatorError::Forbidden { .. }), "{e}");
    assert!(
        e.to_string().contains("node.validator.auth.audience"),
        "{e}"
    );
    assert!(e.to_string().contains("node.validator.auth.user"), "{e}");
    assert_no_token(&e.to_string());

    // A missing secret file is an error naming the key, before any request.
    std::fs::remove_file(dir.path().join("hs256")).unwrap();
    let e = c.users().await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot use node.validator.auth.secret_file"),
        "{e}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn token_file_is_read_on_each_use() {
    let dbs = SimDbs::new("tokenfile");
    let node = dbs.start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{}\n", node.admin_token())).unwrap();
    let c = client(&validator_config(
        &node.url(),
        ValidatorAuth::TokenFile(TokenFileAuth {
            token_file: path.clone(),
        }),
    ));
    assert_eq!(c.auth_mode(), "token_file");
    assert!(!c.users().await.unwrap().is_empty());

    // Replaced by a bad token: re-read, 401, the message names token_file.
    let bad = splice_sim::auth::mint_hs256(b"nope", &serde_json::json!({"sub": "administrator"}));
    std::fs::write(&path, &bad).unwrap();
    let e = c.users().await.unwrap_err();
    assert!(matches!(e, ValidatorError::Unauthorized { .. }), "{e}");
    assert!(
        e.to_string().contains("node.validator.auth.token_file"),
        "{e}"
    );
    assert!(!e.to_string().contains(&bad), "{e}");
    assert_no_token(&e.to_string());

    // Back to a good one: picked up without a new client.
    std::fs::write(&path, node.admin_token()).unwrap();
    c.users().await.unwrap();
    node.shutdown().await;
}

fn oauth2(token_url: &str, secret_file: &std::path::Path) -> ValidatorAuth {
    ValidatorAuth::OAuth2(OAuth2Auth {
        token_url: token_url.to_string(),
        client_id: OAUTH_CLIENT_ID.into(),
        client_secret_file: secret_file.to_path_buf(),
        audience: OAUTH_AUDIENCE.into(),
        scope: Some("daml_ledger_api".into()),
    })
}

#[tokio::test]
async fn oauth2_caches_and_refreshes_expired_tokens() {
    let dbs = SimDbs::new("oauth2exp");
    let node = dbs.start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, format!("{OAUTH_CLIENT_SECRET}\n")).unwrap();

    // Long-lived tokens: one token request for several calls.
    let (server, state) = token_server(3600).await;
    let c = client(&validator_config(
        &node.url(),
        oauth2(&format!("{}/token", server.url()), &secret),
    ));
    assert_eq!(c.auth_mode(), "oauth2");
    c.users().await.unwrap();
    c.identities().await.unwrap();
    c.balance().await.unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), 1);
    let form = state.last_form.lock().unwrap().clone();
    for (k, v) in [
        ("grant_type", "client_credentials"),
        ("client_id", OAUTH_CLIENT_ID),
        ("client_secret", OAUTH_CLIENT_SECRET),
        ("audience", OAUTH_AUDIENCE),
        ("scope", "daml_ledger_api"),
    ] {
        assert!(
            form.iter().any(|(fk, fv)| fk == k && fv == v),
            "{k} missing from {:?}",
            form.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
    }

    // expires_in = 1: two calls 2 s apart need two tokens.
    let (server, state) = token_server(1).await;
    let c = client(&validator_config(
        &node.url(),
        oauth2(&format!("{}/token", server.url()), &secret),
    ));
    c.users().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.users().await.unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), 2);

    // A wrong client secret: the token endpoint's refusal, naming the keys, not the secret.
    std::fs::write(&secret, "not-the-client-secret").unwrap();
    let (server, _state) = token_server(3600).await;
    let c = client(&validator_config(
        &node.url(),
        oauth2(&format!("{}/token", server.url()), &secret),
    ));
    let e = c.users().await.unwrap_err();
    assert!(matches!(e, ValidatorError::TokenEndpoint { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("HTTP 401 (invalid_client"), "{text}");
    assert!(text.contains("client_secret_file"), "{text}");
    assert!(!text.contains("not-the-client-secret"), "{text}");
    node.shutdown().await;
}

#[tokio::test]
async fn oauth2_refreshes_once_on_401() {
    let dbs = SimDbs::new("oauth2401");
    let node = dbs.start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, OAUTH_CLIENT_SECRET).unwrap();
    let (server, state) = token_server(3600).await;
    let c = client(&validator_config(
        &node.url(),
        oauth2(&format!("{}/token", server.url()), &secret),
    ));

    // The first token is refused by the validator: one refresh, then success.
    state.bad_tokens.store(1, Ordering::SeqCst);
    assert!(!c.users().await.unwrap().is_empty());
    assert_eq!(state.requests.load(Ordering::SeqCst), 2);
    // The fresh token is cached.
    c.users().await.unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), 2);

    // Every token refused: exactly one refresh per call, then a 401 naming the client keys.
    let (server, state) = token_server(3600).await;
    state.bad_tokens.store(usize::MAX, Ordering::SeqCst);
    let c = client(&validator_config(
        &node.url(),
        oauth2(&format!("{}/token", server.url()), &secret),
    ));
    let e = c.identities().await.unwrap_err();
    assert_eq!(state.requests.load(Ordering::SeqCst), 2);
    assert!(matches!(e, ValidatorError::Unauthorized { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("node.validator.auth.client_id"), "{text}");
    assert!(text.contains("client_secret_file"), "{text}");
    assert_no_token(&text);
    node.shutdown().await;
}

#[tokio::test]
async fn http_503_is_retried_with_backoff_then_reported() {
    // Always 503: retries + 1 attempts, then the operator message.
    let (server, count) = flaky_validator(usize::MAX).await;
    let mut cfg = validator_config(&server.url(), no_auth());
    cfg.retries = 2;
    let e = client(&cfg).users().await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(
        matches!(e, ValidatorError::Unavailable { attempts: 3, .. }),
        "{e}"
    );
    let text = e.to_string();
    assert!(text.contains("answered 503"), "{text}");
    assert!(text.contains("the validator is starting"), "{text}");
    assert!(e.is_transient());

    // 503 twice, then 200: the call succeeds on the third attempt.
    let (server, count) = flaky_validator(2).await;
    let cfg = validator_config(&server.url(), no_auth());
    assert_eq!(client(&cfg).users().await.unwrap(), vec!["x".to_string()]);
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // readyz 503 is an answer (not ready), not retried.
    let (server, count) = flaky_validator(usize::MAX).await;
    let cfg = validator_config(&server.url(), no_auth());
    assert!(!client(&cfg).ready().await.unwrap());
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn sim_faults_unhealthy_and_slow() {
    let dbs = SimDbs::new("slow");
    let node = dbs.start().await;
    let mut cfg = validator_config(&node.url(), no_auth());

    node.faults().apply(FaultsPatch {
        unhealthy: Some(true),
        ..Default::default()
    });
    assert!(!client(&cfg).ready().await.unwrap());
    node.faults().apply(FaultsPatch {
        unhealthy: Some(false),
        delay_ms: Some(1500),
        ..Default::default()
    });
    cfg.timeout = Duration::from_millis(300);
    let e = client(&cfg).users().await.unwrap_err();
    assert!(matches!(e, ValidatorError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("did not answer"), "{e}");
    assert!(e.to_string().contains("300ms"), "{e}");

    cfg.timeout = Duration::from_secs(10);
    assert!(client(&cfg).ready().await.unwrap());
    node.faults().apply(FaultsPatch {
        delay_ms: Some(0),
        ..Default::default()
    });
    node.shutdown().await;
}

#[tokio::test]
async fn a_validator_that_is_down_is_unreachable_after_n_attempts() {
    // A node that was serving, then stopped.
    let dbs = SimDbs::new("down");
    let node = dbs.start().await;
    let url = node.url();
    node.shutdown().await;
    let mut cfg = validator_config(&url, no_auth());
    cfg.retries = 3;
    let c = client(&cfg);
    let started = std::time::Instant::now();
    let e = c.identities().await.unwrap_err();
    assert!(
        matches!(e, ValidatorError::Unreachable { attempts: 4, .. }),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(&format!(
            "validator at {url} is unreachable after 4 attempts"
        )),
        "{e}"
    );
    assert_no_token(&e.to_string());
    // 10 + 20 + 40 ms of backoff.
    assert!(started.elapsed() >= Duration::from_millis(70));
    let e = c.ready().await.unwrap_err();
    assert!(matches!(e, ValidatorError::Unreachable { .. }), "{e}");

    // Never listened at all.
    let url = format!("http://127.0.0.1:{}", closed_port());
    let mut cfg = validator_config(&url, no_auth());
    cfg.retries = 0;
    let e = client(&cfg).users().await.unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "validator at {url} is unreachable after 1 attempt:"
        )),
        "{e}"
    );
}
