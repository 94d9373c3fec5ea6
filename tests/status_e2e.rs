//! `status` from state and journal retention, end to end with the real daemon: `status`
//! serves the daemon's latest probe of each node (with its age) instead of probing per
//! request, the journal keeps the newest `[journal] keep_runs` finished runs plus every
//! unfinished one, and the autopilot's tick reads no run file.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::*;
use splice_dr::journal::{Journal, PendingApproval, RunRecord, RunState};
use splice_dr_protocol::{RunDetail, RunSummary, StatusView};
use std::time::Duration;

fn status(site: &Site) -> StatusView {
    let out = site.cli(&["--json", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    view(&out)
}

fn noop_site(dbs: &NodeDbs, extra_daemon: &str, extra: &str) -> Site {
    let noop = (
        "noop.rhai",
        "//! a flow that only logs\nlog.info(\"noop\");\n",
    );
    Site::with_flows(dbs, extra_daemon, extra, &[noop])
}

#[test]
fn status_serves_the_latest_probe_with_its_age_and_refreshes_when_a_run_ends() {
    let dbs = NodeDbs::create("sdr_stst", 10);
    // One probe round per hour: two answers with the same `checked_at` were not probed
    // per request.
    let site = noop_site(&dbs, "health_interval = \"1h\"", "");
    let daemon = site.start_daemon();
    // The socket answers only after the first round: never "not probed yet" here.
    let first = status(&site);
    let node = &first.nodes[0];
    assert!(node.probe.is_none(), "{node:?}");
    assert!(node.checked_at.is_some(), "{node:?}");
    assert!(node.age_seconds.is_some(), "{node:?}");
    assert!(node.databases.as_ref().unwrap()[0].exists, "{node:?}");
    // The daemon's one start-up round ran after recovery, before the socket answered;
    // after it, nothing is probed for an hour however often `status` is asked (a second
    // round right after start once raced the first answers).
    let stamps = |v: &StatusView| {
        let n = &v.nodes[0];
        (n.checked_at, n.leftovers_checked_at)
    };
    let mut last = stamps(&first);
    wait_for(Duration::from_secs(10), "the post-recovery round", || {
        std::thread::sleep(Duration::from_millis(300));
        let now = stamps(&status(&site));
        std::mem::replace(&mut last, now) == now
    });
    let stable = status(&site);
    let node = &stable.nodes[0];
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        let again = status(&site);
        assert_eq!(stamps(&again), stamps(&stable));
        assert!(again.nodes[0].age_seconds > node.age_seconds);
    }
    let human = site.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("as probed"),
        "{}",
        text(&human)
    );

    // A run ending asks for a full round (leftovers asked again) at once, not an hour
    // later, and `status` right after the run waits for it (briefly): it shows the
    // state the run left, here the backup it made.
    assert!(node.last_backup.is_none(), "{node:?}");
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    let after = status(&site);
    let fresh = &after.nodes[0];
    assert_ne!(fresh.leftovers_checked_at, node.leftovers_checked_at);
    assert!(fresh.last_backup.is_some(), "{fresh:?}");
    stop(daemon);
}

/// A finished run created `age` ago, or an unfinished one owned by this (live) process.
fn seed(journal: &Journal, flow: &str, state: RunState, age: ChronoDuration) -> String {
    let mut r = RunRecord::new(journal.new_run_id(flow), flow, Some("validator-1".into()));
    r.created_at = Utc::now() - age;
    r.state = state;
    if !state.is_active() {
        r.started_at = Some(r.created_at);
        r.finished_at = Some(r.created_at + ChronoDuration::seconds(1));
    }
    if state == RunState::Pending {
        r.approval = Some(PendingApproval {
            rule: "r".into(),
            expires_at: Utc::now() + ChronoDuration::days(1),
            approved_by: None,
        });
    }
    journal.save(&r).unwrap();
    r.id
}

fn run_ids(site: &Site) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(site.path("state/runs"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(String::from)
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_journal_keeps_the_newest_finished_runs_and_every_unfinished_one_and_ticks_read_none() {
    let dbs = NodeDbs::create("sdr_stjr", 10);
    let site = noop_site(
        &dbs,
        "health_interval = \"200ms\"",
        "[journal]\nkeep_runs = 3\n",
    );
    let journal = Journal::open(&site.path("state")).unwrap();
    let running = seed(
        &journal,
        "backup",
        RunState::Running,
        ChronoDuration::days(40),
    );
    let pending = seed(
        &journal,
        "restore",
        RunState::Pending,
        ChronoDuration::days(30),
    );
    let mut finished = Vec::new();
    for (i, state) in [
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::Interrupted,
        RunState::Succeeded,
        RunState::Succeeded,
    ]
    .into_iter()
    .enumerate()
    {
        let age = ChronoDuration::hours(10 - i as i64);
        finished.push(seed(&journal, "noop", state, age));
    }
    let daemon = site.start_daemon();
    let mut want: Vec<String> = finished[3..].to_vec();
    want.extend([running.clone(), pending.clone()]);
    want.sort();
    assert_eq!(run_ids(&site), want, "start-up retention");

    // After a run ends: still the newest three finished runs, the new one among them.
    let out = site.cli(&["--json", "run", "noop"]);
    assert!(out.status.success(), "{}", text(&out));
    let new_id = view::<RunDetail>(&out).id;
    let mut want: Vec<String> = finished[4..].to_vec();
    want.extend([running, pending, new_id]);
    want.sort();
    wait_for(Duration::from_secs(5), "retention after the run", || {
        run_ids(&site) == want
    });
    let listed = site.cli(&["--json", "runs"]);
    let listed: Vec<RunSummary> = view(&listed);
    assert_eq!(listed.len(), 5, "{listed:?}");

    // Ticks (every 500 ms) and status answer from the index: no run file is read.
    // (Past the two-second window in which a fresh directory mtime is not trusted.)
    std::thread::sleep(Duration::from_secs(3));
    let before = status(&site).journal.file_reads;
    std::thread::sleep(Duration::from_secs(2));
    let after = status(&site).journal;
    assert_eq!(after.file_reads, before, "{after:?}");
    assert_eq!(after.runs, 5);
    stop(daemon);
}
