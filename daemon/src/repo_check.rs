//! `repo check`, periodically: every repository is listed, written to, read back and
//! cleaned; the result becomes the `splice_dr_repository_up` metric and, when it changes,
//! a `repository.down` / `repository.up` event (label `repository`) that rules can act on
//! — an unreachable bucket is found before the backup that needed it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventBus};
use splice_dr_repo::offsite::CheckReport;
use splice_dr_repo::Repository;

/// Checks the local repository and every off-site one.
pub fn check_all(repo: &Repository) -> Vec<CheckReport> {
    let mut out = vec![repo.check()];
    out.extend(repo.offsite().repos().iter().map(|r| r.check()));
    out
}

/// Checks every `interval` until `shutdown`, recording metrics and publishing changes.
pub async fn check_loop(
    repo: Repository,
    bus: EventBus,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        let repo = repo.clone();
        let reports = tokio::task::spawn_blocking(move || check_all(&repo))
            .await
            .unwrap_or_default();
        for r in reports {
            crate::metrics::repository_checked(&r.repository, r.ok, r.free_bytes);
            let was = last.insert(r.repository.clone(), r.ok);
            if was == Some(r.ok) || (was.is_none() && r.ok) {
                continue;
            }
            let name = if r.ok {
                "repository.up"
            } else {
                "repository.down"
            };
            let failures: Vec<&str> = r
                .checks
                .iter()
                .filter(|c| c.contains("FAILED") || c.contains("unreadable"))
                .map(String::as_str)
                .collect();
            let message = if r.ok {
                format!(
                    "repository {} ({}) is reachable again",
                    r.repository, r.location
                )
            } else {
                format!(
                    "repository {} ({}) failed its check: {}",
                    r.repository,
                    r.location,
                    failures.join("; ")
                )
            };
            tracing::warn!("{message}");
            bus.publish(Event::new(name, None, message).with_label("repository", &r.repository));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
