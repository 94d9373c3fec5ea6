//! Human output: live run events on stderr, results on stdout.

use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use crate::run_context::progress::{bar, describe_with_rate};
use crate::run_context::RunEvent;
use crate::socket::protocol::{CRATE_VERSION, PROTOCOL_VERSION};

/// Prints live events of a run to stderr; progress overwrites one line on a terminal and
/// is throttled otherwise.
pub struct EventPrinter {
    tty: bool,
    last_progress: Option<Instant>,
    progress_shown: bool,
    /// When each progress counter was first seen, for rate and ETA.
    progress_started: std::collections::HashMap<String, Instant>,
}

impl Default for EventPrinter {
    fn default() -> Self {
        EventPrinter {
            tty: std::io::stderr().is_terminal(),
            last_progress: None,
            progress_shown: false,
            progress_started: std::collections::HashMap::new(),
        }
    }
}

impl EventPrinter {
    fn clear_progress(&mut self) {
        if self.progress_shown {
            eprint!("\r\x1b[2K");
            self.progress_shown = false;
        }
    }

    /// Prints one event.
    pub fn print(&mut self, ev: &RunEvent) {
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
                    eprint!("\r\x1b[2K    {}{line}", gauge.unwrap_or_default());
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

/// `1.2s`, `3m04s`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// `runs` as a table.
pub fn runs_table(runs: &Value) -> String {
    let mut out = format!(
        "{:<40} {:<12} {:<10} {:<14} {:>9}  {}\n",
        "RUN", "STATE", "FLOW", "NODE", "TOOK", "ERROR"
    );
    for r in runs.as_array().into_iter().flatten() {
        let took = r
            .get("duration_ms")
            .and_then(Value::as_u64)
            .map(fmt_ms)
            .unwrap_or_else(|| "-".into());
        let err = s(r, "error").lines().next().unwrap_or("");
        let state = if r.get("dry_run").and_then(Value::as_bool).unwrap_or(false) {
            format!("{} (dry)", s(r, "state"))
        } else {
            s(r, "state").to_string()
        };
        out.push_str(&format!(
            "{:<40} {:<12} {:<10} {:<14} {:>9}  {}\n",
            s(r, "id"),
            state,
            s(r, "flow"),
            s(r, "node"),
            took,
            if err == "-" { "" } else { err }
        ));
    }
    out
}

/// `show` as text.
pub fn run_details(r: &Value) -> String {
    let mut out = format!(
        "run {}\n  flow: {}  node: {}  trigger: {}  state: {}{}\n  created: {}\n",
        s(r, "id"),
        s(r, "flow"),
        s(r, "node"),
        s(r, "trigger"),
        s(r, "state"),
        if r.get("dry_run").and_then(Value::as_bool).unwrap_or(false) {
            " (dry run)"
        } else {
            ""
        },
        s(r, "created_at"),
    );
    if let Some(reason) = r.get("forced_reason").and_then(Value::as_str) {
        out.push_str(&format!("  FORCED: {reason}\n"));
    }
    if let Some(p) = r
        .get("params")
        .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
    {
        out.push_str(&format!("  params: {p}\n"));
    }
    out.push_str("  steps:\n");
    for st in items(r, "steps") {
        let depth = st.get("depth").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mark = match s(st, "state") {
            "succeeded" => "✓",
            "failed" => "✗",
            "interrupted" => "⚠",
            _ => "…",
        };
        out.push_str(&format!(
            "  {}{mark} {} [{}]",
            "  ".repeat(depth),
            s(st, "name"),
            s(st, "state")
        ));
        if let Some(e) = st.get("error").and_then(Value::as_str) {
            out.push_str(&format!(": {e}"));
        }
        out.push('\n');
        for l in items(st, "log") {
            out.push_str(&format!(
                "  {}    {}\n",
                "  ".repeat(depth),
                l.as_str().unwrap_or("")
            ));
        }
    }
    if let Some(plan) = r
        .get("plan")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    {
        out.push_str("  plan (nothing was changed):\n");
        for l in plan {
            out.push_str(&format!("    {}\n", l.as_str().unwrap_or("")));
        }
    }
    if let Some(e) = r.get("error").and_then(Value::as_str) {
        out.push_str(&format!("  error: {e}\n"));
    }
    if let Some(res) = r.get("result").filter(|v| !v.is_null()) {
        out.push_str(&format!("  result: {res}\n"));
    }
    out
}

/// The elements of the array at `key` (none when it is missing or not an array).
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// `backups` as a table.
pub fn backups_table(v: &Value) -> String {
    let mut out = format!(
        "{:<36} {:<14} {:>9} {:<22} {:>8} {:>10}  {:<16} {:<16} TRUST\n",
        "BACKUP", "NODE", "MIGRATION", "CREATED", "AGE", "SIZE", "DRILL", "WHERE"
    );
    let mut untrusted = Vec::new();
    for b in items(v, "backups") {
        let age = b
            .get("age_secs")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .max(0) as u64;
        let size = b.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        let drill = match b.get("last_drill").filter(|d| !d.is_null()) {
            Some(d) => format!(
                "{} {}",
                s(d, "result"),
                s(d, "at").chars().take(10).collect::<String>()
            ),
            None => "never".to_string(),
        };
        let locations: Vec<&str> = items(b, "locations").filter_map(Value::as_str).collect();
        let locations = if locations.is_empty() {
            "local".to_string()
        } else {
            locations.join(",")
        };
        let trust = if b.get("trusted") == Some(&Value::Bool(false)) {
            untrusted.push(format!(
                "UNTRUSTED {}: {}\n",
                s(b, "id"),
                s(b, "untrusted_because")
            ));
            "untrusted"
        } else {
            "signed"
        };
        out.push_str(&format!(
            "{:<36} {:<14} {:>9} {:<22} {:>8} {:>10}  {drill:<16} {locations:<16} {trust}\n",
            s(b, "id"),
            s(b, "node"),
            b.get("migration_id").and_then(Value::as_u64).unwrap_or(0),
            s(b, "created_at").chars().take(19).collect::<String>(),
            humantime::format_duration(std::time::Duration::from_secs(age - age % 60))
                .to_string()
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(""),
            crate::run_context::progress::human_bytes(size),
        ));
    }
    out.extend(untrusted);
    for e in items(v, "unreadable") {
        out.push_str(&format!("UNREADABLE: {}\n", e.as_str().unwrap_or("")));
    }
    for e in items(v, "problems") {
        out.push_str(&format!("PROBLEM: {}\n", e.as_str().unwrap_or("")));
    }
    out
}

/// `prune` (and `prune --dry-run`) as text, repository by repository.
pub fn prune_text(v: &Value) -> String {
    let dry = v.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
    let mut out = String::new();
    for r in items(v, "repositories") {
        let policy = match r.get("policy").filter(|p| !p.is_null()) {
            Some(p) => p
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            None => "no retention: keeps everything".into(),
        };
        out.push_str(&format!("repository {} ({policy})\n", s(r, "repository")));
        let delete = r
            .get("delete")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let deleted: Vec<&str> = items(r, "deleted").filter_map(Value::as_str).collect();
        for c in &delete {
            let id = s(c, "id");
            let verb = if dry {
                "would delete"
            } else if deleted.contains(&id) {
                "deleted"
            } else {
                "kept"
            };
            out.push_str(&format!(
                "  {verb:<12} {id}  (node {}, taken {})\n",
                s(c, "node"),
                s(c, "created_at").chars().take(19).collect::<String>()
            ));
        }
        out.push_str(&format!(
            "  keeps {} backup(s){}\n",
            r.get("keep").and_then(Value::as_u64).unwrap_or(0),
            if delete.is_empty() {
                ", deletes none"
            } else {
                ""
            }
        ));
        for e in items(r, "errors") {
            out.push_str(&format!("  ERROR: {}\n", e.as_str().unwrap_or("")));
        }
    }
    if dry {
        out.push_str("dry run: nothing was deleted (run without --dry-run to apply)\n");
    }
    out
}

/// `repo check` as text.
pub fn repo_check_text(v: &Value) -> String {
    let mut out = String::new();
    for r in items(v, "repositories") {
        let ok = r.get("ok").and_then(Value::as_bool).unwrap_or(false);
        let free = r
            .get("free_bytes")
            .and_then(Value::as_u64)
            .map(|b| format!("{} free", crate::run_context::progress::human_bytes(b)))
            .unwrap_or_else(|| "free space not reported".into());
        out.push_str(&format!(
            "{} {} ({}): {} backups, {free}\n",
            if ok { "OK    " } else { "FAILED" },
            s(r, "repository"),
            s(r, "location"),
            r.get("backups").and_then(Value::as_u64).unwrap_or(0),
        ));
        for c in items(r, "checks") {
            out.push_str(&format!("    {}\n", c.as_str().unwrap_or("")));
        }
        let incomplete: Vec<&str> = items(r, "incomplete").filter_map(Value::as_str).collect();
        if !incomplete.is_empty() {
            out.push_str(&format!(
                "    {} interrupted upload(s), never listed, removed by the node's next backup: {}\n",
                incomplete.len(),
                incomplete.join(", ")
            ));
        }
    }
    out
}

/// `status` lines about drills: the newest backup's drill state and the node's last drill.
fn drill_lines(n: &Value) -> String {
    let mut out = String::new();
    let Some(b) = n.get("last_backup").filter(|b| !b.is_null()) else {
        return out;
    };
    match b.get("drill").filter(|d| !d.is_null()) {
        Some(d) => out.push_str(&format!(
            "  newest backup's drill: {} at {}\n",
            s(d, "result"),
            s(d, "at").chars().take(19).collect::<String>()
        )),
        None => out.push_str(
            "  newest backup's drill: never — prove it restores with `splice-dr drill`\n",
        ),
    }
    if let Some(d) = n.get("last_drill").filter(|d| !d.is_null()) {
        if s(d, "backup") != s(b, "id") {
            out.push_str(&format!(
                "  last drill: {} at {} (backup {})\n",
                s(d, "result"),
                s(d, "at").chars().take(19).collect::<String>(),
                s(d, "backup")
            ));
        }
        if s(d, "result") == "failed" {
            out.push_str(&format!("  DRILL FAILED: {}\n", s(d, "detail")));
        }
    }
    out
}

/// `ping` as text: the daemon's version first, since that is what an operator checks
/// after an upgrade.
pub fn ping_text(v: &Value) -> String {
    format!(
        "pong: splice-dr {} ({}), protocol {}",
        s(v, "daemon_version"),
        s(v, "mode"),
        v["protocol"]
    )
}

/// A one-line warning when the daemon's reply says it speaks another protocol than this
/// CLI: commands one side does not know are refused (`version_skew`), so say it up front.
/// `None` when they agree or the daemon (older than versioning) does not say.
pub fn protocol_warning(v: &Value) -> Option<String> {
    let theirs = v.get("protocol")?.as_u64()?;
    (theirs != PROTOCOL_VERSION).then(|| {
        format!(
            "the daemon speaks protocol {theirs} (splice-dr {}), this CLI protocol \
             {PROTOCOL_VERSION} (splice-dr {CRATE_VERSION}); commands one side does not know \
             are refused: use a CLI of the daemon's version",
            s(v, "daemon_version")
        )
    })
}

/// `status` as text.
pub fn status_text(v: &Value) -> String {
    let mut out = format!(
        "splice-dr {}({}) pid {} — config {}\n",
        v.get("daemon_version")
            .and_then(Value::as_str)
            .map(|d| format!("{d} "))
            .unwrap_or_default(),
        s(v, "mode"),
        v.get("pid").and_then(Value::as_u64).unwrap_or(0),
        v["config"]["file"].as_str().unwrap_or("-"),
    );
    if let Some(e) = v["config"]["error"].as_str() {
        out.push_str(&format!(
            "  CONFIG CHANGE REJECTED (previous config in force): {e}\n"
        ));
    }
    let le = &v["leader"];
    if le["enabled"] == true {
        let holder = le["holder"].as_str().unwrap_or("nobody yet");
        out.push_str(&if le["leader"] == true {
            format!(
                "leader: yes — this replica ({}) holds Lease {} and runs flows\n",
                s(le, "identity"),
                s(le, "lease")
            )
        } else {
            format!(
                "leader: no — replica {holder} holds Lease {}; this one ({}) runs no flows\n",
                s(le, "lease"),
                s(le, "identity")
            )
        });
    }
    for n in items(v, "nodes") {
        out.push_str(&format!(
            "node {} ({}, migration id {})\n",
            s(n, "name"),
            s(n, "backend"),
            n["migration_id"]
        ));
        if let Some(p) = n.get("probe").and_then(Value::as_str) {
            out.push_str(&format!("  {p}\n"));
            continue;
        }
        if let Some(age) = n.get("age_seconds").and_then(Value::as_f64) {
            out.push_str(&format!("  as probed {age:.1}s ago\n"));
        }
        match n.get("last_backup").filter(|b| !b.is_null()) {
            Some(b) => {
                let age = b["age_secs"].as_i64().unwrap_or(0).max(0) as u64;
                out.push_str(&format!(
                    "  last backup: {} ({} ago)\n",
                    s(b, "id"),
                    humantime::format_duration(std::time::Duration::from_secs(age))
                ));
            }
            None => out.push_str("  last backup: none — take one with `splice-dr backup`\n"),
        }
        out.push_str(&drill_lines(n));
        if let Some(m) = n.get("running_migration_id").and_then(Value::as_u64) {
            out.push_str(&format!(
                "  runs migration {m} since a network DR: set migration_id = {m} in the config\n"
            ));
        }
        if n.get("migration_unproven").and_then(Value::as_bool) == Some(true) {
            out.push_str(
                "  the migrating start was not yet seen healthy: every start migrates again; \
                 run dr_snapshot again with the same migration_id to finish it\n",
            );
        }
        if let Some(id) = n.get("reonboarding").and_then(Value::as_str) {
            out.push_str(&format!(
                "  a re-onboard as {id} did not finish: plain starts are refused; run reonboard again\n"
            ));
        }
        if let Some(id) = n.get("participant_id").and_then(Value::as_str) {
            out.push_str(&format!(
                "  participant id: {id} (since a re-onboard; every start passes it)\n"
            ));
        }
        for c in items(n, "components") {
            out.push_str(&format!(
                "  component {}: {} ready={} {}\n",
                s(c, "name"),
                s(c, "state"),
                c["ready"],
                s(c, "detail")
            ));
        }
        for d in items(n, "databases") {
            out.push_str(&format!(
                "  database {} ({}): {}\n",
                s(d, "name"),
                s(d, "role"),
                if d["exists"].as_bool().unwrap_or(false) {
                    "present"
                } else {
                    "MISSING"
                }
            ));
        }
        for key in ["components_error", "databases_error", "leftovers_error"] {
            if let Some(e) = n.get(key).and_then(Value::as_str) {
                out.push_str(&format!("  {}: {e}\n", key.replace('_', " ")));
            }
        }
        for k in n["leftovers"]["staged"].as_array().into_iter().flatten() {
            out.push_str(&format!("  SCRATCH DATABASE {}: left by an interrupted restore or drill; the next daemon start drops it\n", k.as_str().unwrap_or("")));
        }
        for k in n["leftovers"]["kept"].as_array().into_iter().flatten() {
            let k = k.as_str().unwrap_or("");
            let how = match n["leftovers"]["remove_commands"][k].as_str() {
                Some(cmd) => format!("remove it with: {cmd}"),
                None => "drop it".into(),
            };
            out.push_str(&format!("  KEPT DATABASE {k}: previous data from an interrupted restore; once the node is verified, {how}\n"));
        }
    }
    let active = v
        .get("active_runs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    out.push_str(&format!(
        "active runs: {}\n",
        if active.is_empty() {
            "none".to_string()
        } else {
            active.len().to_string()
        }
    ));
    for r in &active {
        out.push_str(&format!(
            "  {} {} on {} — {}\n",
            s(r, "id"),
            s(r, "flow"),
            s(r, "node"),
            s(r, "current_step")
        ));
    }
    if let Some(a) = v.get("automation").filter(|a| !a.is_null()) {
        let paused = a["paused"].as_bool().unwrap_or(false);
        out.push_str(&format!(
            "automation: {}\n",
            if paused {
                "PAUSED (`splice-dr resume` re-arms it)"
            } else {
                "armed"
            }
        ));
        if let Some(e) = a["memory_error"].as_str() {
            out.push_str(&format!(
                "  RULES MEMORY NOT WRITTEN: {e} — a restart now would forget tripped breakers\n"
            ));
        }
        for r in a["rules"].as_array().into_iter().flatten() {
            let mut line = format!(
                "  rule {:<24} {:<12} on {}",
                s(r, "rule"),
                s(r, "state"),
                s(r, "on")
            );
            if let Some(u) = r.get("until").and_then(Value::as_str) {
                line.push_str(&format!(" (until {u})"));
            }
            if r["failures"].as_u64().unwrap_or(0) > 0 {
                line.push_str(&format!(
                    " — {} failed run(s) of {}",
                    r["failures"], r["breaker"]
                ));
            }
            out.push_str(&line);
            out.push('\n');
        }
        for sch in a["schedules"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  schedule {:<20} {} next {}{}\n",
                s(sch, "name"),
                s(sch, "cron"),
                s(sch, "next_at"),
                if sch["stale"].as_bool().unwrap_or(false) {
                    " — LAST BACKUP TOO OLD"
                } else {
                    ""
                }
            ));
        }
        for p in a["pending_approvals"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  PENDING APPROVAL {} ({} by rule {}, expires {}): `splice-dr approve {}`\n",
                s(p, "run"),
                s(p, "flow"),
                s(p, "rule"),
                s(p, "expires_at"),
                s(p, "run")
            ));
        }
        for q in a["queue"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  queued (node busy) since {}: rule {}\n",
                s(q, "since"),
                s(q, "rule")
            ));
        }
        for d in a["recent_decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .take(5)
        {
            out.push_str(&format!(
                "  {} {}: {}\n",
                s(d, "at").chars().take(19).collect::<String>(),
                s(d, "rule"),
                s(d, "outcome")
            ));
        }
    }
    if let Some(h) = v.get("health").filter(|h| !h.is_null()) {
        for c in h["current"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "health {}/{}: {} since {} {}\n",
                s(c, "node"),
                s(c, "component"),
                if c["up"].as_bool().unwrap_or(false) {
                    "up"
                } else {
                    "DOWN"
                },
                s(c, "at").chars().take(19).collect::<String>(),
                s(c, "detail")
            ));
        }
    }
    out.push_str("flows:\n");
    for f in items(v, "flows") {
        out.push_str(&format!(
            "  {:<12} {}{}\n",
            s(f, "name"),
            s(f, "source"),
            if f["destructive"].as_bool().unwrap_or(false) {
                " (destructive)"
            } else {
                ""
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ping_shows_the_daemons_version() {
        let v = json!({"pong": true, "mode": "daemon", "daemon_version": "9.8.7", "protocol": 1});
        assert_eq!(ping_text(&v), "pong: splice-dr 9.8.7 (daemon), protocol 1");
        let st = json!({"mode": "daemon", "daemon_version": "9.8.7", "pid": 4});
        assert!(status_text(&st).starts_with("splice-dr 9.8.7 (daemon) pid 4"));
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
}
