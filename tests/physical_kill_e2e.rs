//! Kill at every step of a physical restore (issue #15): the daemon is SIGKILLed at each
//! journaled step boundary of `restore` of a physical backup, and inside the step that
//! lays the base backup down (the data directory already renamed aside, the copy half
//! written), against a real PostgreSQL 15 server the test makes for itself. After the
//! restart, start-up recovery must leave the server running on the data it had before the
//! run, or fully restored — never a half-laid copy — with no kept data directory left.
//!
//! Needs a debug build of the daemon (the pause hook is compiled only there).

mod common;

use common::kill::*;
use common::pg_cluster::*;
use common::*;
use std::time::Duration;

#[test]
fn a_daemon_killed_at_any_step_of_a_physical_restore_leaves_the_server_as_before_or_restored() {
    let c = Cluster::start();
    let site = c.site(&c.start_command(), &c.stop_command());
    let id = backup(&site, None);
    let restored = c.digests();
    let args = ["restore", "--backup", id.as_str(), "--yes"];

    // The reference run names the steps.
    c.change_rows();
    let out = site.cli(&args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.digests(), restored);
    let state = site.path("state");
    let steps = step_names(&newest_run(&state, "restore").expect("the reference run"));
    eprintln!("restore steps: {steps:?}");
    let replace = "replace the server's data";
    assert!(steps.iter().any(|s| s.starts_with(replace)), "{steps:?}");

    let target = Target::new(&site.config, site.dir.path());
    let mut outcomes = Vec::new();
    for point in kill_points(&steps, &[replace]) {
        c.change_rows();
        let before = c.digests();
        let Some((at, daemon)) =
            target.kill_and_recover(point, "restore", &args, Duration::from_secs(120))
        else {
            continue;
        };
        assert!(
            c.running(),
            "{point:?} ({at}): the server does not run after start-up recovery\n{}",
            target.log()
        );
        let now = c.digests();
        let how = outcome(&now, &before, &restored, &at);
        remove_listed_kept_dirs(&site, &c, &at);
        outcomes.push(format!("{point:?} {at}: {how}"));
        stop(daemon);
    }
    eprintln!("{outcomes:#?}");
    assert!(
        outcomes
            .iter()
            .any(|o| o.starts_with("InStep") && o.contains(replace)),
        "the run was killed while the base backup was laid down: {outcomes:?}"
    );
}

/// A kept data directory may be left only when `status` lists it with the command that
/// removes it (the node was proven; the daemon died before it removed the copy): runs
/// that command and checks nothing is left.
fn remove_listed_kept_dirs(site: &Site, c: &Cluster, at: &str) {
    if c.kept_dirs().is_empty() {
        return;
    }
    let status: splice_dr_protocol::StatusView = site.json(&["status"]);
    let left = status.nodes[0].leftovers.clone().unwrap_or_default();
    for name in c.kept_dirs() {
        let path = c.data().with_file_name(&name).display().to_string();
        let cmd = left.remove_commands.get(&path).unwrap_or_else(|| {
            panic!("{at}: {path} is left and `status` gives no command removing it: {left:?}")
        });
        common::kill::sh(cmd);
    }
    assert!(
        c.kept_dirs().is_empty(),
        "{at}: the commands `status` printed left {:?}",
        c.kept_dirs()
    );
}
