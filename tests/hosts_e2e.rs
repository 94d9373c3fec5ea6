//! Two live copies of one identity are prevented (issue #14 item 7), end to end with the
//! real binary against splice-sim on the bare-Postgres backend. Every backup records the
//! host that took it (`state_dir/host-id`) and the node's address as other hosts reach it
//! (`[node.validator] public_url`); a restore of another host's backup, or of one that
//! does not say whose it is, needs `--old-node-stopped` (journaled) and refuses
//! while the old node's address answers. "Another host" is made the way it happens: the
//! restoring daemon's state directory holds another host id (or none: a fresh host).
//! The re-onboard side and the registry that travels with backups are in recovery_e2e.

mod common;
#[path = "common/compose.rs"]
mod compose;
#[path = "common/sim.rs"]
mod sim;

use common::*;
use sim::*;
use splice_dr_protocol::{RunDetail, RunState};

/// Another host's id, as its `state_dir/host-id` would hold it.
const OTHER_HOST: &str = "0123456789abcdef0123456789abcdef";

/// A site for the simulated node whose backups record `public_url` as the node's address
/// for other hosts: the old node, as a restore elsewhere sees it.
fn site_for(node: &splice_sim::RunningSim, public_url: &str) -> Site {
    let public = if public_url.is_empty() {
        String::new()
    } else {
        format!("public_url = \"{public_url}\"\n")
    };
    sim_site(node, "", &format!("{public}retries = 1\n"))
}

use sim::site_cli as cli;

async fn last_restore(site: &Site) -> RunDetail {
    let config = site.config.clone();
    tokio::task::spawn_blocking(move || compose::last_run(&config, "restore"))
        .await
        .unwrap()
}

fn manifest(site: &Site, id: &str) -> splice_dr_repo::Manifest {
    let path = site.path("repo").join(id).join("manifest.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A refused run stopped at the host check: nothing after it ran, nothing was changed.
fn assert_stopped_at_the_host_check(run: &RunDetail) {
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    let last = run.steps.last().expect("a step");
    assert!(
        last.name.starts_with("check the old node is stopped"),
        "{:?}",
        run.steps.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(
        !run.steps.iter().any(|s| s.name.starts_with("verify")
            || s.name.starts_with("scale")
            || s.name.starts_with("restore")),
        "nothing after the check: {:?}",
        run.steps.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

/// The node's databases and the staging/kept copies a restore would leave.
async fn databases(node: &splice_sim::RunningSim) -> Vec<String> {
    let prefix = node
        .info()
        .validator_db
        .trim_end_matches("_validator")
        .to_string();
    tokio::task::spawn_blocking(move || databases_like(&prefix))
        .await
        .unwrap()
}

async fn readyz_stub() -> Served {
    use axum::routing::get;
    Served::start(axum::Router::new().route("/api/validator/readyz", get(|| async { "ok" }))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_s_backup_needs_the_confirmation_and_an_old_node_that_does_not_answer() {
    let dbs = SimDbs::new("hosts");
    let node = dbs.start().await;
    // The old node, as this host reaches it: answering until it is stopped below.
    let old_node = readyz_stub().await;
    let old_url = old_node.url();
    let site = site_for(&node, &old_url);

    let out = cli(&site, &["backup"]).await;
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let host_id = std::fs::read_to_string(site.path("state/host-id")).unwrap();
    let taken = manifest(&site, &id)
        .host
        .expect("the backup records its host");
    assert_eq!(taken.id, host_id.trim());
    assert_eq!(taken.node_url.as_deref(), Some(old_url.as_str()));

    // Same host: no confirmation, no check, as before.
    let out = cli(&site, &["restore", "--backup", &id, "--yes"]).await;
    assert!(out.status.success(), "same-host restore: {}", text(&out));
    let run = last_restore(&site).await;
    assert!(
        !run.steps.iter().any(|s| s.name.contains("old node")),
        "{:?}",
        run.steps
    );

    // The same repository seen from another host.
    std::fs::write(site.path("state/host-id"), format!("{OTHER_HOST}\n")).unwrap();
    let before = databases(&node).await;

    let out = cli(&site, &["restore", "--backup", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("was taken on another host"), "{msg}");
    assert!(msg.contains(host_id.trim()), "names the taking host: {msg}");
    assert!(msg.contains("--param old_node_stopped=true"), "{msg}");
    assert!(msg.contains("Nothing was changed"), "{msg}");
    assert_stopped_at_the_host_check(&last_restore(&site).await);

    // Confirmed, but the old node still answers at its recorded address.
    let confirmed = ["restore", "--backup", &id, "--yes", "--old-node-stopped"];
    let out = cli(&site, &confirmed).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains(&format!("the old node still answers at {old_url}")),
        "{msg}"
    );
    assert!(msg.contains("HTTP 200"), "{msg}");
    let run = last_restore(&site).await;
    assert_stopped_at_the_host_check(&run);
    assert_eq!(run.params["old_node_stopped"], true, "journaled");

    // An address the operator names is checked instead (here: this host's own node).
    let named = node.url();
    let mut args = confirmed.to_vec();
    args.extend(["--old-node-url", &named]);
    let out = cli(&site, &args).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("still answers at {}", node.url())),
        "{}",
        text(&out)
    );
    assert_eq!(databases(&node).await, before, "refusals changed nothing");

    // The old node is stopped: confirmed and silent, the restore proceeds.
    drop(old_node);
    wait_for(
        std::time::Duration::from_secs(10),
        "the old node's port to close",
        || std::net::TcpStream::connect(old_url.trim_start_matches("http://")).is_err(),
    );
    let out = cli(&site, &confirmed).await;
    assert!(out.status.success(), "confirmed restore: {}", text(&out));
    let run = last_restore(&site).await;
    assert_eq!(run.state, RunState::Succeeded);
    let check = run
        .steps
        .iter()
        .find(|s| s.name.starts_with("check the old node is stopped"))
        .expect("the check is a journaled step");
    let log = check.log.join("\n");
    assert!(
        log.contains("the operator confirms the old node is stopped"),
        "{log}"
    );
    assert!(
        log.contains(&format!("the old node does not answer at {old_url}")),
        "{log}"
    );
    assert_eq!(run.params["old_node_stopped"], true);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_does_not_say_whose_it_is_restores_on_a_fresh_host_with_the_confirmation() {
    let dbs = SimDbs::new("hostless");
    // Its validator url is loopback and there is no public_url: no address is recorded.
    let (node, public_url) = (dbs.start().await, "");
    let site = site_for(&node, public_url);
    let out = cli(&site, &["backup"]).await;
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        manifest(&site, &id).host.and_then(|h| h.node_url),
        None,
        "a loopback url is no address for other hosts"
    );

    // A backup made before splice-dr recorded hosts (still signed by this site) ...
    let mpath = site.path("repo").join(&id).join("manifest.json");
    let mut m = manifest(&site, &id);
    m.host = None;
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    resign(&mpath, &site.path("state/keys/signing.key"));
    // ... on a host whose identity is new.
    std::fs::remove_file(site.path("state/host-id")).unwrap();

    let out = cli(&site, &["restore", "--backup", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("does not record the host that took it"),
        "{}",
        text(&out)
    );
    assert_stopped_at_the_host_check(&last_restore(&site).await);

    let out = cli(
        &site,
        &["restore", "--backup", &id, "--yes", "--old-node-stopped"],
    )
    .await;
    assert!(out.status.success(), "confirmed restore: {}", text(&out));
    let run = last_restore(&site).await;
    let log: String = run
        .steps
        .iter()
        .flat_map(|s| s.log.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(log.contains("records no address"), "{log}");
    assert!(log.contains("relying on the confirmation"), "{log}");
    node.shutdown().await;
}
