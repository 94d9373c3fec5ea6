//! The kill-at-every-step harness: start the daemon with the debug-build pause hook
//! (`SPLICE_DR_TEST_PAUSE_AT_STEP` / `_IN_STEP`, see daemon/src/flows/test_pause.rs),
//! start a flow, wait until the daemon is frozen at the chosen point, SIGKILL it, and
//! restart it so start-up recovery runs.
#![allow(dead_code)]

use super::{wait_for, DaemonProcess, Site};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where a run is frozen and killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillPoint {
    /// When the N-th journaled step (1-based) has started, before it does anything.
    AtStep(usize),
    /// Inside the N-th step, once it reported progress with work done.
    InStep(usize),
}

impl KillPoint {
    fn env(self) -> (&'static str, usize) {
        match self {
            KillPoint::AtStep(n) => ("SPLICE_DR_TEST_PAUSE_AT_STEP", n),
            KillPoint::InStep(n) => ("SPLICE_DR_TEST_PAUSE_IN_STEP", n),
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

/// Names of the steps of run `id`, in journal order.
pub fn step_names(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The journal record of run `id`.
pub fn run_record(state_dir: &Path, id: &str) -> Value {
    let path = state_dir.join("runs").join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The newest run of `flow` in the journal.
pub fn newest_run(state_dir: &Path, flow: &str) -> Option<Value> {
    let mut runs: Vec<Value> = std::fs::read_dir(state_dir.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(|r| r["flow"] == flow)
        .collect();
    runs.sort_by_key(|r| r["created_at"].as_str().unwrap_or_default().to_string());
    runs.pop()
}

/// A daemon frozen (or about to be) at a kill point.
pub struct Paused {
    pub daemon: DaemonProcess,
    pub marker: PathBuf,
}

/// Starts the daemon of `config` with the pause hook armed at `point`.
pub fn start_paused(
    cmd: Command,
    sock: &Path,
    log: &Path,
    point: KillPoint,
    marker: &Path,
) -> Paused {
    let _ = std::fs::remove_file(marker);
    let (var, n) = point.env();
    let mut cmd = cmd;
    let child = cmd
        .arg("daemon")
        .env(var, n.to_string())
        .env("SPLICE_DR_TEST_PAUSE_MARKER", marker)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(30), "daemon socket", || {
        std::os::unix::net::UnixStream::connect(sock).is_ok()
    });
    Paused {
        daemon: DaemonProcess::from_child(child),
        marker: marker.to_path_buf(),
    }
}

/// Starts the daemon of a [`Site`] with the pause hook armed.
pub fn start_site_paused(site: &Site, point: KillPoint) -> Paused {
    start_paused(
        site.cmd(),
        &site.path("splice-dr.sock"),
        &site.path("daemon.log"),
        point,
        &site.path("pause-marker"),
    )
}

impl Paused {
    /// Waits until the daemon is frozen at its point (`Some(marker text)`), or until
    /// `client` (the CLI following the run) exits first: the point was never reached.
    pub fn wait(&self, client: &mut Child, limit: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.marker) {
                return Some(text.trim().to_string());
            }
            if client.try_wait().unwrap().is_some() {
                return std::fs::read_to_string(&self.marker)
                    .ok()
                    .map(|t| t.trim().to_string());
            }
            assert!(
                start.elapsed() < limit,
                "the pause point was not reached within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as an OOM killer or a power cut would.
    pub fn kill(mut self) {
        self.daemon.kill().unwrap();
        self.daemon.wait().unwrap();
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
