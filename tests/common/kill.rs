//! The kill-at-every-step harness: start the daemon with the debug-build pause hook
//! (`SPLICE_DR_TEST_PAUSE_AT_STEP` / `_IN_STEP`, see daemon/src/run_context/test_pause.rs),
//! start a flow, wait until the daemon is frozen at the chosen point, SIGKILL it, and
//! restart it so start-up recovery runs.
#![allow(dead_code)]

use super::{wait_for, DaemonProcess};
use splice_dr_protocol::{RunDetail, RunState, StepState};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where a run is frozen and killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillPoint {
    /// When the N-th journaled step (1-based) has started, before it does anything.
    AtStep(usize),
    /// Inside the N-th step, once it reported progress with work done.
    InStep(usize),
    /// When the first step whose name starts with this has started.
    AtStepNamed(&'static str),
}

impl KillPoint {
    fn env(self) -> (&'static str, String) {
        match self {
            KillPoint::AtStep(n) => ("SPLICE_DR_TEST_PAUSE_AT_STEP", n.to_string()),
            KillPoint::InStep(n) => ("SPLICE_DR_TEST_PAUSE_IN_STEP", n.to_string()),
            KillPoint::AtStepNamed(p) => ("SPLICE_DR_TEST_PAUSE_AT_STEP_NAMED", p.into()),
        }
    }
}

/// The kill points of a flow whose uninterrupted run journaled `steps`: every step
/// boundary, and mid-step for the steps whose name contains one of `long`.
pub fn kill_points(steps: &[String], long: &[&str]) -> Vec<KillPoint> {
    let mut points: Vec<KillPoint> = (1..=steps.len()).map(KillPoint::AtStep).collect();
    for (i, name) in steps.iter().enumerate() {
        if long.iter().any(|l| name.contains(l)) {
            points.push(KillPoint::InStep(i + 1));
        }
    }
    points
}

/// Names of the steps of a run, in journal order.
pub fn step_names(run: &RunDetail) -> Vec<String> {
    run.steps.iter().map(|s| s.name.clone()).collect()
}

/// The journal record of run `id`, read as `show` sends it (the journal keeps runs in
/// the protocol's shape).
pub fn run_record(state_dir: &Path, id: &str) -> RunDetail {
    let path = state_dir.join("runs").join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The newest run of `flow` in the journal.
pub fn newest_run(state_dir: &Path, flow: &str) -> Option<RunDetail> {
    let mut runs: Vec<RunDetail> = std::fs::read_dir(state_dir.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<RunDetail>(&t).ok())
        .filter(|r| r.flow == flow)
        .collect();
    runs.sort_by_key(|r| r.created_at);
    runs.pop()
}

/// The daemon of one site directory (config, `splice-dr.sock`, `daemon.log`), to freeze
/// at kill points and restart.
pub struct Target {
    pub config: PathBuf,
    pub dir: PathBuf,
    /// Environment of the daemon (e.g. what the compose bundle's start.sh reads).
    pub env: Vec<(String, String)>,
}

impl Target {
    /// The daemon of `config`, whose socket and log live in `dir`.
    pub fn new(config: &Path, dir: &Path) -> Target {
        Target {
            config: config.to_path_buf(),
            dir: dir.to_path_buf(),
            env: Vec::new(),
        }
    }

    /// The binary with `--config`.
    pub fn binary(&self) -> Command {
        let mut c = Command::new(super::bin());
        c.arg("--config").arg(&self.config).stdin(Stdio::null());
        c
    }

    fn start(&self, point: Option<KillPoint>) -> DaemonProcess {
        let mut cmd = self.binary();
        cmd.arg("daemon").envs(self.env.iter().cloned());
        if let Some(point) = point {
            let (var, value) = point.env();
            cmd.env(var, value)
                .env("SPLICE_DR_TEST_PAUSE_MARKER", self.dir.join("pause-marker"));
        }
        let log = std::fs::File::create(self.dir.join("daemon.log")).unwrap();
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let sock = self.dir.join("splice-dr.sock");
        wait_for(Duration::from_secs(120), "the daemon to answer", || {
            super::daemon_answers(&sock)
        });
        DaemonProcess::from_child(child)
    }

    /// Starts the daemon without the hook: start-up recovery runs before it answers.
    pub fn restart(&self) -> DaemonProcess {
        self.start(None)
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Starts the daemon with the hook armed at `point`, runs the CLI with `args` through
    /// it, and SIGKILLs the daemon (as an OOM killer or a power cut would) once it is
    /// frozen there. Returns the marker (`STEP NAME`), or `None` when the run ended before
    /// reaching the point.
    pub fn kill_at(&self, point: KillPoint, args: &[&str], limit: Duration) -> Option<String> {
        let marker = self.dir.join("pause-marker");
        let _ = std::fs::remove_file(&marker);
        let mut daemon = self.start(Some(point));
        let mut client = self
            .binary()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let read = || {
            std::fs::read_to_string(&marker)
                .ok()
                .map(|t| t.trim().to_string())
        };
        let start = Instant::now();
        let reached = loop {
            if let Some(text) = read() {
                break Some(text);
            }
            if client.try_wait().unwrap().is_some() {
                break read();
            }
            assert!(
                start.elapsed() < limit,
                "{point:?} not reached within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        let _ = client.wait();
        reached
    }
}

impl Target {
    /// Pids and command lines of the programs started by a daemon of this site (they carry
    /// `SPLICE_DR_OWNER=PID:STATE_DIR`, see daemon/src/orphans.rs) that still run.
    pub fn marked_processes(&self) -> Vec<String> {
        let suffix = format!(":{}", self.dir.join("state").display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if pid.parse::<u32>().is_err() {
                continue;
            }
            let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let marked = env.split(|b| *b == 0).any(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.starts_with("SPLICE_DR_OWNER=") && kv.ends_with(&suffix)
            });
            // A zombie keeps its environ readable only while it runs; skip the dead.
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            if marked && !zombie {
                let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!(
                    "{pid} {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                ));
            }
        }
        found
    }

    /// [`Target::kill_at`], then a restart (start-up recovery) and the check that the
    /// newest run of `flow` is `interrupted`. Returns the marker text and the daemon, or
    /// `None` (nothing killed) when the run ended before reaching the point.
    pub fn kill_and_recover(
        &self,
        point: KillPoint,
        flow: &str,
        args: &[&str],
        limit: Duration,
    ) -> Option<(String, DaemonProcess)> {
        let Some(at) = self.kill_at(point, args, limit) else {
            match newest_run(&self.dir.join("state"), flow) {
                Some(run) => eprintln!(
                    "{point:?}: the run finished before reaching it: {} {:?}",
                    run.state.as_str(),
                    run.error
                ),
                None => eprintln!(
                    "{point:?}: no {flow} run was journaled (refused at the socket?); daemon log:\n{}",
                    self.log()
                ),
            }
            return None;
        };
        let left = self.marked_processes();
        let daemon = self.restart();
        let still = self.marked_processes();
        assert!(
            still.is_empty(),
            "{point:?} ({at}): programs of the killed daemon still run after start-up: {still:?}\n{}",
            self.log()
        );
        if !left.is_empty() {
            eprintln!("{point:?}: start-up ended what the killed daemon left running: {left:?}");
        }
        let run = newest_run(&self.dir.join("state"), flow).unwrap();
        assert_eq!(
            run.state,
            RunState::Interrupted,
            "{point:?} ({at}): {run:?}"
        );
        // A run that took another path than the reference one (e.g. a failed wait under
        // load) is still a valid kill point; say why, so the log explains the step names.
        for s in run.steps.iter().filter(|s| s.state == StepState::Failed) {
            eprintln!(
                "{point:?}: step {} failed before the kill: {:?}",
                s.name, s.error
            );
        }
        Some((at, daemon))
    }
}

/// Which of the two allowed states the node is in after recovery: exactly as before the
/// run, or fully restored; panics naming the kill point otherwise.
pub fn outcome<T: PartialEq + std::fmt::Debug>(
    now: &T,
    before: &T,
    restored: &T,
    at: &str,
) -> &'static str {
    if now == before {
        "as before"
    } else if now == restored {
        "restored"
    } else {
        panic!("{at}: the node is neither as before the run nor restored: {now:?}")
    }
}

/// Runs `sh -c command` and panics with its output unless it succeeds.
pub fn sh(command: &str) {
    let out = Command::new("sh").arg("-c").arg(command).output().unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed: {}",
        super::text(&out)
    );
}
