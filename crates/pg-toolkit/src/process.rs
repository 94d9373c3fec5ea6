//! Running external programs (pg tools, operator stop/start commands) so that a run can
//! cancel them, see their progress and report why they failed.
//!
//! Each child runs in its own process group so that cancelling kills the whole tree
//! (`pg_dump -j` forks workers, `sh -c` forks the real command), and its stderr is kept
//! (last lines only) for the error an operator reads.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use splice_dr_plugin_api::{BackendError, OpContext};

/// How often the child's state and the cancel flag are checked.
const POLL: Duration = Duration::from_millis(100);
/// How often the progress callback runs while the child works.
pub const TICK: Duration = Duration::from_millis(500);
/// Bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 8 * 1024;
/// Bytes of stdout kept: half from the start, half from the end. A child that floods its
/// output (a bug, or a hostile script) must not grow the daemon's memory without bound.
pub const STDOUT_CAP: usize = 8 << 20;
/// How long to wait for output pipes after the child exited; a command that left a
/// background process holding them (`start_command` with `&`) must not block the run.
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// Where Debian installs the PostgreSQL 15 client tools when they are not on PATH.
const DEBIAN_PG15_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Finds a PostgreSQL tool: in `bin_dir` when configured, else on PATH, else in Debian's
/// versioned directory.
pub fn find_tool(bin_dir: Option<&Path>, name: &str) -> Result<PathBuf, BackendError> {
    if let Some(dir) = bin_dir {
        let p = dir.join(name);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(BackendError::Config(format!(
                "`{name}` not found in `bin_dir` {}: point `bin_dir` at the PostgreSQL client tools",
                dir.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path).chain([PathBuf::from(DEBIAN_PG15_BIN)]);
    for dir in candidates {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(BackendError::Config(format!(
        "`{name}` not found on PATH nor in {DEBIAN_PG15_BIN}: install the PostgreSQL client \
         tools or set `bin_dir`"
    )))
}

/// What a child wrote, once it succeeded.
#[derive(Debug, Default)]
pub struct Output {
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// The last lines it wrote to stderr (warnings, for the journal).
    pub stderr: String,
}

/// Keeps only the last `STDERR_TAIL` bytes, cut at a line start when possible.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    let mut s = &bytes[start..];
    if start > 0 {
        if let Some(nl) = s.iter().position(|&b| b == b'\n') {
            s = &s[nl + 1..];
        }
    }
    String::from_utf8_lossy(s).trim_end().to_string()
}

/// Output kept from one pipe: the first `head_cap` and the last `tail_cap` bytes, with a
/// count of what was dropped between them.
#[derive(Debug, Default)]
struct Capped {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    omitted: u64,
}

impl Capped {
    fn new(head_cap: usize, tail_cap: usize) -> Self {
        Capped {
            head_cap,
            tail_cap,
            ..Capped::default()
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let head_room = self.head_cap.saturating_sub(self.head.len());
        let n = head_room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        self.tail.extend(bytes);
        if self.tail.len() > self.tail_cap {
            let cut = self.tail.len() - self.tail_cap;
            self.tail.drain(..cut);
            self.omitted += cut as u64;
        }
    }

    /// The kept bytes, with a marker where some were dropped.
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        if self.omitted > 0 {
            out.extend_from_slice(format!("\n… {} bytes omitted …\n", self.omitted).as_bytes());
        }
        out.extend(self.tail.iter());
        out
    }
}

/// Reads a pipe to the end into a shared buffer (so it can be read even if the reader
/// never finishes), sending `index` on `done` when it did.
fn drain(
    mut pipe: impl Read + Send + 'static,
    buf: Arc<Mutex<Capped>>,
    done: mpsc::Sender<usize>,
    index: usize,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut b) = buf.lock() {
                        b.push(&chunk[..n]);
                    }
                }
            }
        }
        let _ = done.send(index);
    })
}

/// Joins the pipe readers that reach end-of-file within [`PIPE_GRACE`]; one still held
/// open by a background process the command left running is let go.
fn join_readers(readers: &mut [Option<thread::JoinHandle<()>>], done: &mpsc::Receiver<usize>) {
    let deadline = Instant::now() + PIPE_GRACE;
    for _ in 0..readers.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match done.recv_timeout(left) {
            Ok(i) => {
                if let Some(h) = readers.get_mut(i).and_then(Option::take) {
                    let _ = h.join();
                }
            }
            Err(_) => break,
        }
    }
}

/// Kills the child's whole process group, then the child itself.
fn kill_tree(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .arg(format!("-{}", child.id()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` (`-INT`, `-KILL`...) to `pid` through kill(1) (the workspace forbids
/// `unsafe`, which `libc::kill` needs); whether kill(1) says it was sent.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` to completion. `shown` is the command line for messages (it must not hold
/// secrets; pass them through `cmd`'s environment). `what` names the step for the
/// `Cancelled` error. `tick` runs about every [`TICK`] while the child works (progress).
///
/// Cancellation kills the process group and returns [`BackendError::Cancelled`]; a non-zero
/// exit returns [`BackendError::Command`] with the end of stderr.
pub fn run(
    ctx: &OpContext,
    mut cmd: Command,
    shown: &str,
    what: &str,
    tick: &mut dyn FnMut(),
) -> Result<Output, BackendError> {
    ctx.check_cancelled(what)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| BackendError::Command {
        command: shown.to_string(),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    let out_buf = Arc::new(Mutex::new(Capped::new(STDOUT_CAP / 2, STDOUT_CAP / 2)));
    let err_buf = Arc::new(Mutex::new(Capped::new(0, STDERR_TAIL)));
    let (done_tx, done_rx) = mpsc::channel();
    let mut readers = Vec::new();
    if let Some(p) = child.stdout.take() {
        readers.push(Some(drain(
            p,
            out_buf.clone(),
            done_tx.clone(),
            readers.len(),
        )));
    }
    if let Some(p) = child.stderr.take() {
        readers.push(Some(drain(p, err_buf.clone(), done_tx, readers.len())));
    }
    // The first tick comes at once, so a watcher learns the step is under way; a cancel
    // raised by a tick is acted on in the same round, before the child can finish.
    let mut last_tick: Option<Instant> = None;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => {
                kill_tree(&mut child);
                return Err(BackendError::io(format!("waiting for `{shown}`"), e));
            }
        }
        if last_tick.is_none_or(|t| t.elapsed() >= TICK) {
            tick();
            last_tick = Some(Instant::now());
        }
        if ctx.is_cancelled() {
            kill_tree(&mut child);
            return Err(BackendError::Cancelled { what: what.into() });
        }
        thread::sleep(POLL);
    };
    join_readers(&mut readers, &done_rx);
    let take = |b: &Arc<Mutex<Capped>>| b.lock().map(|v| v.bytes()).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&take(&out_buf)).into_owned();
    let stderr = tail(&take(&err_buf));
    if status.success() {
        Ok(Output { stdout, stderr })
    } else {
        Err(BackendError::Command {
            command: shown.to_string(),
            status: status.to_string(),
            stderr,
        })
    }
}

/// A command line for messages: the program and its arguments, space-separated.
pub fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn ctx(flag: Arc<AtomicBool>) -> OpContext {
        OpContext::detached(flag)
    }

    #[test]
    fn captures_output_and_failure() {
        let c = ctx(Arc::new(AtomicBool::new(false)));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        let out = run(&c, cmd, "sh", "test", &mut || {}).expect("runs");
        assert_eq!(out.stdout.trim(), "out");
        assert_eq!(out.stderr, "err");

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        match run(&c, cmd, "sh -c fail", "test", &mut || {}) {
            Err(BackendError::Command {
                command,
                status,
                stderr,
            }) => {
                assert_eq!(command, "sh -c fail");
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr, "boom");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cancel_kills_the_child() {
        let flag = Arc::new(AtomicBool::new(false));
        let c = ctx(flag.clone());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30; sleep 30"]);
        let started = Instant::now();
        let mut ticks = 0;
        let r = run(&c, cmd, "sh", "sleeping", &mut || {
            ticks += 1;
            flag.store(true, Ordering::Relaxed);
        });
        assert!(matches!(r, Err(BackendError::Cancelled { .. })), "{r:?}");
        assert_eq!(ticks, 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn background_children_do_not_block() {
        let c = ctx(Arc::new(AtomicBool::new(false)));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 20 & echo started"]);
        let started = Instant::now();
        let out = run(&c, cmd, "sh", "bg", &mut || {}).expect("runs");
        assert!(out.stdout.contains("started"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_tool_names_bin_dir() {
        let e = find_tool(Some(Path::new("/nonexistent")), "pg_dump").expect_err("missing");
        assert!(
            matches!(&e, BackendError::Config(m) if m.contains("pg_dump") && m.contains("bin_dir"))
        );
    }

    /// A child printing 100 MiB leaves at most the cap (plus the marker) in memory and in
    /// the result: its beginning, its end and how much was dropped between.
    #[test]
    fn huge_output_is_capped_head_and_tail() {
        let c = ctx(Arc::new(AtomicBool::new(false)));
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo FIRST; head -c 104857600 /dev/zero | tr '\\0' x; echo; echo LAST",
        ]);
        let out = run(&c, cmd, "sh", "flood", &mut || {}).expect("runs");
        assert!(out.stdout.len() <= STDOUT_CAP + 64, "{}", out.stdout.len());
        assert!(out.stdout.starts_with("FIRST\n"));
        assert!(out.stdout.trim_end().ends_with("LAST"));
        let total = 6 + 104_857_600 + 1 + 5;
        let omitted = total - STDOUT_CAP;
        assert!(
            out.stdout.contains(&format!("… {omitted} bytes omitted …")),
            "marker missing"
        );
    }
}
