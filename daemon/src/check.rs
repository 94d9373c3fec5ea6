//! `splice-dr check`: everything that can be validated without touching a node.

use crate::config::Config;

/// Builds everything the config implies exactly as start-up and reloads do
/// (`prepare::prepare`: flows, backends with their plugins, rules script,
/// off-site repositories, keyring), except that a missing signing key is not generated:
/// check writes nothing. Returns the report to print, or the error found.
pub fn check(config: &Config) -> Result<String, String> {
    let prepared = crate::prepare::prepare(config.clone(), crate::prepare::Purpose::Check)
        .map_err(|e| e.to_string())?;
    let (catalog, nodes) = (&prepared.core.catalog, &prepared.core.nodes);
    let mut out = format!("{}: OK\n", config.source.display());
    if let Some(le) = &config.daemon.leader_election {
        // In-cluster use needs the service account (token and API address) to be there.
        splice_dr_k8s::Cluster::connect(
            le.kubeconfig.as_deref(),
            le.context.as_deref(),
            &le.namespace,
        )
        .map_err(|e| format!("[daemon.leader_election]: {e}"))?;
        out.push_str(&format!(
            "leader election: Lease {}/{} as `{}` (lease {:?}, renewed every {:?})\n",
            le.namespace,
            le.lease,
            le.identity(),
            le.lease_duration,
            le.renew_interval
        ));
    }
    for (name, node) in nodes.iter() {
        out.push_str(&format!(
            "node {name}: backend {}, migration id {}\n",
            node.backend.kind(),
            node.facts.migration_id
        ));
    }
    out.push_str(&format!(
        "rules: {}, schedules: {}\n",
        config.rules.len(),
        if config.schedules.is_empty() {
            "default (backup every 4 hours)".to_string()
        } else {
            config.schedules.len().to_string()
        }
    ));
    out.push_str("flows in force:\n");
    for flow in catalog.iter() {
        let replaced = if flow.overrides_builtin {
            " (replaces the built-in)"
        } else {
            ""
        };
        out.push_str(&format!("  {:<12} {}{replaced}\n", flow.name, flow.source));
    }
    Ok(out)
}
