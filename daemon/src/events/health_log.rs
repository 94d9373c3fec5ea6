//! A durable log of health changes (`state_dir/health/NODE.jsonl`), so a flow can ask
//! whether the node was healthy around a past moment — network DR must take its data
//! snapshot at a time the node was healthy — even across daemon restarts.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::{Event, EventBus};

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEntry {
    /// When it was observed.
    pub at: DateTime<Utc>,
    /// The component (`postgres`, `validator`, …).
    pub component: String,
    /// Up or down from then on.
    pub up: bool,
    /// The probe's detail.
    pub detail: String,
}

/// Where a node's log lives; a name that is not a safe file name is refused, so an event
/// naming `../../x` never builds a path outside `state_dir/health`.
pub fn log_path(state_dir: &Path, node: &str) -> Result<PathBuf, crate::names::NameError> {
    crate::names::check("node", node)?;
    Ok(state_dir.join("health").join(format!("{node}.jsonl")))
}

/// Appends every `health.<component>.up|down` event of the bus to its node's log until
/// the bus closes.
pub async fn record(bus: EventBus, state_dir: PathBuf) {
    let mut rx = bus.subscribe();
    loop {
        match rx.recv().await {
            Ok(ev) => {
                if let Some((node, entry)) = entry_of(&ev) {
                    if let Err(e) = append(&state_dir, &node, &entry) {
                        tracing::warn!(node = %node, "cannot record a health change: {e}");
                    }
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        }
    }
}

fn entry_of(ev: &Event) -> Option<(String, HealthEntry)> {
    let rest = ev.name.strip_prefix("health.")?;
    let (component, state) = rest.rsplit_once('.')?;
    let up = match state {
        "up" => true,
        "down" => false,
        _ => return None,
    };
    Some((
        ev.node.clone()?,
        HealthEntry {
            at: ev.at,
            component: component.to_string(),
            up,
            detail: ev.message.clone(),
        },
    ))
}

/// Appends one entry to `node`'s log (the bus recorder's changes, and the board's first
/// observations that are up).
pub(super) fn append(state_dir: &Path, node: &str, entry: &HealthEntry) -> std::io::Result<()> {
    let path = log_path(state_dir, node)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)
}

/// Every entry of `node`'s log, oldest first; none when there is no log (or the name is
/// not a safe file name). A line that does not parse (a write cut short) is skipped.
pub fn read(state_dir: &Path, node: &str) -> Vec<HealthEntry> {
    let Some(f) = log_path(state_dir, node)
        .ok()
        .and_then(|p| std::fs::File::open(p).ok())
    else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// What the log says about `at ± window`: `None` when the log has nothing before `at`
/// (no history), else the components that were down at some point in that window.
pub fn down_around(
    state_dir: &Path,
    node: &str,
    at: DateTime<Utc>,
    window: Duration,
) -> Option<Vec<HealthEntry>> {
    let entries = read(state_dir, node);
    if !entries.iter().any(|e| e.at <= at) {
        return None;
    }
    let (from, to) = (at - window, at + window);
    let mut down = Vec::new();
    let mut components: Vec<&str> = entries.iter().map(|e| e.component.as_str()).collect();
    components.sort();
    components.dedup();
    for c in components {
        let of_c = entries.iter().filter(|e| e.component == c);
        // The state on entering the window, then every change inside it.
        let before = of_c.clone().rfind(|e| e.at <= from);
        let inside = of_c.filter(|e| e.at > from && e.at <= to);
        if let Some(e) = before.into_iter().chain(inside).find(|e| !e.up) {
            down.push(e.clone());
        }
    }
    Some(down)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_whether_the_node_was_down_around_a_moment() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Utc::now() - Duration::hours(2);
        assert!(down_around(dir.path(), "n", t0, Duration::minutes(5)).is_none());
        let e = |mins: i64, c: &str, up: bool| HealthEntry {
            at: t0 + Duration::minutes(mins),
            component: c.into(),
            up,
            detail: String::new(),
        };
        append(dir.path(), "n", &e(0, "validator", true)).unwrap();
        append(dir.path(), "n", &e(30, "validator", false)).unwrap();
        append(dir.path(), "n", &e(40, "validator", true)).unwrap();
        let w = Duration::minutes(5);
        assert_eq!(
            down_around(dir.path(), "n", t0 + Duration::minutes(10), w),
            Some(vec![])
        );
        let down = down_around(dir.path(), "n", t0 + Duration::minutes(33), w).unwrap();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].component, "validator");
        assert_eq!(
            down_around(dir.path(), "n", t0 + Duration::minutes(60), w),
            Some(vec![])
        );
    }

    #[test]
    fn a_hostile_node_name_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let entry = HealthEntry {
            at: Utc::now(),
            component: "validator".into(),
            up: false,
            detail: String::new(),
        };
        let err = append(&state, "../../x", &entry).unwrap_err();
        assert!(err.to_string().contains("node name"), "{err}");
        assert!(!root.path().join("x.jsonl").exists());
        assert!(!state.exists(), "nothing may be created for a refused name");
        assert!(down_around(&state, "../../x", Utc::now(), Duration::minutes(1)).is_none());
    }
}
