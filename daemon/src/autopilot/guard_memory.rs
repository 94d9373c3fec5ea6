//! What the guard rails remember across daemon restarts.
//!
//! A breaker that a restart clears is no breaker: a restore that crashes the daemon would
//! be retried by every restart systemd makes, and `max_runs` would count from zero each
//! time. So the engine's per-rule guard state (consecutive failures, the runs in the rate
//! window, cooldown), the operator's pause and the automatic runs still in flight are kept
//! in `<state_dir>/rules-memory.json` and read back on start. `for` waits are not kept: a
//! restart restarts them, which only delays an automatic run.
//!
//! This module is the data and its file; `RuleEngine::memory` and `RuleEngine::remember`
//! (splice-dr-automation) move each rule's [`RuleMemory`] in and out of the engine, which
//! stays free of file I/O.

use serde::{Deserialize, Serialize};
pub use splice_dr_automation::rules::RuleMemory;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name under the daemon's `state_dir`.
pub const FILE_NAME: &str = "rules-memory.json";
/// Format version written; a file with another version is refused, not guessed at.
const VERSION: u32 = 1;

/// Everything the automatic side remembers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardMemory {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The operator's last `pause` (true) or `resume` (false); `None` if neither was used.
    pub operator_paused: Option<bool>,
    /// Guard state by rule name.
    pub rules: BTreeMap<String, RuleMemory>,
    /// Automatic runs started (or waiting for approval) and not yet settled: run id →
    /// rule. On start they are settled from the journal, so a run the daemon died in
    /// counts as the failure it is.
    pub in_flight: BTreeMap<String, String>,
}

/// Why the memory file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a memory this version understands.
    #[error(
        "{path}: {reason}; move the file away to start with fresh guard state (tripped \
         breakers and the rate window are then forgotten)"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl GuardMemory {
    /// A memory in the current format.
    pub fn new(
        operator_paused: Option<bool>,
        rules: BTreeMap<String, RuleMemory>,
        in_flight: BTreeMap<String, String>,
    ) -> Self {
        GuardMemory {
            version: VERSION,
            operator_paused,
            rules,
            in_flight,
        }
    }

    /// The file under `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Reads the memory; a missing file is an empty memory (first start).
    pub fn load(state_dir: &Path) -> Result<GuardMemory, MemoryError> {
        let path = Self::path(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(MemoryError::Io { path, source }),
        };
        let memory: GuardMemory =
            serde_json::from_slice(&bytes).map_err(|e| MemoryError::Invalid {
                path: path.clone(),
                reason: format!("not valid JSON ({e})"),
            })?;
        if memory.version != VERSION {
            return Err(MemoryError::Invalid {
                path,
                reason: format!(
                    "format version {} (this splice-dr reads {VERSION})",
                    memory.version
                ),
            });
        }
        Ok(memory)
    }

    /// Writes the memory atomically (readers and a crash see the old or the new file).
    pub fn save(&self, state_dir: &Path) -> Result<(), MemoryError> {
        let path = Self::path(state_dir);
        let bytes = serde_json::to_vec_pretty(&GuardMemory {
            version: VERSION,
            ..self.clone()
        })
        .map_err(|e| MemoryError::Invalid {
            path: path.clone(),
            reason: format!("cannot encode ({e})"),
        })?;
        crate::util::write_atomic(&path, &bytes).map_err(|source| MemoryError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn a_missing_file_is_an_empty_memory_and_a_saved_one_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            GuardMemory::load(dir.path()).unwrap(),
            GuardMemory::default()
        );
        let mut m = GuardMemory::new(Some(true), BTreeMap::new(), BTreeMap::new());
        m.rules.insert(
            "r".into(),
            RuleMemory {
                failures: 2,
                fired: vec![Utc::now()],
                ..RuleMemory::default()
            },
        );
        m.in_flight.insert("run-1".into(), "r".into());
        m.save(dir.path()).unwrap();
        let back = GuardMemory::load(dir.path()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_damaged_or_foreign_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(GuardMemory::path(dir.path()), "{not json").unwrap();
        let e = GuardMemory::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(FILE_NAME) && e.contains("not valid JSON"), "{e}");
        assert!(e.contains("move the file away"), "{e}");
        std::fs::write(
            GuardMemory::path(dir.path()),
            r#"{"version":99,"operator_paused":null,"rules":{},"in_flight":{}}"#,
        )
        .unwrap();
        let e = GuardMemory::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format version 99"), "{e}");
    }
}
