//! Which process owns a run, precisely enough to tell "still running" from "pid reused".

use serde::{Deserialize, Serialize};

/// A process identity: pid plus its start time in clock ticks since boot (from
/// `/proc/<pid>/stat`), so a recycled pid is not mistaken for the original owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Start time of that process (field 22 of `/proc/<pid>/stat`).
    pub start_ticks: u64,
    /// Host name, for records read on another machine.
    pub host: String,
}

fn start_ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Owner {
    /// The current process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Owner {
            pid,
            start_ticks: start_ticks_of(pid).unwrap_or(0),
            host: host_name(),
        }
    }

    /// Whether the owning process still exists (same pid and same start time).
    pub fn is_alive(&self) -> bool {
        if !self.host.is_empty() && self.host != host_name() {
            // Another machine's run: we cannot tell, so never steal it.
            return true;
        }
        start_ticks_of(self.pid).is_some_and(|t| t == self.start_ticks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_a_recycled_pid_is_not() {
        let me = Owner::current();
        assert!(me.is_alive());
        let recycled = Owner {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!recycled.is_alive());
    }
}
