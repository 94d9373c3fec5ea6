//! Prometheus metrics: the `/metrics` listener (`[metrics] listen`, which also answers the
//! probes' `/healthz`) and one typed function per thing the daemon measures, so metric
//! names and labels live in this file only.
//!
//! The recorder is process-global. Before [`install`] (or when `[metrics]` is absent) every
//! recording function is a cheap no-op, so callers never check whether metrics are on.
//! Every metric is documented in `docs/METRICS.md`.

use chrono::{DateTime, Utc};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Gauge: 1 when a repository's last check passed.
pub const REPOSITORY_UP: &str = "splice_dr_repository_up";
/// Gauge: free bytes of a repository's storage.
pub const REPOSITORY_FREE_BYTES: &str = "splice_dr_repository_free_bytes";
/// `counter{flow,result}`: finished runs.
pub const RUNS_TOTAL: &str = "splice_dr_runs_total";
/// `histogram{flow}`: wall-clock duration of finished runs, in seconds.
pub const RUN_DURATION_SECONDS: &str = "splice_dr_run_duration_seconds";
/// `gauge{node}`: Unix time of the newest successful backup.
pub const LAST_SUCCESSFUL_BACKUP_TIMESTAMP_SECONDS: &str =
    "splice_dr_last_successful_backup_timestamp_seconds";
/// `gauge{node}`: size of the newest successful backup, in bytes.
pub const BACKUP_SIZE_BYTES: &str = "splice_dr_backup_size_bytes";
/// `gauge{node,component}`: 1 when the component's last health probe passed, else 0.
pub const COMPONENT_UP: &str = "splice_dr_component_up";
/// `gauge{rule}`: 1 while the rule's circuit breaker is tripped.
pub const RULE_BREAKER_TRIPPED: &str = "splice_dr_rule_breaker_tripped";
/// `gauge`: runs waiting for an operator's approval.
pub const PENDING_APPROVALS: &str = "splice_dr_pending_approvals";
/// `gauge{node}`: 1 when the newest backup is older than the staleness threshold.
pub const BACKUP_STALE: &str = "splice_dr_backup_stale";

/// `gauge{node}`: seconds until the node's newest restorable backup passes
/// `repository.max_age` (negative once passed, 0 when there is none).
pub const RESTORE_RUNWAY_SECONDS: &str = "splice_dr_restore_runway_seconds";
/// `gauge{node}`: seconds since the node was last healthy (0 while it is).
pub const DOWN_SECONDS: &str = "splice_dr_down_seconds";
/// `gauge{node}`: seconds left before a node that stays down passes `repository.max_age`
/// and the network disables it (negative once passed).
pub const DOWN_RUNWAY_SECONDS: &str = "splice_dr_down_runway_seconds";

/// `gauge{node}`: 1 when the node's last restore drill passed, 0 when it failed.
pub const LAST_DRILL_SUCCESS: &str = "splice_dr_last_drill_success";
/// `gauge{node}`: Unix time the node's last restore drill ended.
pub const LAST_DRILL_TIMESTAMP_SECONDS: &str = "splice_dr_last_drill_timestamp_seconds";

/// `gauge{version,commit}`: always 1; its labels say which build runs.
pub const BUILD_INFO: &str = "splice_dr_build_info";

/// `gauge{node}`: seconds since the node's stored WAL last held everything its server had
/// written (continuous WAL): the restore point objective, low on an idle server too.
pub const RPO_SECONDS: &str = "splice_dr_rpo_seconds";
/// `gauge{node}`: WAL the server keeps for the node's replication slot that is not stored
/// yet, in bytes.
pub const WAL_SLOT_LAG_BYTES: &str = "splice_dr_wal_slot_lag_bytes";
/// `gauge{node}`: 1 while the node's WAL receiver runs.
pub const WAL_RECEIVING: &str = "splice_dr_wal_receiving";

/// `histogram{node,op,outcome}`: duration of one backend call (`dump`, `wait_ready`,
/// `restore_staged`, …), in seconds; `outcome` is `ok` or the error's kind.
pub const BACKEND_CALL_SECONDS: &str = "splice_dr_backend_call_seconds";

/// Buckets of [`BACKEND_CALL_SECONDS`]: a status read takes milliseconds, a dump or a
/// restore of a participant minutes to hours.
pub const BACKEND_CALL_BUCKETS: &[f64] = &[
    0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0,
];

/// Buckets of [`RUN_DURATION_SECONDS`]: a backup takes seconds to minutes, a participant
/// restore minutes to hours.
pub const RUN_DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
];

/// Why the metrics listener could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound (port taken, address not local, no permission).
    #[error("cannot listen for Prometheus scrapes on {listen}: {reason} (is another process using the port? set [metrics] listen to a free IP:PORT)")]
    Bind {
        /// The configured address.
        listen: SocketAddr,
        /// The operating system's reason.
        reason: String,
    },
    /// This process already serves metrics on another address (the listener cannot move
    /// without a restart).
    #[error("metrics are already served on {current}; moving the listener to {requested} needs a restart")]
    AlreadyInstalled {
        /// Where they are served.
        current: SocketAddr,
        /// What was asked for.
        requested: SocketAddr,
    },
    /// Any other exporter failure (e.g. another metrics recorder is installed).
    #[error("cannot start the Prometheus exporter: {0}")]
    Exporter(String),
}

/// The address metrics are served on, once installed.
static INSTALLED: Mutex<Option<SocketAddr>> = Mutex::new(None);

/// Where [`install`] put the listener, if it did.
pub fn installed_at() -> Option<SocketAddr> {
    *INSTALLED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the Prometheus exporter on `listen` (`GET /metrics`) and makes it the process's
/// metrics recorder.
///
/// Idempotent: installing again on the same address is `Ok`; another address is
/// [`MetricsError::AlreadyInstalled`]. A taken port is [`MetricsError::Bind`] and leaves
/// nothing installed, so a later call may retry. Inside a Tokio runtime the listener runs
/// on that runtime; outside one the exporter starts its own thread.
pub fn install(listen: SocketAddr) -> Result<(), MetricsError> {
    install_with(listen, crate::http_limits::HttpLimits::default())
}

/// [`install`] with the listener bounded by `limits` (connections, head and exchange
/// deadlines): the exporter's own listener has none, so `/metrics` is served here.
pub fn install_with(
    listen: SocketAddr,
    limits: crate::http_limits::HttpLimits,
) -> Result<(), MetricsError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(current) = *installed {
        return if current == listen {
            Ok(())
        } else {
            Err(MetricsError::AlreadyInstalled {
                current,
                requested: listen,
            })
        };
    }
    // Bind first: a taken port must leave nothing installed, so a later call may retry.
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| MetricsError::Bind {
            listen,
            reason: e.to_string(),
        })?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(RUN_DURATION_SECONDS.to_string()),
            RUN_DURATION_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(BACKEND_CALL_SECONDS.to_string()),
                BACKEND_CALL_BUCKETS,
            )
        })
        .map_err(|e| MetricsError::Exporter(e.to_string()))?
        .install_recorder()
        .map_err(|e: BuildError| MetricsError::Exporter(e.to_string()))?;
    serve_scrapes(listener, handle, limits)?;
    *installed = Some(listen);
    describe();
    describe_repositories();
    tracing::info!(%listen, "serving Prometheus metrics on http://{listen}/metrics");
    Ok(())
}

/// Liveness and readiness path on the metrics listener (Kubernetes probes): answers `200
/// ok` while the daemon's runtime serves requests. The listener starts only after start-up
/// recovery and the first status round, so an answer also means the daemon finished
/// starting.
pub const HEALTHZ: &str = "/healthz";

/// Serves `GET /metrics` and `GET /healthz` on `listener` for the life of the process: on
/// the current Tokio runtime when there is one, else on a thread of its own.
fn serve_scrapes(
    listener: std::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    limits: crate::http_limits::HttpLimits,
) -> Result<(), MetricsError> {
    let upkeep = handle.clone();
    let router = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move { handle.render() }
            }),
        )
        .route(HEALTHZ, axum::routing::get(|| async { "ok\n" }));
    let run = move || async move {
        // What the exporter's own listener did: keep histogram buffers from growing
        // between scrapes.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => {
                let forever = tokio_util::sync::CancellationToken::new();
                crate::http_limits::serve(l, router, limits, forever).await;
            }
            Err(e) => tracing::error!("the metrics listener stopped: {e}"),
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(run());
        }
        Err(_) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| MetricsError::Exporter(e.to_string()))?;
            std::thread::spawn(move || rt.block_on(run()));
        }
    }
    Ok(())
}

/// HELP texts of every metric (rendered as `# HELP` lines).
fn describe() {
    describe_counter!(RUNS_TOTAL, "Finished flow runs, by flow and result.");
    describe_histogram!(
        RUN_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Wall-clock duration of finished flow runs."
    );
    describe_histogram!(
        BACKEND_CALL_SECONDS,
        metrics::Unit::Seconds,
        "Duration of backend calls, by node, operation and outcome."
    );
    describe_gauge!(
        LAST_SUCCESSFUL_BACKUP_TIMESTAMP_SECONDS,
        metrics::Unit::Seconds,
        "Unix time of the newest successful backup of the node."
    );
    describe_gauge!(
        BACKUP_SIZE_BYTES,
        metrics::Unit::Bytes,
        "Size of the newest successful backup of the node."
    );
    describe_gauge!(
        COMPONENT_UP,
        "1 when the component's last health probe passed, 0 when it failed."
    );
    describe_gauge!(
        RULE_BREAKER_TRIPPED,
        "1 while the rule's circuit breaker is tripped (the rule no longer starts flows)."
    );
    describe_gauge!(
        PENDING_APPROVALS,
        "Runs waiting for an operator's approval."
    );
    describe_gauge!(
        LAST_DRILL_SUCCESS,
        "1 when the node's last restore drill passed, 0 when it failed."
    );
    describe_gauge!(
        LAST_DRILL_TIMESTAMP_SECONDS,
        metrics::Unit::Seconds,
        "Unix time the node's last restore drill ended."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels name the running build's version and git commit."
    );
    describe_gauge!(
        BACKUP_STALE,
        "1 when the node's newest backup is older than the staleness threshold."
    );
    describe_runway();
    describe_wal();
}

/// Describes the continuous-WAL gauges.
fn describe_wal() {
    describe_gauge!(
        RPO_SECONDS,
        metrics::Unit::Seconds,
        "Seconds since the node's stored WAL last held everything its server had written."
    );
    describe_gauge!(
        WAL_SLOT_LAG_BYTES,
        metrics::Unit::Bytes,
        "WAL the server keeps for the node's replication slot that is not stored yet."
    );
    describe_gauge!(WAL_RECEIVING, "1 while the node's WAL receiver runs.");
}

/// Describes the recovery runway metrics (all gauges in seconds).
fn describe_runway() {
    for (name, help) in [
        (
            RESTORE_RUNWAY_SECONDS,
            "Seconds until the node's newest restorable backup passes repository.max_age (negative once passed, 0 when there is none).",
        ),
        (
            DOWN_SECONDS,
            "Seconds since the node was last healthy (0 while it is).",
        ),
        (
            DOWN_RUNWAY_SECONDS,
            "Seconds before a node that stays down passes repository.max_age and is disabled by the network (negative once passed).",
        ),
    ] {
        describe_gauge!(name, metrics::Unit::Seconds, help);
    }
}

/// Describes the repository metrics (kept apart from `describe` so each concept's HELP
/// text sits next to its recorder).
fn describe_repositories() {
    describe_gauge!(
        REPOSITORY_UP,
        "1 when the repository's last check (list, write, read back) passed, else 0."
    );
    describe_gauge!(
        REPOSITORY_FREE_BYTES,
        metrics::Unit::Bytes,
        "Free bytes where the repository's storage reports them (directories)."
    );
}

/// Which build runs (`splice_dr_build_info{version,commit} 1`): set once at daemon start,
/// so a fleet's dashboards can tell which nodes run which build and see an upgrade land.
pub fn build_info(version: &str, commit: &str) {
    gauge!(BUILD_INFO, "version" => version.to_string(), "commit" => commit.to_string()).set(1.0);
}

/// The outcome of checking `repository` (`local` or an off-site name).
pub fn repository_checked(repository: &str, up: bool, free_bytes: Option<u64>) {
    gauge!(REPOSITORY_UP, "repository" => repository.to_string()).set(flag(up));
    if let Some(b) = free_bytes {
        gauge!(REPOSITORY_FREE_BYTES, "repository" => repository.to_string()).set(b as f64);
    }
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// A run of `flow` finished with `result` (`succeeded`, `failed`, `cancelled`, …) after
/// `duration`: `splice_dr_runs_total{flow,result}` += 1 and
/// `splice_dr_run_duration_seconds{flow}` observes the duration.
pub fn run_finished(flow: &str, result: &str, duration: Duration) {
    counter!(RUNS_TOTAL, "flow" => flow.to_string(), "result" => result.to_string()).increment(1);
    histogram!(RUN_DURATION_SECONDS, "flow" => flow.to_string()).record(duration.as_secs_f64());
}

/// One call of `node`'s backend ended with `outcome` after `elapsed`.
pub fn backend_call(node: &str, op: &str, outcome: &str, elapsed: Duration) {
    histogram!(
        BACKEND_CALL_SECONDS,
        "node" => node.to_string(),
        "op" => op.to_string(),
        "outcome" => outcome.to_string()
    )
    .record(elapsed.as_secs_f64());
}

/// A backup of `node` taken `at` and `bytes` large was sealed and verified.
pub fn backup_succeeded(node: &str, at: DateTime<Utc>, bytes: u64) {
    let at_seconds = at.timestamp_millis() as f64 / 1000.0;
    gauge!(LAST_SUCCESSFUL_BACKUP_TIMESTAMP_SECONDS, "node" => node.to_string()).set(at_seconds);
    gauge!(BACKUP_SIZE_BYTES, "node" => node.to_string()).set(bytes as f64);
}

/// The health of `component` (`validator`, `participant`, `postgres`, …) of `node`.
pub fn component_health(node: &str, component: &str, up: bool) {
    gauge!(COMPONENT_UP, "node" => node.to_string(), "component" => component.to_string())
        .set(flag(up));
}

/// Whether `rule`'s circuit breaker is tripped.
pub fn breaker_state(rule: &str, tripped: bool) {
    gauge!(RULE_BREAKER_TRIPPED, "rule" => rule.to_string()).set(flag(tripped));
}

/// How many runs wait for approval now.
pub fn pending_approvals(n: usize) {
    gauge!(PENDING_APPROVALS).set(n as f64);
}

/// Whether `node`'s newest backup is stale.
pub fn backup_stale(node: &str, stale: bool) {
    gauge!(BACKUP_STALE, "node" => node.to_string()).set(flag(stale));
}

/// `node`'s recovery runway; the down gauges only when its health is known.
pub fn runway(node: &str, view: &splice_dr_protocol::runway::RunwayView) {
    gauge!(RESTORE_RUNWAY_SECONDS, "node" => node.to_string()).set(view.restore.left_secs as f64);
    if let Some(d) = &view.down {
        gauge!(DOWN_SECONDS, "node" => node.to_string()).set(d.down_secs as f64);
        gauge!(DOWN_RUNWAY_SECONDS, "node" => node.to_string()).set(d.left_secs as f64);
    }
}

/// A restore drill of `node` ended `at` and passed or failed.
pub fn drill_finished(node: &str, passed: bool, at: DateTime<Utc>) {
    gauge!(LAST_DRILL_SUCCESS, "node" => node.to_string()).set(flag(passed));
    gauge!(LAST_DRILL_TIMESTAMP_SECONDS, "node" => node.to_string())
        .set(at.timestamp_millis() as f64 / 1000.0);
}

/// `node`'s continuous WAL: its restore point objective, slot lag and receiver.
pub fn wal(node: &str, rpo_seconds: Option<f64>, lag_bytes: Option<u64>, receiving: bool) {
    if let Some(s) = rpo_seconds {
        gauge!(RPO_SECONDS, "node" => node.to_string()).set(s);
    }
    if let Some(b) = lag_bytes {
        gauge!(WAL_SLOT_LAG_BYTES, "node" => node.to_string()).set(b as f64);
    }
    gauge!(WAL_RECEIVING, "node" => node.to_string()).set(flag(receiving));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_without_a_recorder_is_a_no_op() {
        run_finished("backup", "succeeded", Duration::from_secs(3));
        backup_succeeded("validator-1", Utc::now(), 10);
        component_health("validator-1", "validator", true);
        breaker_state("r", false);
        pending_approvals(0);
        backup_stale("validator-1", false);
        drill_finished("validator-1", true, Utc::now());
        build_info("0.1.0", "3f2a1bc");
        assert_eq!(installed_at(), None);
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = MetricsError::Bind {
            listen: "127.0.0.1:9464".parse().unwrap(),
            reason: "Address already in use (os error 98)".into(),
        };
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:9464") && text.contains("[metrics] listen"));
    }
}
