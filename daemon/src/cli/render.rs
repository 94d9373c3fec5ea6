//! Human output: live run events on stderr, results on stdout (and, for `--json runs
//! --follow`, the events as JSON lines on stdout).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use splice_dr_protocol::{
    AutomationView, BackupList, DrillResult, LeaderView, NodeStatus, PingReply, PruneReport,
    RepoCheckReport, RuleState, RunDetail, RunSummary, StatusView, StepRecord, StepState,
};
use std::io::{IsTerminal, Write};
use std::time::Instant;

use crate::run_context::progress::{bar, describe_with_rate};
use crate::run_context::RunEvent;
use crate::socket::protocol::{Reply, CRATE_VERSION, PROTOCOL_VERSION};

/// Prints live events of a run to stderr; progress overwrites one line on a terminal and
/// is throttled otherwise.
pub struct EventPrinter {
    /// `--json runs --follow`: every event as one wire line on stdout instead of text.
    json_lines: bool,
    tty: bool,
    last_progress: Option<Instant>,
    progress_shown: bool,
    /// When each progress counter was first seen, for rate and ETA.
    progress_started: std::collections::HashMap<String, Instant>,
}

impl Default for EventPrinter {
    fn default() -> Self {
        EventPrinter {
            json_lines: false,
            tty: std::io::stderr().is_terminal(),
            last_progress: None,
            progress_shown: false,
            progress_started: std::collections::HashMap::new(),
        }
    }
}

impl EventPrinter {
    /// A printer for `--json runs --follow`: a program following a run reads each event
    /// as it happens, one `{"type":"event","event":{…}}` line (the socket protocol's own
    /// line, docs/PROTOCOL.md) on stdout, flushed at once; the answer is the last line.
    pub fn json_lines() -> Self {
        EventPrinter {
            json_lines: true,
            ..EventPrinter::default()
        }
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            eprint!("\r\x1b[2K");
            self.progress_shown = false;
        }
    }

    /// Prints one event.
    pub fn print(&mut self, ev: &RunEvent) {
        if self.json_lines {
            print_json_line(&Reply::Event { event: ev.clone() });
            return;
        }
        match ev {
            RunEvent::Started { run, flow, node } => {
                eprintln!("run {run}: {flow} on {}", node.as_deref().unwrap_or("-"));
            }
            RunEvent::StepStarted { name, depth, .. } => {
                self.clear_progress();
                eprintln!("{}▶ {name}", "  ".repeat(*depth as usize));
            }
            RunEvent::StepFinished {
                name,
                error,
                millis,
                ..
            } => {
                self.clear_progress();
                match error {
                    None => eprintln!("  ✓ {name} ({})", fmt_ms(*millis)),
                    Some(e) => eprintln!("  ✗ {name} ({}): {e}", fmt_ms(*millis)),
                }
            }
            RunEvent::Log { level, message, .. } => {
                self.clear_progress();
                eprintln!("    {level}: {message}");
            }
            RunEvent::Progress {
                what,
                done,
                total,
                unit,
                ..
            } => {
                let started = *self
                    .progress_started
                    .entry(what.clone())
                    .or_insert_with(Instant::now);
                let line = describe_with_rate(what, *done, *total, unit, started.elapsed());
                if self.tty {
                    let gauge = total.map(|t| format!("{} ", bar(*done, t, 24)));
                    let full = format!("    {}{line}", gauge.unwrap_or_default());
                    eprint!("\r\x1b[2K{}", fit_line(&full, terminal_columns()));
                    let _ = std::io::stderr().flush();
                    self.progress_shown = true;
                } else if self
                    .last_progress
                    .is_none_or(|t| t.elapsed().as_secs() >= 5)
                {
                    eprintln!("    {line}");
                    self.last_progress = Some(Instant::now());
                }
            }
            RunEvent::Finished { .. } => self.clear_progress(),
        }
    }
}

/// Columns of the terminal stderr is on, or 80 when it cannot say.
fn terminal_columns() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|&c| c > 0)
        .unwrap_or(80)
}

/// `line` cut to fewer characters than the terminal has columns, the cut marked `…`. A
/// progress line is redrawn in place with `\r\x1b[2K`, which clears only the cursor's row:
/// a line that wrapped would leave its first rows behind on every redraw.
pub fn fit_line(line: &str, columns: usize) -> String {
    let room = columns.saturating_sub(1).max(1);
    if line.chars().count() <= room {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(room - 1).collect();
    cut.push('…');
    cut
}

/// `1.2s`, `3m04s`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// An optional text as shown in tables (`-` when absent).
fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// `2026-12-04T10:00:00`: a time to the second, as tables show it.
fn to_second(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A time as the journal writes it (RFC 3339, UTC).
fn full_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `runs` as a table.
pub fn runs_table(runs: &[RunSummary]) -> String {
    let mut out = format!(
        "{:<40} {:<12} {:<10} {:<14} {:>9}  {}\n",
        "RUN", "STATE", "FLOW", "NODE", "TOOK", "ERROR"
    );
    for r in runs {
        let took = r
            .duration_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(fmt_ms)
            .unwrap_or_else(|| "-".into());
        let err = r
            .error
            .as_deref()
            .and_then(|e| e.lines().next())
            .unwrap_or("");
        let state = if r.dry_run {
            format!("{} (dry)", r.state.as_str())
        } else {
            r.state.as_str().to_string()
        };
        out.push_str(&format!(
            "{:<40} {:<12} {:<10} {:<14} {:>9}  {}\n",
            r.id,
            state,
            r.flow,
            or_dash(r.node.as_deref()),
            took,
            err
        ));
    }
    out
}

/// `show` as text.
pub fn run_details(r: &RunDetail) -> String {
    let mut out = format!(
        "run {}\n  flow: {}  node: {}  trigger: {}  state: {}{}\n  created: {}\n",
        r.id,
        r.flow,
        or_dash(r.node.as_deref()),
        r.trigger,
        r.state.as_str(),
        if r.dry_run { " (dry run)" } else { "" },
        full_time(r.created_at),
    );
    if let Some(reason) = &r.forced_reason {
        out.push_str(&format!("  FORCED: {reason}\n"));
    }
    if !r.params.is_empty() {
        out.push_str(&format!("  params: {}\n", Value::Object(r.params.clone())));
    }
    out.push_str("  steps:\n");
    for st in &r.steps {
        out.push_str(&step_lines(st));
    }
    if !r.plan.is_empty() {
        out.push_str("  plan (nothing was changed):\n");
        for l in &r.plan {
            out.push_str(&format!("    {l}\n"));
        }
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    if let Some(res) = r.result.as_ref().filter(|v| !v.is_null()) {
        out.push_str(&format!("  result: {res}\n"));
    }
    out
}

/// One step of `show`: its mark, name and state, error, and log lines, indented by depth.
fn step_lines(st: &StepRecord) -> String {
    let indent = "  ".repeat(st.depth as usize);
    let mark = match st.state {
        StepState::Succeeded => "✓",
        StepState::Failed => "✗",
        StepState::Interrupted => "⚠",
        StepState::Running => "…",
    };
    let mut out = format!("  {indent}{mark} {} [{}]", st.name, st.state.as_str());
    if let Some(e) = &st.error {
        out.push_str(&format!(": {e}"));
    }
    out.push('\n');
    for l in &st.log {
        out.push_str(&format!("  {indent}    {l}\n"));
    }
    out
}

/// `3h25m`: an age as tables show it, to the minute and in at most two units.
fn short_age(secs: i64) -> String {
    let age = secs.max(0).unsigned_abs();
    humantime::format_duration(std::time::Duration::from_secs(age - age % 60))
        .to_string()
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join("")
}

/// `backups` as a table.
pub fn backups_table(v: &BackupList) -> String {
    let mut out = format!(
        "{:<36} {:<14} {:>9} {:<8} {:<22} {:>8} {:>10}  {:<16} {:<16} TRUST\n",
        "BACKUP", "NODE", "MIGRATION", "KIND", "CREATED", "AGE", "SIZE", "DRILL", "WHERE"
    );
    let mut untrusted = Vec::new();
    for b in &v.backups {
        let drill = match &b.last_drill {
            Some(d) => format!("{} {}", d.result.as_str(), d.at.format("%Y-%m-%d")),
            None => "never".to_string(),
        };
        let locations = if b.locations.is_empty() {
            "local".to_string()
        } else {
            b.locations.join(",")
        };
        let trust = if b.trusted {
            "signed"
        } else {
            untrusted.push(format!(
                "UNTRUSTED {}: {}\n",
                b.id,
                or_dash(b.untrusted_because.as_deref())
            ));
            "untrusted"
        };
        out.push_str(&format!(
            "{:<36} {:<14} {:>9} {:<8} {:<22} {:>8} {:>10}  {drill:<16} {locations:<16} {trust}\n",
            b.id,
            b.node,
            b.migration_id,
            b.kind.as_str(),
            to_second(b.created_at),
            short_age(b.age_secs),
            crate::run_context::progress::human_bytes(b.bytes),
        ));
    }
    out.extend(untrusted);
    for e in &v.unreadable {
        out.push_str(&format!("UNREADABLE: {e}\n"));
    }
    for e in &v.problems {
        out.push_str(&format!("PROBLEM: {e}\n"));
    }
    out
}

/// `prune` (and `prune --dry-run`) as text, repository by repository.
pub fn prune_text(v: &PruneReport) -> String {
    let mut out = String::new();
    for r in &v.repositories {
        let policy = match &r.policy {
            Some(p) => p.describe(),
            None => "no retention: keeps everything".into(),
        };
        out.push_str(&format!("repository {} ({policy})\n", r.repository));
        for c in &r.delete {
            let verb = if v.dry_run {
                "would delete"
            } else if r.deleted.contains(&c.id) {
                "deleted"
            } else {
                "kept"
            };
            out.push_str(&format!(
                "  {verb:<12} {}  (node {}, taken {})\n",
                c.id,
                c.node,
                to_second(c.created_at)
            ));
        }
        out.push_str(&format!(
            "  keeps {} backup(s){}\n",
            r.keep,
            if r.delete.is_empty() {
                ", deletes none"
            } else {
                ""
            }
        ));
        for e in &r.errors {
            out.push_str(&format!("  ERROR: {e}\n"));
        }
    }
    if v.dry_run {
        out.push_str("dry run: nothing was deleted (run without --dry-run to apply)\n");
    }
    out
}

/// `repo check` as text.
pub fn repo_check_text(v: &RepoCheckReport) -> String {
    let mut out = String::new();
    for r in &v.repositories {
        let free = r
            .free_bytes
            .map(|b| format!("{} free", crate::run_context::progress::human_bytes(b)))
            .unwrap_or_else(|| "free space not reported".into());
        out.push_str(&format!(
            "{} {} ({}): {} backups, {free}\n",
            if r.ok { "OK    " } else { "FAILED" },
            r.repository,
            r.location,
            r.backups,
        ));
        for c in &r.checks {
            out.push_str(&format!("    {c}\n"));
        }
        if !r.incomplete.is_empty() {
            out.push_str(&format!(
                "    {} interrupted upload(s), never listed, removed by the node's next backup: {}\n",
                r.incomplete.len(),
                r.incomplete.join(", ")
            ));
        }
    }
    out
}

/// `status` lines about drills: the newest backup's drill state and the node's last drill.
fn drill_lines(n: &NodeStatus) -> String {
    let mut out = String::new();
    let Some(b) = &n.last_backup else {
        return out;
    };
    match &b.drill {
        Some(d) => out.push_str(&format!(
            "  newest backup's drill: {} at {}\n",
            d.result.as_str(),
            to_second(d.at)
        )),
        None => out.push_str(
            "  newest backup's drill: never — prove it restores with `splice-dr drill`\n",
        ),
    }
    if let Some(d) = &n.last_drill {
        if d.backup != b.id {
            out.push_str(&format!(
                "  last drill: {} at {} (backup {})\n",
                d.result.as_str(),
                to_second(d.at),
                d.backup
            ));
        }
        if d.result == DrillResult::Failed {
            out.push_str(&format!("  DRILL FAILED: {}\n", d.detail));
        }
    }
    out
}

/// `status` lines about the recovery runway: how long the newest restorable backup stays
/// restorable, and how long a node that is down has before the network disables it.
fn runway_lines(n: &NodeStatus) -> String {
    let Some(r) = &n.runway else {
        return String::new();
    };
    let low = |is_low: bool| {
        if is_low {
            format!(" — LOW (below {})", short_age(r.low_below_secs as i64))
        } else {
            String::new()
        }
    };
    let horizon = short_age(r.horizon_secs as i64);
    let restore = &r.restore;
    let mut out = match (&restore.backup, restore.expires_at) {
        (Some(id), Some(at)) if restore.left_secs >= 0 => format!(
            "  restore runway: {} until {id} passes the {horizon} horizon ({}){}\n",
            short_age(restore.left_secs),
            to_second(at),
            low(restore.low)
        ),
        (Some(id), _) => format!(
            "  restore runway: none — {id}, the newest restorable backup, passed the {horizon} \
             horizon {} ago: take a backup with `splice-dr backup`\n",
            short_age(-restore.left_secs)
        ),
        (None, _) => {
            "  restore runway: none — no restorable backup: take one with `splice-dr backup`\n"
                .to_string()
        }
    };
    if let Some(d) = &r.down {
        out.push_str(&match d.since {
            None => "  down for: 0s (healthy)\n".to_string(),
            Some(since) if d.left_secs >= 0 => format!(
                "  down for: {}{} (since {}); {} before the network disables it (MemberDisabled){}\n",
                if d.seen_healthy { "" } else { "at least " },
                short_age(d.down_secs as i64),
                to_second(since),
                short_age(d.left_secs),
                low(d.low)
            ),
            Some(since) => format!(
                "  down for: {} (since {}), past the {horizon} horizon: the network has likely \
                 disabled it (MemberDisabled); only `splice-dr reonboard` recovers it\n",
                short_age(d.down_secs as i64),
                to_second(since)
            ),
        });
    }
    out
}

/// `ping` as text: the daemon's version first, since that is what an operator checks
/// after an upgrade.
pub fn ping_text(v: &PingReply) -> String {
    format!(
        "pong: splice-dr {} ({}), protocol {}",
        v.daemon_version, v.mode, v.protocol
    )
}

/// The version stamp `ping` and `status` carry, read from any answer.
#[derive(serde::Deserialize)]
struct VersionStamp {
    protocol: Option<u64>,
    #[serde(default)]
    daemon_version: Option<String>,
}

/// A one-line warning when the daemon's reply says it speaks another protocol than this
/// CLI: commands one side does not know are refused (`version_skew`), so say it up front.
/// `None` when they agree or the daemon (older than versioning) does not say.
pub fn protocol_warning(v: &Value) -> Option<String> {
    let stamp = VersionStamp::deserialize(v).ok()?;
    let theirs = stamp.protocol?;
    (theirs != PROTOCOL_VERSION).then(|| {
        format!(
            "the daemon speaks protocol {theirs} (splice-dr {}), this CLI protocol \
             {PROTOCOL_VERSION} (splice-dr {CRATE_VERSION}); commands one side does not know \
             are refused: use a CLI of the daemon's version",
            or_dash(stamp.daemon_version.as_deref())
        )
    })
}

/// `status` as text.
pub fn status_text(v: &StatusView) -> String {
    let mut out = format!(
        "splice-dr {} ({}) pid {} — config {}\n",
        v.daemon_version, v.mode, v.pid, v.config.file,
    );
    if let Some(e) = &v.config.error {
        out.push_str(&format!(
            "  CONFIG CHANGE REJECTED (previous config in force): {e}\n"
        ));
    }
    out.push_str(&leader_line(&v.leader));
    for n in &v.nodes {
        out.push_str(&node_lines(n));
    }
    out.push_str(&format!(
        "active runs: {}\n",
        if v.active_runs.is_empty() {
            "none".to_string()
        } else {
            v.active_runs.len().to_string()
        }
    ));
    for r in &v.active_runs {
        out.push_str(&format!(
            "  {} {} on {} — {}\n",
            r.id,
            r.flow,
            or_dash(r.node.as_deref()),
            or_dash(r.current_step.as_deref())
        ));
    }
    if let Some(a) = &v.automation {
        out.push_str(&automation_lines(a));
    }
    if let Some(h) = &v.health {
        for c in &h.current {
            out.push_str(&format!(
                "health {}/{}: {} since {} {}\n",
                c.node,
                c.component,
                if c.up { "up" } else { "DOWN" },
                to_second(c.at),
                c.detail
            ));
        }
    }
    out.push_str("flows:\n");
    for f in &v.flows {
        out.push_str(&format!(
            "  {:<12} {}{}\n",
            f.name,
            f.source,
            if f.destructive { " (destructive)" } else { "" }
        ));
    }
    out
}

/// Who leads, when leader election is on (nothing otherwise: every replica runs flows).
fn leader_line(le: &LeaderView) -> String {
    if !le.enabled {
        return String::new();
    }
    let lease = or_dash(le.lease.as_deref());
    let me = or_dash(le.identity.as_deref());
    if le.leader {
        format!("leader: yes — this replica ({me}) holds Lease {lease} and runs flows\n")
    } else {
        format!(
            "leader: no — replica {} holds Lease {lease}; this one ({me}) runs no flows\n",
            le.holder.as_deref().unwrap_or("nobody yet")
        )
    }
}

/// One node's part of `status`.
fn node_lines(n: &NodeStatus) -> String {
    let mut out = format!(
        "node {} ({}, migration id {})\n",
        or_dash(n.name.as_deref()),
        or_dash(n.backend.as_deref()),
        n.migration_id
            .map_or_else(|| "-".to_string(), |m| m.to_string())
    );
    if let Some(p) = n.probe.as_ref().or(n.error.as_ref()) {
        out.push_str(&format!("  {p}\n"));
        return out;
    }
    if let Some(age) = n.age_seconds {
        out.push_str(&format!("  as probed {age:.1}s ago\n"));
    }
    match &n.last_backup {
        Some(b) => out.push_str(&format!(
            "  last backup: {} ({} ago)\n",
            b.id,
            humantime::format_duration(std::time::Duration::from_secs(
                b.age_secs.max(0).unsigned_abs()
            ))
        )),
        None => out.push_str("  last backup: none — take one with `splice-dr backup`\n"),
    }
    out.push_str(&drill_lines(n));
    out.push_str(&runway_lines(n));
    out.push_str(&wal_lines(n));
    out.push_str(&identity_lines(n));
    out.push_str(&backend_lines(n));
    out
}

/// A streaming node's continuous WAL: receiver, restore point age, slot lag, hazards.
fn wal_lines(n: &NodeStatus) -> String {
    let Some(w) = &n.wal else {
        return String::new();
    };
    let rpo = w
        .rpo_seconds
        .map_or("not caught up yet".to_string(), |s| format!("{s:.0}s"));
    let lag = w
        .lag_bytes
        .map_or("unknown".to_string(), |b| format!("{b} bytes"));
    let mut out = format!(
        "  continuous WAL: {} (slot {}), RPO {rpo}, slot lag {lag}, {} segments sealed{}\n",
        if w.receiving {
            "receiving"
        } else {
            "receiver down"
        },
        w.slot,
        w.sealed_segments,
        w.last_sealed
            .as_ref()
            .map_or(String::new(), |s| format!(", newest {s}"))
    );
    if w.offsite_pending > 0 {
        out.push_str(&format!(
            "  continuous WAL: {} sealed files not yet in every off-site repository\n",
            w.offsite_pending
        ));
    }
    if let Some(e) = &w.last_error {
        out.push_str(&format!("  continuous WAL last error: {e}\n"));
    }
    for warning in &w.warnings {
        out.push_str(&format!("  continuous WAL warning: {warning}\n"));
    }
    out
}

/// A node's migration and participant id since a network DR or a re-onboard.
fn identity_lines(n: &NodeStatus) -> String {
    let mut out = String::new();
    if let Some(m) = n.running_migration_id {
        out.push_str(&format!(
            "  runs migration {m} since a network DR: set migration_id = {m} in the config\n"
        ));
    }
    if n.migration_unproven {
        let m = n
            .running_migration_id
            .or(n.migration_id)
            .unwrap_or_default();
        out.push_str(&format!(
            "  the migrating start to migration {m} was not seen healthy: every start migrates \
             again from the dump on the node; run `splice-dr run restart --node {}` to finish \
             it (or dr_snapshot again with migration_id={m})\n",
            n.name.as_deref().unwrap_or("NODE")
        ));
    }
    if let Some(id) = &n.reonboarding {
        out.push_str(&format!(
            "  a re-onboard as {id} did not finish: plain starts are refused; run reonboard again\n"
        ));
    }
    if let Some(id) = &n.participant_id {
        out.push_str(&format!(
            "  participant id: {id} (since a re-onboard; every start passes it)\n"
        ));
    }
    out
}

/// What the node's backend answered: components, databases and leftovers, in the
/// backend's own shapes.
fn backend_lines(n: &NodeStatus) -> String {
    let mut out = String::new();
    for c in n.components.iter().flatten() {
        out.push_str(&format!(
            "  component {}: {} ready={} {}\n",
            c.name, c.state, c.ready, c.detail
        ));
    }
    for d in n.databases.iter().flatten() {
        let present = if d.exists { "present" } else { "MISSING" };
        out.push_str(&format!("  database {} ({}): {present}\n", d.name, d.role));
    }
    let errors = [
        ("components error", &n.components_error),
        ("databases error", &n.databases_error),
        ("leftovers error", &n.leftovers_error),
    ];
    for (what, e) in errors {
        if let Some(e) = e {
            out.push_str(&format!("  {what}: {e}\n"));
        }
    }
    let Some(leftovers) = &n.leftovers else {
        return out;
    };
    for k in &leftovers.found.staged {
        out.push_str(&format!("  SCRATCH DATABASE {k}: left by an interrupted restore or drill; the next daemon start drops it\n"));
    }
    for k in &leftovers.found.kept {
        let how = match leftovers.remove_commands.get(k) {
            Some(cmd) => format!("remove it with: {cmd}"),
            None => "drop it".into(),
        };
        out.push_str(&format!("  KEPT DATABASE {k}: previous data from an interrupted restore; once the node is verified, {how}\n"));
    }
    out
}

/// The autopilot's part of `status`: pause, rules, schedules, approvals, queue, decisions.
fn automation_lines(a: &AutomationView) -> String {
    let mut out = format!(
        "automation: {}\n",
        if a.paused {
            "PAUSED (`splice-dr resume` re-arms it)"
        } else {
            "armed"
        }
    );
    if let Some(e) = &a.memory_error {
        out.push_str(&format!(
            "  RULES MEMORY NOT WRITTEN: {e} — a restart now would forget tripped breakers\n"
        ));
    }
    for r in &a.rules {
        let mut line = format!("  rule {:<24} {:<12} on {}", r.rule, r.state.as_str(), r.on);
        if let RuleState::Cooling { until } = &r.state {
            line.push_str(&format!(" (until {})", full_time(*until)));
        }
        if r.failures > 0 {
            line.push_str(&format!(" — {} failed run(s) of {}", r.failures, r.breaker));
        }
        out.push_str(&line);
        out.push('\n');
    }
    for sch in &a.schedules {
        out.push_str(&format!(
            "  schedule {:<20} {} next {}{}\n",
            sch.name,
            sch.cron,
            sch.next_at.map_or_else(|| "-".to_string(), full_time),
            if sch.stale {
                " — LAST BACKUP TOO OLD"
            } else {
                ""
            }
        ));
    }
    for p in &a.pending_approvals {
        out.push_str(&format!(
            "  PENDING APPROVAL {} ({} by rule {}, expires {}): `splice-dr approve {}`\n",
            p.run,
            p.flow,
            or_dash(p.rule.as_deref()),
            p.expires_at.map_or_else(|| "-".to_string(), full_time),
            p.run
        ));
    }
    for q in &a.queue {
        out.push_str(&format!(
            "  queued (node busy) since {}: rule {}\n",
            full_time(q.since),
            q.rule
        ));
    }
    for d in a.recent_decisions.iter().take(5) {
        out.push_str(&format!(
            "  {} {}: {}\n",
            to_second(d.at),
            d.rule,
            d.outcome
        ));
    }
    out
}

/// Prints one reply as a compact JSON line on stdout and flushes it, so a reader of a
/// pipe sees it now, not when the buffer fills.
pub fn print_json_line(reply: &Reply) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(reply).unwrap_or_default());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ping(version: &str, protocol: u64) -> PingReply {
        PingReply {
            pong: true,
            mode: "daemon".into(),
            daemon_version: version.into(),
            protocol,
        }
    }

    fn status(version: &str, pid: u32) -> StatusView {
        StatusView {
            mode: "daemon".into(),
            daemon_version: version.into(),
            protocol: PROTOCOL_VERSION,
            pid,
            uptime_secs: 1,
            config: splice_dr_protocol::ConfigState {
                file: "/etc/splice-dr.toml".into(),
                error: None,
            },
            nodes: vec![],
            active_runs: vec![],
            flows: vec![],
            automation: None,
            leader: LeaderView {
                enabled: false,
                leader: true,
                identity: None,
                lease: None,
                holder: None,
            },
            journal: splice_dr_protocol::JournalStats {
                runs: 0,
                file_reads: 0,
            },
            health: None,
        }
    }

    #[test]
    fn ping_shows_the_daemons_version() {
        assert_eq!(
            ping_text(&ping("9.8.7", 1)),
            "pong: splice-dr 9.8.7 (daemon), protocol 1"
        );
        assert!(status_text(&status("9.8.7", 4)).starts_with("splice-dr 9.8.7 (daemon) pid 4"));
    }

    #[test]
    fn a_daemon_of_another_protocol_is_warned_about() {
        let same = json!({"protocol": PROTOCOL_VERSION, "daemon_version": CRATE_VERSION});
        assert_eq!(protocol_warning(&same), None);
        assert_eq!(protocol_warning(&json!({"pong": true})), None);
        let w = protocol_warning(&json!({"protocol": 7, "daemon_version": "9.8.7"}))
            .expect("a warning");
        assert!(w.contains("protocol 7 (splice-dr 9.8.7)"), "{w}");
        assert!(
            w.contains(&format!(
                "protocol {PROTOCOL_VERSION} (splice-dr {CRATE_VERSION})"
            )),
            "{w}"
        );
        assert!(!w.contains('\n'), "one line: {w}");
    }

    #[test]
    fn the_runway_says_how_long_is_left_and_when_it_is_low() {
        use splice_dr_protocol::{DownRunway, RestoreRunway, RunwayView};
        let at = Utc::now();
        const DAY: i64 = 86_400;
        let mut node = NodeStatus {
            runway: Some(RunwayView {
                at,
                horizon_secs: 30 * DAY as u64,
                low_below_secs: 7 * DAY as u64,
                restore: RestoreRunway {
                    backup: Some("validator-1-20261101-120000".into()),
                    taken_at: Some(at),
                    expires_at: Some(at),
                    left_secs: 5 * DAY,
                    low: true,
                },
                down: Some(DownRunway {
                    since: Some(at),
                    seen_healthy: false,
                    down_secs: 2 * 3600,
                    disabled_at: Some(at),
                    left_secs: 29 * DAY,
                    low: false,
                }),
            }),
            ..NodeStatus::default()
        };
        let text = runway_lines(&node);
        assert!(
            text.contains(
                "restore runway: 5days until validator-1-20261101-120000 passes the 30days horizon"
            ),
            "{text}"
        );
        assert!(text.contains("LOW (below 7days)"), "{text}");
        assert!(text.contains("down for: at least 2h"), "{text}");
        assert!(
            text.contains("MemberDisabled") && !text.contains("reonboard"),
            "{text}"
        );
        if let Some(r) = node.runway.as_mut() {
            r.restore.backup = None;
            r.down = None;
        }
        let text = runway_lines(&node);
        assert!(text.contains("no restorable backup"), "{text}");
        assert!(!text.contains("down for"), "{text}");
    }

    #[test]
    fn a_progress_line_never_wraps_an_80_column_terminal() {
        let gauge = bar(512 << 20, 1 << 30, 24);
        let what = "restore participant-0 from validator-1-20261206-041331";
        let nine = std::time::Duration::from_secs(9);
        let rate = describe_with_rate(what, 512 << 20, Some(1 << 30), "bytes", nine);
        let line = format!("    {gauge} {rate}");
        assert!(line.chars().count() > 80, "the case of the issue: {line}");
        let fitted = fit_line(&line, 80);
        assert_eq!(fitted.chars().count(), 79, "{fitted}");
        assert!(fitted.ends_with('…') && line.starts_with(fitted.trim_end_matches('…')));
        assert_eq!(fit_line("short", 80), "short");
        assert_eq!(fit_line(&line, 0).chars().count(), 1);
    }

    /// After a failed migrating start, status says what the node runs and which command
    /// finishes the migration.
    #[test]
    fn an_unproven_migration_names_the_restart_that_finishes_it() {
        let n = NodeStatus {
            name: Some("validator-1".into()),
            migration_id: Some(0),
            running_migration_id: Some(1),
            migration_unproven: true,
            ..NodeStatus::default()
        };
        let text = identity_lines(&n);
        assert!(
            text.contains("runs migration 1 since a network DR"),
            "{text}"
        );
        assert!(
            text.contains("migrating start to migration 1 was not seen healthy")
                && text.contains("splice-dr run restart --node validator-1"),
            "{text}"
        );
    }
}
