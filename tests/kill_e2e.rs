//! Kill at every step (issue #12): runs a flow, SIGKILLs the daemon at each journaled step
//! boundary in turn (and mid-step in the long dump/restore steps), restarts it, and checks
//! that the run is `interrupted` and that start-up recovery leaves the node exactly as
//! before the run or fully restored (row digests of the live databases), its components
//! running, no scratch data left — kept data only when `status` names the exact command
//! that removes it (which the test runs) — and the participant-id registry untouched.
//!
//! Needs a debug build of the daemon (the pause hook is compiled only there).

mod common;

use common::kill::*;
use common::*;
use serde_json::Value;
use splice_dr_protocol::{LeftoversView, StatusView};
use std::path::Path;
use std::time::Duration;

/// Operator stop/start commands that mark a component up with a file.
fn components(flags: &Path) -> String {
    ["validator", "participant"]
        .iter()
        .map(|c| {
            let f = flags.join(format!("{c}.up"));
            format!(
                "[node.postgres.components.{c}]\nstop_command = \"rm -f {f}\"\nstart_command = \"touch {f}\"\n\n",
                f = f.display()
            )
        })
        .collect()
}

fn components_up(flags: &Path) -> bool {
    ["validator", "participant"]
        .iter()
        .all(|c| flags.join(format!("{c}.up")).exists())
}

/// Damages the node until its data differs from the backup; returns its digest.
fn diverge(dbs: &NodeDbs, backup: &[(String, String)]) -> Vec<(String, String)> {
    dbs.damage();
    let before = dbs.fingerprint();
    assert_ne!(
        before, backup,
        "the node must differ from the backup before the run"
    );
    before
}

/// The first node's leftovers as `status` shows them (none when the backend did not
/// answer).
fn leftovers(status: &StatusView) -> LeftoversView {
    status.nodes[0].leftovers.clone().unwrap_or_default()
}

/// Every database left next to the live ones must be kept data that `status` lists with
/// the exact command removing it; runs that command and checks it worked.
fn remove_listed_leftovers(site: &Site, dbs: &NodeDbs, point: KillPoint) -> usize {
    let prefix = dbs.validator.trim_end_matches("_v");
    let extra: Vec<String> = databases_like(prefix)
        .into_iter()
        .filter(|d| *d != dbs.validator && *d != dbs.participant)
        .collect();
    if extra.is_empty() {
        return 0;
    }
    let left = &leftovers(&site.json(&["status"]));
    for db in &extra {
        assert!(
            left.found.kept.iter().any(|k| k == db),
            "{point:?}: {db} is left behind and `status` does not list it as kept: {left:?}"
        );
        let cmd = left.remove_commands.get(db).unwrap_or_else(|| {
            panic!("{point:?}: `status` gives no command removing {db}: {left:?}")
        });
        sh(cmd);
    }
    assert_eq!(
        databases_like(prefix).len(),
        2,
        "{point:?}: the commands `status` printed did not remove {extra:?}"
    );
    extra.len()
}

fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// A bare-Postgres node whose components are marked up by files, with one backup.
struct BareNode {
    dbs: NodeDbs,
    flags: tempfile::TempDir,
    site: Site,
    id: String,
    backup: Vec<(String, String)>,
}

impl BareNode {
    fn new() -> BareNode {
        let dbs = NodeDbs::create("sdr_kstep", 30_000);
        let flags = tempfile::tempdir().unwrap();
        let site = Site::with(
            &dbs.validator,
            &dbs.participant,
            BackendChoice::Builtin,
            "",
            "",
            &components(flags.path()),
        );
        sh(&format!(
            "touch {0}/validator.up {0}/participant.up",
            flags.path().display()
        ));
        let out = site.cli(&["backup"]);
        assert!(out.status.success(), "{}", text(&out));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let backup = dbs.fingerprint();
        BareNode {
            dbs,
            flags,
            site,
            id,
            backup,
        }
    }

    /// An uninterrupted restore (through a daemon, as the kill runs are): its steps and
    /// whether it succeeded.
    fn reference_run(&self) -> (Vec<String>, bool) {
        let daemon = self.site.start_daemon();
        diverge(&self.dbs, &self.backup);
        let out = self.site.cli(&["restore", "--backup", &self.id, "--yes"]);
        let run = newest_run(&self.site.path("state"), "restore").unwrap();
        stop(daemon);
        eprintln!("restore steps: {:?}\n{}", step_names(&run), text(&out));
        (step_names(&run), out.status.success())
    }

    /// Kills a restore at each point and checks the node after start-up recovery;
    /// returns the number of points exercised.
    fn kill_restores_at(&self, points: &[KillPoint]) -> usize {
        let registry = self.site.path("state/participants/validator-1.json");
        let target = Target::new(&self.site.config, self.site.dir.path());
        let mut exercised = 0;
        for &point in points {
            let before = diverge(&self.dbs, &self.backup);
            let registry_before = read_opt(&registry);
            let args = ["restore", "--backup", &self.id, "--yes"];
            let limit = Duration::from_secs(120);
            let Some((at, daemon)) = target.kill_and_recover(point, "restore", &args, limit) else {
                continue;
            };
            exercised += 1;
            let at = format!("{point:?} ({at})");
            let outcome = outcome(&self.dbs.fingerprint(), &before, &self.backup, &at);
            assert!(
                components_up(self.flags.path()),
                "{at}: start-up recovery left a component stopped\n{}",
                target.log()
            );
            let removed = remove_listed_leftovers(&self.site, &self.dbs, point);
            assert_eq!(
                read_opt(&registry),
                registry_before,
                "{at}: participant registry changed"
            );
            eprintln!(
                "{at}: node {outcome}, {removed} kept database(s) removed by the listed command"
            );
            stop(daemon);
        }
        exercised
    }
}

#[test]
fn bare_postgres_restore_killed_at_every_step_recovers_the_node() {
    let node = BareNode::new();
    let (steps, ok) = node.reference_run();
    assert!(ok, "the reference restore must succeed");
    assert_eq!(node.dbs.fingerprint(), node.backup);
    let exercised = node.kill_restores_at(&kill_points(&steps, &["database from"]));
    eprintln!("kill points exercised: {exercised}");
    assert!(
        exercised >= steps.len(),
        "every step boundary must be exercised"
    );
}

/// The undo path: a participant dump that passes its checksums but not pg_restore makes
/// the restore roll back; the daemon is killed at each step of the rollback.
#[test]
fn bare_postgres_restore_killed_while_rolling_back_recovers_the_node() {
    let node = BareNode::new();
    let dir = node.site.path("repo").join(&node.id);
    let data = largest_data_file(&dir.join("participant"));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b = !*b;
    }
    let rel = data
        .strip_prefix(&dir)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    replace_and_reseal(&dir, &rel, &bytes);

    let (steps, ok) = node.reference_run();
    assert!(!ok, "the damaged dump must make the restore fail");
    let failed = steps
        .iter()
        .position(|s| s.starts_with("restore participant"))
        .unwrap();
    let undo: Vec<KillPoint> = (failed + 2..=steps.len()).map(KillPoint::AtStep).collect();
    assert!(!undo.is_empty(), "the rollback journals steps: {steps:?}");
    let exercised = node.kill_restores_at(&undo);
    eprintln!("kill points exercised: {exercised}");
    assert_eq!(exercised, undo.len(), "every rollback step boundary");
}

#[path = "common/compose.rs"]
mod compose;

/// Makes the compose node's data differ from the backup (and from any earlier state).
fn diverge_compose(node: &compose::ComposeNode, n: usize) -> Vec<String> {
    node.psql(
        "validator",
        &format!(
            "DELETE FROM app.items WHERE id % 5 = {}; INSERT INTO app.items VALUES ({}, 'after the backup')",
            n % 5,
            900_000 + n
        ),
    );
    node.fingerprint()
}

/// Kept volumes must be listed by `status` with the command removing them; runs it.
fn remove_listed_volumes(config: &Path, node: &compose::ComposeNode, point: KillPoint) -> usize {
    let kept = node.kept_volumes();
    if kept.is_empty() {
        return 0;
    }
    let out = compose::cli(config, &["--json", "status"]);
    let status: StatusView = view(&out);
    let left = &leftovers(&status);
    // Why the leftovers are missing, when they are: the probe's error for them.
    let why = &status.nodes[0].leftovers_error;
    for v in &kept {
        let cmd = left.remove_commands.get(v).unwrap_or_else(|| {
            panic!("{point:?}: `status` gives no command removing volume {v}: {left:?} (error: {why:?})")
        });
        sh(cmd);
    }
    assert!(
        node.kept_volumes().is_empty(),
        "{point:?}: the listed commands left {:?}",
        node.kept_volumes()
    );
    kept.len()
}

/// Waits until the validator answers readyz (it needs Postgres and both databases).
fn wait_healthy(node: &compose::ComposeNode, target: &Target, at: &str) {
    let start = std::time::Instant::now();
    while !node.validator_ready() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{at}: the node is not healthy after start-up recovery\n{}",
            target.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Boundaries before anything changes (choosing and verifying the backup) are the bare
/// Postgres test's; here every step from the first stop on, and mid-way through the two
/// database restores.
#[test]
fn compose_restore_killed_at_every_step_recovers_the_node() {
    require_docker!();
    let node = compose::ComposeNode::start("kill");
    node.seed(20_000);
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");
    let target = Target::new(&config, site.path());
    let id = compose::backup(&config);
    let backup = node.fingerprint();

    diverge_compose(&node, 0);
    let out = compose::cli(&config, &["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(node.fingerprint(), backup);
    let steps = step_names(&newest_run(&site.path().join("state"), "restore").unwrap());
    eprintln!("restore steps: {steps:?}");
    let first_stop = steps.iter().position(|s| s.starts_with("stop ")).unwrap() + 1;
    let points: Vec<KillPoint> = kill_points(&steps, &["database from"])
        .into_iter()
        .filter(|p| !matches!(p, KillPoint::AtStep(n) if *n < first_stop))
        .collect();

    let mut exercised = 0;
    for (i, point) in points.iter().copied().enumerate() {
        let before = diverge_compose(&node, i + 1);
        let args = ["restore", "--backup", &id, "--yes"];
        let limit = Duration::from_secs(180);
        let Some((at, daemon)) = target.kill_and_recover(point, "restore", &args, limit) else {
            continue;
        };
        exercised += 1;
        let at = format!("{point:?} ({at})");
        wait_healthy(&node, &target, &at);
        let outcome = outcome(
            &node.fingerprint(),
            &before,
            &backup,
            &format!("{at}\n{}", target.log()),
        );
        let removed = remove_listed_volumes(&config, &node, point);
        eprintln!("{at}: node {outcome}, {removed} kept volume(s) removed by the listed command");
        stop(daemon);
    }
    eprintln!("kill points exercised: {exercised}");
    assert!(
        exercised + first_stop > steps.len(),
        "every step boundary from the first stop on"
    );
}

/// Whether `service`'s container of the compose node is running.
fn running(node: &compose::ComposeNode, service: &str) -> bool {
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Running}}",
            &node.container(service),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// The daemon of a compose site whose flows run the bundle's start.sh: a start that cannot
/// succeed fails in 20 s, not 600.
fn bundle_target(_node: &compose::ComposeNode, config: &Path, dir: &Path) -> Target {
    let mut target = Target::new(config, dir);
    target.env = vec![("START_WAIT_TIMEOUT".into(), "20".into())];
    target
}

/// A validator site for `node` whose daemon may read the age key (a file parameter, read
/// only under a configured input dir). Returns the config and the key file.
fn reonboard_site(
    node: &compose::ComposeNode,
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (config, key_file, _client) = compose::validator_site(node, dir);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen("[daemon]\n", "[daemon]\ninput_dirs = [\".\"]\n", 1);
    std::fs::write(&config, text).unwrap();
    (config, key_file)
}

/// A compose node with a backup, its site's daemon and the CLI arguments of a re-onboard
/// from that backup.
fn reonboard_setup(
    project: &str,
) -> (compose::ComposeNode, tempfile::TempDir, Target, Vec<String>) {
    let node = compose::ComposeNode::start(project);
    let site = tempfile::tempdir().unwrap();
    let (config, key_file) = reonboard_site(&node, site.path());
    let id = compose::backup(&config);
    let target = bundle_target(&node, &config, site.path());
    let args = [
        "run",
        "reonboard",
        "--param",
        &format!("backup={id}"),
        "--param",
        &format!("identity_key={}", key_file.display()),
        "--yes",
    ]
    .map(String::from)
    .to_vec();
    (node, site, target, args)
}

/// A re-onboard killed after it wiped the node and before it restarted it with the
/// imported identities: recovery must not start the node on empty storage (a validator
/// would onboard anew), must say why, and must list the kept volume with its removal
/// command; the new participant id stays burned and is not made current.
#[test]
fn compose_reonboard_killed_after_the_wipe_keeps_the_node_stopped() {
    require_docker!();
    let (node, site, target, args) = reonboard_setup("kill-reonboard");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let point = KillPoint::AtStepNamed("restart the node with");
    let limit = Duration::from_secs(180);
    let (at, daemon) = target
        .kill_and_recover(point, "reonboard", &args, limit)
        .expect("the re-onboard reaches its restart");
    for service in ["postgres-splice", "participant", "validator"] {
        assert!(
            !running(&node, service),
            "{at}: {service} was started on the wiped volume\n{}",
            target.log()
        );
    }
    assert!(target.log().contains("stay stopped"), "{}", target.log());
    let registry: Value = serde_json::from_slice(
        &std::fs::read(site.path().join("state/participants/validator-1.json")).unwrap(),
    )
    .unwrap();
    assert!(
        registry["current"].is_null(),
        "{at}: the id became current: {registry}"
    );
    assert!(
        registry
            .to_string()
            .contains(&format!("{}-", node.party_hint)),
        "{at}: the new id stays burned: {registry}"
    );
    assert_eq!(
        remove_listed_volumes(&target.config, &node, point),
        1,
        "{at}: one kept volume"
    );
    eprintln!("kill points exercised: 1");
    stop(daemon);
}

/// The participant-id registry of the compose site's node, as JSON (`null` when absent).
fn registry_of(site: &Path) -> Value {
    std::fs::read(site.join("state/participants/validator-1.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null)
}

/// Arguments of `dr_snapshot` to `target` with a timestamp a moment ago. The node has been
/// ready since, but a daemon restarted at a kill point may not have probed it yet, so its
/// health log still ends with the previous migration's restart: the health check is
/// overridden (with a reason), as this test is about kill points, not that check.
fn dr_snapshot_args(target: u64) -> Vec<String> {
    std::thread::sleep(Duration::from_secs(3));
    [
        "run".to_string(),
        "dr_snapshot".into(),
        "--param".into(),
        format!("timestamp={}", compose::ago(1)),
        "--param".into(),
        format!("migration_id={target}"),
        "--param".into(),
        "window=1".into(),
        "--param".into(),
        "force=true".into(),
        "--param".into(),
        "reason=kill test: the health log lags the restarted daemon".into(),
        "--yes".into(),
    ]
    .to_vec()
}

/// A network DR (`dr_snapshot`) killed at every step boundary: after start-up recovery
/// the registry says either the old migration (nothing started yet) or the new one,
/// "unproven" (a migrating start was made); never a node started on one id while later
/// starts would pass the other. Running `dr_snapshot` again to the same id then always
/// ends with the node healthy on it. Each kill point moves the node one migration further.
#[test]
fn compose_dr_snapshot_killed_at_every_step_is_finished_by_running_it_again() {
    require_docker!();
    let node = compose::ComposeNode::start("kill-drsnap");
    let site = tempfile::tempdir().unwrap();
    let (config, _key, _client) = compose::validator_site(&node, site.path());
    let target = bundle_target(&node, &config, site.path());

    // The reference run, 0 -> 1, names the steps.
    let daemon = target.restart();
    let out = target.binary().args(dr_snapshot_args(1)).output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), target.log());
    stop(daemon);
    let steps = step_names(&newest_run(&site.path().join("state"), "dr_snapshot").unwrap());
    eprintln!("dr_snapshot steps: {steps:?}");
    let restart = steps
        .iter()
        .position(|s| s.starts_with("restart the node with"))
        .expect("a restart step")
        + 1;

    let mut current = 1u64;
    let mut exercised = 0;
    for point in kill_points(&steps, &[]) {
        let next = current + 1;
        let args = dr_snapshot_args(next);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let limit = Duration::from_secs(180);
        let Some((at, daemon)) = target.kill_and_recover(point, "dr_snapshot", &args, limit) else {
            continue;
        };
        exercised += 1;
        let at = format!("{point:?} ({at})");
        let reg = registry_of(site.path());
        let started = matches!(point, KillPoint::AtStep(n) if n > restart);
        if started {
            assert_eq!(reg["migration_id"], next, "{at}: {reg}");
            assert_eq!(reg["migration_unproven"], true, "{at}: {reg}");
        } else {
            assert_eq!(reg["migration_id"], current, "{at}: {reg}");
            assert!(reg["migration_unproven"].is_null(), "{at}: {reg}");
        }
        let again = dr_snapshot_args(next);
        let out = target.binary().args(&again).output().unwrap();
        assert!(
            out.status.success(),
            "{at}: running dr_snapshot again: {}\n{}",
            text(&out),
            target.log()
        );
        let reg = registry_of(site.path());
        assert_eq!(reg["migration_id"], next, "{at}: {reg}");
        assert!(reg["migration_unproven"].is_null(), "{at}: {reg}");
        assert_eq!(
            node.validator_migration_id().as_deref(),
            Some(next.to_string().as_str()),
            "{at}"
        );
        assert!(node.validator_ready(), "{at}");
        assert_eq!(node.psql(&format!("participant-{next}"), "SELECT 1"), "1");
        eprintln!("{at}: migration {next} reached by running dr_snapshot again");
        current = next;
        stop(daemon);
    }
    eprintln!("kill points exercised: {exercised}");
    assert!(exercised >= steps.len(), "every step boundary");
}

/// A re-onboard killed at every step boundary: after start-up recovery the registry's
/// `current` id is unchanged, the id the killed run chose stays burned once recorded, and
/// a node a re-onboarding start was made on refuses plain restarts (Splice cannot resume
/// a re-onboard); running `reonboard` again always ends with the node ready, as the
/// backup's party, under a fresh id that every later start passes.
#[test]
fn compose_reonboard_killed_at_every_step_is_finished_by_running_it_again() {
    require_docker!();
    let (node, site, target, args) = reonboard_setup("kill-reonb-all");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reonboard_again = |at: &str| {
        let out = target.binary().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{at}: reonboard again: {}\n{}",
            text(&out),
            target.log()
        );
        let reg = registry_of(site.path());
        assert!(reg["reonboarding"].is_null(), "{at}: {reg}");
        assert!(node.validator_ready(), "{at}: the validator is not ready");
        reg["current"].as_str().unwrap().to_string()
    };

    let daemon = target.restart();
    let mut current = reonboard_again("the reference run");
    stop(daemon);
    let steps = step_names(&newest_run(&site.path().join("state"), "reonboard").unwrap());
    eprintln!("reonboard steps: {steps:?}");

    let mut exercised = 0;
    for point in kill_points(&steps, &[]) {
        let limit = Duration::from_secs(180);
        let Some((at, daemon)) = target.kill_and_recover(point, "reonboard", &args, limit) else {
            continue;
        };
        exercised += 1;
        let at = format!("{point:?} ({at})");
        let reg = registry_of(site.path());
        assert_eq!(reg["current"], current.as_str(), "{at}: {reg}");
        if let Some(started) = reg["reonboarding"].as_str() {
            let out = target.binary().args(["--json", "status"]).output().unwrap();
            let status: StatusView = view(&out);
            assert_eq!(
                status.nodes[0].reonboarding.as_deref(),
                Some(started),
                "{at}: status says so"
            );
            assert!(
                reg.to_string().contains(&format!("\"id\":\"{started}\"")),
                "{at}: burned: {reg}"
            );
            let out = target.binary().args(["run", "restart"]).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(1),
                "{at}: a plain restart: {}",
                text(&out)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("run `reonboard` again"),
                "{at}: {}",
                text(&out)
            );
        }
        let next = reonboard_again(&at);
        assert_ne!(next, current, "{at}: a fresh id");
        eprintln!("{at}: re-onboarded as {next} by running reonboard again");
        current = next;
        stop(daemon);
    }
    eprintln!("kill points exercised: {exercised}");
    assert!(exercised >= steps.len(), "every step boundary");
}
