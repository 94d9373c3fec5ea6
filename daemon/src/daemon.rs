//! `splice-dr daemon`: serve the socket, reload the config on change, and shut down
//! without abandoning a run.

use anyhow::Context;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::autopilot::{Autopilot, Context as AutopilotContext};
use crate::config::{self, Config};
use crate::leader::Leadership;
use crate::service::{Opened, Service};
use crate::socket::server;

/// Runs until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // First end what a killed predecessor left running: a pg_restore still writing would
    // fight the recovery below. A drill's scratch server is stopped (not killed, which
    // would leave its shared memory behind) and its copy removed before the reaper runs.
    for note in crate::drill_scratch::recover(&config.daemon.state_dir) {
        tracing::warn!("start-up recovery: {note}");
    }
    for note in crate::orphans::reap(&config.daemon.state_dir) {
        tracing::warn!("start-up recovery: {note}");
    }
    // One build of everything the config implies, as `check` and reloads do.
    let prepared = crate::prepare::prepare(config.clone(), crate::prepare::Purpose::Start)
        .context("starting the daemon")?;
    // The runner, the autopilot's context and the service are built in that order, each
    // from the one before: nothing is attached after construction.
    let opened = Opened::open(prepared.core).context("starting the daemon")?;
    let leadership = leadership(&config);
    opened.runner.set_leadership(leadership.clone());
    let bus = crate::events::EventBus::default();
    let context = AutopilotContext::new(
        &config,
        opened.runner.clone(),
        leadership.clone(),
        bus.clone(),
    );
    let autopilot = Autopilot::new(context, prepared.automation);
    let service = Service::over(opened, "daemon", Some(autopilot.clone()));
    // The first status round follows recovery, and the socket answers only once both are
    // done: `status` never meets a daemon that has not probed yet, nor one whose probe saw
    // the node halfway through recovery (containers restarting, a kept volume not yet
    // listed).
    for note in service.recover().await {
        tracing::warn!("start-up recovery: {note}");
    }
    service.status_round(true).await;
    crate::private_tmp::recover(&config.daemon.state_dir);
    // Watch the config before the socket answers: an edit made once the daemon is seen
    // up must be seen too (the events wait in the channel until the reloader runs).
    let (tx, mut rx) = mpsc::channel(4);
    let _watcher = config::watch(&config.source, tx).context("watching the config file")?;
    let listener = server::bind(&config.daemon.socket, config.daemon.socket_mode).await?;
    let shutdown = CancellationToken::new();
    let election = start_election(&config, leadership, shutdown.clone());
    if let Some(m) = &config.metrics {
        crate::metrics::install_with(
            m.listen,
            crate::http_limits::HttpLimits::from_config(&config.daemon),
        )
        .context("starting the Prometheus listener ([metrics] listen)")?;
        crate::metrics::build_info(crate::build_info::VERSION, crate::build_info::COMMIT);
        tracing::info!(listen = %m.listen, "Prometheus metrics on /metrics");
    }
    if let Some(am) = &config.alertmanager {
        let token = am
            .token()
            .map_err(|e| anyhow::anyhow!("[alertmanager] token_file: {e}"))?;
        let (listen, bus, stop) = (am.listen, bus.clone(), shutdown.clone());
        let listener = crate::events::alertmanager::bind(listen)
            .await
            .context("starting the Alertmanager receiver ([alertmanager] listen)")?;
        let limits = crate::http_limits::HttpLimits::from_config(&config.daemon);
        // Alerts select nodes of the config in force (reloads included), nothing else.
        let svc = service.clone();
        let nodes: crate::events::alertmanager::NodeFilter =
            std::sync::Arc::new(move |n: &str| svc.config().node(n).is_some());
        tokio::spawn(async move {
            if let Err(e) =
                crate::events::alertmanager::serve(listener, token, bus, nodes, limits, stop).await
            {
                tracing::error!("Alertmanager receiver on {listen} stopped: {e}");
            }
        });
    }
    // Reads the guard memory once recovery marked the runs a dead daemon left
    // interrupted: they count as failures of the rules that started them.
    autopilot.recall_at_start();
    // After the autopilot settled the runs its memory names: retention never removes a
    // record it still has to read.
    service.runner().journal().apply_retention("at start-up");
    autopilot.spawn(shutdown.clone());
    tokio::spawn(service.clone().status_loop(shutdown.clone()));
    tokio::spawn(crate::events::health_log::record(
        bus.clone(),
        config.daemon.state_dir.clone(),
    ));
    let runner = service.runner().clone();
    let validators = move || {
        let nodes = runner.nodes();
        let with_api = nodes
            .iter()
            .filter_map(|(name, n)| Some((name.clone(), n.validator.clone()?)));
        with_api.collect()
    };
    tokio::spawn(crate::users::record_loop(
        validators,
        config.daemon.state_dir.clone(),
        config.daemon.users_interval,
        shutdown.clone(),
    ));
    tokio::spawn(crate::repo_check::check_loop(
        service.runner().repo().clone(),
        bus.clone(),
        config.daemon.repo_check_interval,
        shutdown.clone(),
    ));
    // Continuous WAL of the nodes that stream (and their slots dropped where they stopped).
    let wal = crate::wal::WalSupervisor::spawn(
        service.runner().clone(),
        service.wal_board(),
        bus.clone(),
    );
    tracing::info!(socket = %config.daemon.socket.display(), pid = std::process::id(), "splice-dr daemon ready");

    // A reload builds everything first and changes the service and the autopilot only
    // when all of it built (see `Service::reload`).
    let reloader = service.clone();
    tokio::spawn(async move {
        while let Some(loaded) = rx.recv().await {
            reloader.reload(loaded);
        }
    });

    let server = tokio::spawn(server::serve(
        listener,
        service.clone(),
        server::Access::from_config(&config.daemon),
        shutdown.clone(),
    ));

    wait_for_signal().await?;
    tracing::info!("shutting down: no new requests; cancelling running flows so they roll back");
    shutdown.cancel();
    let _ = server.await;
    let runner = service.runner();
    for id in runner.active_runs() {
        let _ = runner.cancel(&id);
    }
    while !runner.active_runs().is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The receivers end before the daemon: none is left streaming without a supervisor.
    let _ = tokio::task::spawn_blocking(move || wal.stop()).await;
    if let Some(e) = election {
        // Releases the lease once no run is left, so another replica takes over at once.
        let _ = e.await;
    }
    let _ = std::fs::remove_file(&config.daemon.socket);
    tracing::info!("stopped");
    Ok(())
}

/// The leadership runs depend on: a follower of `[daemon.leader_election]` until it wins,
/// or always the leader without an election. Set on the runner before anything starts.
fn leadership(config: &Config) -> Leadership {
    match &config.daemon.leader_election {
        Some(le) => Leadership::elected(&le.lease, &le.identity()),
        None => Leadership::always(),
    }
}

/// With `[daemon.leader_election]`, starts the election loop for `leadership` (which
/// runs already depend on); it ends (releasing the lease) when `stop` is cancelled.
fn start_election(
    config: &Config,
    leadership: Leadership,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let le = config.daemon.leader_election.clone()?;
    tracing::info!(lease = %le.lease, namespace = %le.namespace, identity = %le.identity(), "leader election: flows run only while this replica holds the lease");
    Some(tokio::spawn(async move {
        if let Err(e) = crate::leader::run(le, leadership, stop).await {
            tracing::error!("leader election stopped: {e:#}; this replica runs no flows");
        }
    }))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}
