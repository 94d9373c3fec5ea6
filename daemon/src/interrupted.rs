//! What interrupted runs left half-done on a node, read from their journal records, and
//! how start-up recovery undoes it: live storage a restore had wiped is put back from the
//! copy it made, and components the runs had stopped are started again — so a daemon
//! killed at any step leaves the node as it was before the run or fully restored.

use splice_dr_plugin_api::{KeptStorage, OpContext};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::events::health::bounded_error;
use crate::flows::runner::NodeRuntime;
use crate::journal::RunRecord;

/// Flows whose failure handling puts copied-aside storage back. `reonboard` is not one:
/// Splice does not resume a failed re-onboard, so its old volume stays aside (listed).
const PUTS_BACK: &[&str] = &["restore"];
/// Starting or stopping one component.
const SCALE_LIMIT: Duration = Duration::from_secs(60);
/// Copying a volume back can take as long as copying it aside did.
const PUT_BACK_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// What the interrupted runs of one node left undone.
#[derive(Debug, Default, Clone)]
pub struct Unfinished {
    /// Components stopped and not started again, in stop order.
    pub stopped: Vec<String>,
    /// Copies whose live storage was wiped and not put back.
    pub replaced: Vec<KeptStorage>,
    /// Why components stay stopped: a run that does not put storage back (reonboard)
    /// died with it wiped, and a validator started on empty databases would onboard anew.
    pub held: Vec<String>,
}

/// Groups what `runs` (just marked interrupted) left undone by node.
pub fn collect(runs: &[RunRecord]) -> BTreeMap<String, Unfinished> {
    let mut out: BTreeMap<String, Unfinished> = BTreeMap::new();
    for r in runs {
        let Some(node) = &r.node else { continue };
        let u = out.entry(node.clone()).or_default();
        let replaced: Vec<KeptStorage> = r
            .kept_storage
            .iter()
            .filter(|n| n.live_replaced)
            .map(|n| n.kept.clone())
            .collect();
        if replaced.is_empty() || PUTS_BACK.contains(&r.flow.as_str()) {
            u.stopped.extend(r.stopped_components.iter().cloned());
            u.replaced.extend(replaced);
        } else {
            u.held.push(format!(
                "run {} ({}) died after wiping {}: its components stay stopped (started on empty storage a validator would onboard anew); the previous data is kept in {}: run {} again, or put the copy back by hand",
                r.id,
                r.flow,
                replaced.iter().map(|k| k.live.as_str()).collect::<Vec<_>>().join(", "),
                replaced.iter().map(|k| k.kept.as_str()).collect::<Vec<_>>().join(", "),
                r.flow
            ));
        }
    }
    out
}

/// Undoes what interrupted runs of node `name` left: puts replaced storage back (with
/// every component stopped, as the backend requires), then starts every component they
/// or this stopped. Returns what it did, for the log.
pub fn recover(name: &str, node: &NodeRuntime, undone: &Unfinished) -> Vec<String> {
    let mut notes: Vec<String> = undone
        .held
        .iter()
        .map(|h| format!("node {name}: {h}"))
        .collect();
    let mut stopped = undone.stopped.clone();
    if !undone.replaced.is_empty() {
        match stop_all(node) {
            Ok(now) => {
                stopped.extend(now);
                notes.extend(put_back(name, node, &undone.replaced));
            }
            Err(e) => notes.push(format!(
                "node {name}: cannot stop its components to put back {}: {e}; stop them and restart the daemon",
                names(&undone.replaced)
            )),
        }
    }
    notes.extend(start_stopped(name, node, &stopped));
    notes
}

fn names(kept: &[KeptStorage]) -> String {
    let list: Vec<String> = kept
        .iter()
        .map(|k| format!("{} from {}", k.live, k.kept))
        .collect();
    list.join(", ")
}

/// Stops every managed component, Postgres last; returns them in stop order.
fn stop_all(node: &NodeRuntime) -> Result<Vec<String>, String> {
    let ctx = OpContext::with_deadline(SCALE_LIMIT);
    let components = node
        .backend
        .components(&ctx)
        .map_err(|e| bounded_error(&e, SCALE_LIMIT))?;
    let mut order: Vec<String> = components
        .into_iter()
        .filter(|c| c.managed)
        .map(|c| c.name)
        .collect();
    order.sort_by_key(|c| c == "postgres");
    for c in &order {
        node.backend
            .scale(&ctx, c, 0)
            .map_err(|e| format!("{c}: {}", bounded_error(&e, SCALE_LIMIT)))?;
    }
    Ok(order)
}

/// Puts each live storage back from its copy. The copy stays (it equals the live data
/// now); `status` lists it with the command that removes it.
fn put_back(name: &str, node: &NodeRuntime, replaced: &[KeptStorage]) -> Vec<String> {
    let ctx = OpContext::with_deadline(PUT_BACK_LIMIT);
    replaced
        .iter()
        .map(|k| match node.backend.restore_kept_storage(&ctx, k) {
            Ok(()) => format!(
                "node {name}: put {} back from {}, which an interrupted restore had wiped",
                k.live, k.kept
            ),
            Err(e) => format!(
                "node {name}: cannot put {} back from {}: {}; the copy holds the previous data",
                k.live,
                k.kept,
                bounded_error(&e, PUT_BACK_LIMIT)
            ),
        })
        .collect()
}

/// Starts the components that were stopped (as every flow does at its end), last stopped
/// first, so a killed run never leaves the node down.
fn start_stopped(name: &str, node: &NodeRuntime, stopped: &[String]) -> Vec<String> {
    let mut order: Vec<&String> = Vec::new();
    for c in stopped.iter().rev() {
        if !order.contains(&c) {
            order.push(c);
        }
    }
    let ctx = OpContext::with_deadline(SCALE_LIMIT);
    order
        .into_iter()
        .map(|c| match node.backend.scale(&ctx, c, 1) {
            Ok(()) => format!("node {name}: started {c}, which an interrupted run had stopped"),
            Err(e) => format!(
                "node {name}: cannot start {c}, which an interrupted run had stopped: {}; start it by hand",
                bounded_error(&e, SCALE_LIMIT)
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::KeptNote;

    fn run(flow: &str, replaced: bool) -> RunRecord {
        let mut r = RunRecord::new(format!("{flow}-1"), flow, Some("n1".into()));
        r.stopped_components = vec!["validator".into(), "postgres".into()];
        r.kept_storage = vec![KeptNote {
            kept: KeptStorage {
                target: "postgres".into(),
                live: "vol".into(),
                kept: "vol__sdr_kept_x".into(),
                bytes: 1,
            },
            live_replaced: replaced,
        }];
        r
    }

    #[test]
    fn a_restore_that_wiped_storage_gets_it_back_and_its_components_started() {
        let u = &collect(&[run("restore", true)])["n1"];
        assert_eq!(u.replaced.len(), 1);
        assert_eq!(u.stopped, ["validator", "postgres"]);
        assert!(u.held.is_empty());
    }

    #[test]
    fn a_copy_not_yet_replacing_anything_is_left_alone() {
        let u = &collect(&[run("restore", false)])["n1"];
        assert!(u.replaced.is_empty());
        assert_eq!(u.stopped.len(), 2);
    }

    #[test]
    fn a_reonboard_that_wiped_storage_keeps_the_node_stopped_and_says_why() {
        let u = &collect(&[run("reonboard", true)])["n1"];
        assert!(u.replaced.is_empty() && u.stopped.is_empty(), "{u:?}");
        assert!(u.held[0].contains("vol__sdr_kept_x"), "{u:?}");
    }
}
