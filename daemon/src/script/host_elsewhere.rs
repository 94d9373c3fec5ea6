//! Backups started on another host than the one that took them. Canton loses data on the
//! live node when a backup of it is started elsewhere, so a restore or re-onboard of
//! another host's backup (or one that does not say whose it is) needs the operator's word
//! that the old node is stopped, and refuses while the old node's address still answers.
//!
//! Every backup records its taker ([`record_taker`]: this host's id from
//! `crate::host_identity`, its name, the node's address as other hosts reach it) and a
//! copy of the node's participant-id registry. See `scripts/README.md`
//! (`backups.check_old_node_stopped`) and docs/CONFIG.md (`public_url`).

use rhai::{Dynamic, Engine};
use splice_dr_plugin_api::BackendError;
use splice_dr_repo::{BackupHost, BackupWriter, Manifest};
use std::time::Duration;

use super::host::{fail, to_dyn, BackupsApi, FlowEnv, RResult};
use crate::host_identity::{this_host, ThisHost};
use crate::run_context::StepKind;

/// How long the old node's address gets to accept a connection, and then to answer HTTP.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The flow parameter by which the operator confirms the old node is stopped.
const CONFIRM_PARAM: &str = "old_node_stopped";
/// The flow parameter naming the old node's address when the backup records none (or
/// records one this host cannot reach it by).
const URL_PARAM: &str = "old_node_url";

/// Records in a new backup the host taking it and the node's participant-id registry.
pub(super) fn record_taker(env: &FlowEnv, w: &mut BackupWriter) -> RResult<()> {
    let here = this_host(&env.node.state_dir).map_err(|e| fail(e.to_string()))?;
    w.record_host(BackupHost {
        id: here.id,
        name: here.name,
        node_url: env.node.node_url.clone(),
    });
    let reg = super::host_recovery::seeded_registry(env)?;
    w.record_participant_ids(reg.used);
    Ok(())
}

/// Registers `backups.check_old_node_stopped`.
pub(super) fn register(engine: &mut Engine) {
    engine.register_fn(
        "check_old_node_stopped",
        |b: &mut BackupsApi, selector: &str| -> RResult<Dynamic> {
            let env = b.0.clone();
            let m = env.manifest(selector)?;
            let here = this_host(&env.node.state_dir).map_err(|e| fail(e.to_string()))?;
            if m.host.as_ref().is_some_and(|h| h.id == here.id) {
                return to_dyn(&serde_json::json!({ "same_host": true, "checked": () }));
            }
            let label = format!(
                "check the old node is stopped (backup taken on {})",
                taker(&m)
            );
            let checked = env.in_step(&label, StepKind::Forward, |_ctx| {
                confirmed(&env, &m, &here).map_err(BackendError::Verification)?;
                check_silent(&env, &m).map_err(BackendError::Verification)
            })?;
            to_dyn(&serde_json::json!({ "same_host": false, "checked": checked }))
        },
    );
}

/// Who took the backup, for messages.
fn taker(m: &Manifest) -> String {
    match &m.host {
        Some(h) => format!("host {} (host id {})", h.name, h.id),
        None => "an unknown host".into(),
    }
}

/// Passes when the run carries `old_node_stopped=true` (journaled with the run's params),
/// else refuses saying why the confirmation is needed.
fn confirmed(env: &FlowEnv, m: &Manifest, here: &ThisHost) -> Result<(), String> {
    let yes = env.params.get(CONFIRM_PARAM).and_then(|v| v.as_bool()) == Some(true);
    let whose = match &m.host {
        Some(h) => format!(
            "backup {} was taken on another host: {} (host id {}); this is {} (host id {})",
            m.id, h.name, h.id, here.name, here.id
        ),
        None => format!(
            "backup {} does not record the host that took it (it predates host records), so \
             it may be another host's",
            m.id
        ),
    };
    if !yes {
        let participant = m
            .identities
            .as_ref()
            .map(|i| {
                format!(
                    "participant {}",
                    crate::participants::identifier_of(&i.participant_id)
                )
            })
            .unwrap_or_else(|| "the node's participant".into());
        return Err(format!(
            "{whose}. Started here while the old node still runs, it makes two live copies of \
             {participant}, and Canton loses data on the live one. Stop the old node for good \
             (and keep it from starting again), then run again with --param \
             {CONFIRM_PARAM}=true (`restore --old-node-stopped`; journaled with the run). \
             Nothing was changed"
        ));
    }
    env.run.log(
        "warn",
        &format!(
            "{whose}; the operator confirms the old node is stopped ({CONFIRM_PARAM}=true, \
             journaled with the run)"
        ),
    );
    Ok(())
}

/// Checks the old node's address does not answer: `old_node_url` when given, else the
/// address the backup recorded. Returns the address checked, or `None` when there is none.
fn check_silent(env: &FlowEnv, m: &Manifest) -> Result<Option<String>, String> {
    let given = env.params.get(URL_PARAM).and_then(|v| v.as_str());
    if let Some(url) = given {
        splice_dr_repo::untrusted::check_node_url(url)
            .map_err(|e| format!("--param {URL_PARAM}: {e}"))?;
    }
    let Some(url) = given.or(m.host.as_ref().and_then(|h| h.node_url.as_deref())) else {
        env.run.log(
            "warn",
            &format!(
                "backup {} records no address other hosts reach the old node at (its host set \
                 no [node.validator] public_url and its url is a loopback address, or the \
                 backup predates host records): nothing to check, relying on the confirmation; \
                 pass --param {URL_PARAM}=URL (`restore --old-node-url URL`) to have it checked",
                m.id
            ),
        );
        return Ok(None);
    };
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| "internal: no async runtime for the address check".to_string())?;
    match handle.block_on(probe(url))? {
        Probe::Answers(detail) => Err(format!(
            "the old node still answers at {url} ({detail}): it is running, and starting its \
             backup here too makes two live copies of it. Stop it there and keep it stopped, \
             then run again (if this address now reaches another node, name the old node's \
             with --param {URL_PARAM}=URL, `restore --old-node-url URL`). Nothing was changed"
        )),
        Probe::Silent(why) => {
            env.run.log(
                "info",
                &format!("the old node does not answer at {url} ({why})"),
            );
            Ok(Some(url.to_string()))
        }
    }
}

/// What the old node's address did.
enum Probe {
    /// Something accepts connections there (what it said).
    Answers(String),
    /// Nothing does (why not: refused, no route, no such name, no connection in time).
    Silent(String),
}

/// Whether anything accepts a connection at `base`'s host and port, and if so what
/// `GET <base>/api/validator/readyz` answers (any answer counts: a node answering 503 is
/// still running). A timeout counts as silent: a partitioned node cannot be told from a
/// dead one, which is what the operator's confirmation is for.
async fn probe(base: &str) -> Result<Probe, String> {
    let url = reqwest::Url::parse(base).map_err(|e| format!("address {base}: {e}"))?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("address {base} has no port"))?;
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Err(_) => {
            return Ok(Probe::Silent(format!(
                "no connection to {host}:{port} within {}s",
                PROBE_TIMEOUT.as_secs()
            )))
        }
        Ok(Err(e)) => return Ok(Probe::Silent(format!("{host}:{port}: {e}"))),
        Ok(Ok(_)) => {}
    }
    crate::tls::ensure_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .connect_timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| format!("internal: HTTP client: {e}"))?;
    let readyz = format!("{}/api/validator/readyz", base.trim_end_matches('/'));
    Ok(Probe::Answers(match client.get(&readyz).send().await {
        Ok(resp) => format!("HTTP {} from /api/validator/readyz", resp.status().as_u16()),
        Err(e) => format!("{host}:{port} accepts connections; HTTP: {e}"),
    }))
}
