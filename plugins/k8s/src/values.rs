//! `set_values` on a helm-deployed node: the flow's settings become a values overlay per
//! release (the keys of the Splice charts' `standalone-validator-values.yaml` and
//! `standalone-participant-values.yaml`), written to a file and into the run's journal,
//! and applied with `helm upgrade <release> <chart> --reuse-values -f <overlay>`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Map, Value};
use splice_dr_plugin_api::{BackendError, OpContext};

use crate::config::{K8sConfig, Release};

/// What flows may ask of a redeploy (the same keys as the compose backend's start flags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowValues {
    /// Migration id to run (`migration.id`; the participant's database follows it).
    #[serde(default)]
    pub migration_id: Option<u64>,
    /// Start once restoring from the migration dump (`migration.migrating`).
    #[serde(default)]
    pub migrating: Option<bool>,
    /// Identities dump to import into a new participant (re-onboard): stored in the
    /// bootstrap Secret, which `participantIdentitiesDumpImport.secretName` names.
    #[serde(default)]
    pub identities_dump: Option<PathBuf>,
    /// The participant id (`participantIdentitiesDumpImport.newParticipantIdentifier` and
    /// `nodeIdentifier`, which the runbook says must match).
    #[serde(default)]
    pub participant_id: Option<String>,
    /// Migration dump to place on the validator's PVC before the upgrade.
    #[serde(default)]
    pub migration_dump: Option<PathBuf>,
    /// Wait for the upgraded pods (`helm upgrade --wait`).
    #[serde(default)]
    pub wait: Option<bool>,
}

/// One release's overlay.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// The release it applies to.
    pub release: Release,
    /// The values (JSON is valid YAML, so helm reads it as a values file).
    pub values: Value,
}

/// The overlays for `v` (releases with nothing to change get none). `secret` is the
/// bootstrap Secret's name, `current_migration` the node's configured migration id.
pub fn overlays(cfg: &K8sConfig, v: &FlowValues, current_migration: u64) -> Vec<Overlay> {
    let mut validator = Map::new();
    let mut participant = Map::new();
    if v.identities_dump.is_some() {
        let id = v.participant_id.clone().unwrap_or_default();
        validator.insert(
            "participantIdentitiesDumpImport".into(),
            json!({ "secretName": cfg.bootstrap_secret, "newParticipantIdentifier": id }),
        );
        validator.insert("nodeIdentifier".into(), json!(id));
        validator.insert("migrateValidatorParty".into(), json!(true));
    } else if let Some(id) = &v.participant_id {
        // After a re-onboard every later deploy keeps the new identifier.
        validator.insert("nodeIdentifier".into(), json!(id));
    }
    if v.migration_id.is_some() || v.migrating.is_some() {
        let id = v.migration_id.unwrap_or(current_migration);
        validator.insert(
            "migration".into(),
            json!({ "id": id, "migrating": v.migrating.unwrap_or(false) }),
        );
        // A migrating start always names the new migration's database: the upgrade that
        // first named it may have failed, and the node may already run `id` (the daemon
        // builds the backend for the migration id the node runs).
        if id != current_migration || v.migrating == Some(true) {
            participant.insert(
                "persistence".into(),
                json!({ "databaseName": format!("participant_{id}") }),
            );
        }
    }
    let mut out = Vec::new();
    for (release, values) in [
        (&cfg.releases.participant, participant),
        (&cfg.releases.validator, validator),
    ] {
        if !values.is_empty() {
            out.push(Overlay {
                release: release.clone(),
                values: Value::Object(values),
            });
        }
    }
    out
}

/// Writes an overlay to `dir` as `<stamp>-<release>.yaml` and returns its path.
pub fn write_overlay(dir: &Path, o: &Overlay) -> Result<PathBuf, BackendError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        BackendError::io(format!("creating overlay directory {}", dir.display()), e)
    })?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let path = dir.join(format!("{stamp}-{}.yaml", o.release.name));
    let text = serde_json::to_string_pretty(&o.values)
        .map_err(|e| BackendError::Plugin(format!("serializing the overlay: {e}")))?;
    std::fs::write(&path, format!("{text}\n"))
        .map_err(|e| BackendError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// The `helm upgrade` argv for an overlay file.
pub fn helm_args(
    cfg: &K8sConfig,
    o: &Overlay,
    overlay: &Path,
    wait: bool,
) -> Result<Vec<String>, BackendError> {
    let r = &o.release;
    let chart = r.chart.clone().ok_or_else(|| {
        BackendError::Config(format!(
            "release `{}` has no chart reference: set [node.k8s.releases.{}] chart = \
             \"oci://…/splice-…\" (the chart you installed it from), or apply the overlay \
             {} by hand",
            r.name,
            role_of(cfg, r),
            overlay.display()
        ))
    })?;
    let mut args = vec![
        "upgrade".to_string(),
        r.name.clone(),
        chart,
        "--namespace".into(),
        cfg.namespace.clone(),
        "--reuse-values".into(),
    ];
    if let Some(v) = &r.version {
        args.extend(["--version".into(), v.clone()]);
    }
    for f in &r.values {
        args.extend(["-f".into(), f.display().to_string()]);
    }
    args.extend(["-f".into(), overlay.display().to_string()]);
    if wait {
        args.extend([
            "--wait".into(),
            "--timeout".into(),
            format!("{}s", cfg.scale_timeout),
        ]);
    }
    if let Some(k) = &cfg.kubeconfig {
        args.extend(["--kubeconfig".into(), k.display().to_string()]);
    }
    if let Some(c) = &cfg.context {
        args.extend(["--kube-context".into(), c.clone()]);
    }
    Ok(args)
}

fn role_of(cfg: &K8sConfig, r: &Release) -> &'static str {
    if r.name == cfg.releases.participant.name {
        "participant"
    } else {
        "validator"
    }
}

/// Runs helm with `args`; a missing binary is an error that names it and says how to go on.
pub fn run_helm(
    ctx: &OpContext,
    helm: &Path,
    args: &[String],
    overlay: &Path,
) -> Result<(), BackendError> {
    let shown = format!("{} {}", helm.display(), args.join(" "));
    ctx.info(format!("running {shown}"));
    let out = splice_dr_pg_toolkit::child_env::command(helm, splice_dr_pg_toolkit::child_env::HELM)
        .args(args)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BackendError::Config(format!(
                    "`{}` was not found (PATH={}): install helm 3 where the daemon runs or set \
                 [node.k8s] helm = \"/path/to/helm\"; the overlay is {} (also in the run's \
                 journal) — apply it by hand with: {shown}",
                    helm.display(),
                    std::env::var("PATH").unwrap_or_default(),
                    overlay.display()
                ))
            } else {
                BackendError::io(format!("running {shown}"), e)
            }
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(BackendError::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: stderr.trim().chars().take(4000).collect(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        ctx.info(format!("helm: {}", stdout.trim()));
    }
    Ok(())
}

/// The chart each role's release installs when the config names none: the Splice charts.
const SPLICE_CHARTS: &str = "oci://ghcr.io/digital-asset/decentralized-canton-sync/helm";

/// The `helm install` that brings a role's workload back (the node's release, chart,
/// version and values files from the config; placeholders where the config has none), for
/// a node whose Deployment is gone: splice-dr does not install releases.
pub fn install_command(cfg: &K8sConfig, role: &str) -> String {
    let (release, chart) = match role {
        "validator" => (&cfg.releases.validator, "splice-validator"),
        "participant" => (&cfg.releases.participant, "splice-participant"),
        _ => {
            return format!(
                "helm install postgres {SPLICE_CHARTS}/splice-postgres --version <the node's chart version> -n {} -f <your postgres values>",
                cfg.namespace
            )
        }
    };
    let chart_ref = release
        .chart
        .clone()
        .unwrap_or_else(|| format!("{SPLICE_CHARTS}/{chart}"));
    let version = release
        .version
        .clone()
        .unwrap_or_else(|| "<the node's chart version>".into());
    let mut cmd = format!(
        "helm install {} {chart_ref} --version {version} -n {}",
        release.name, cfg.namespace
    );
    if release.values.is_empty() {
        cmd.push_str(&format!(" -f <your {role} values>"));
    }
    for v in &release.values {
        cmd.push_str(&format!(" -f {}", v.display()));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reonboard_values_name_the_secret_and_the_new_id() {
        let cfg = K8sConfig::default();
        let v = FlowValues {
            identities_dump: Some("/tmp/ids.json".into()),
            participant_id: Some("hint-2".into()),
            ..FlowValues::default()
        };
        let o = overlays(&cfg, &v, 0);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].release.name, "validator");
        assert_eq!(
            o[0].values,
            json!({
                "participantIdentitiesDumpImport": {
                    "secretName": "participant-bootstrap-dump",
                    "newParticipantIdentifier": "hint-2"
                },
                "nodeIdentifier": "hint-2",
                "migrateValidatorParty": true
            })
        );
    }

    #[test]
    fn a_migration_moves_both_releases() {
        let cfg = K8sConfig::default();
        let v = FlowValues {
            migration_id: Some(1),
            migrating: Some(true),
            ..FlowValues::default()
        };
        let o = overlays(&cfg, &v, 0);
        assert_eq!(o.len(), 2);
        assert_eq!(
            o[0].values,
            json!({"persistence": {"databaseName": "participant_1"}})
        );
        assert_eq!(
            o[1].values,
            json!({"migration": {"id": 1, "migrating": true}})
        );
    }

    /// The node already runs migration 1 (the daemon builds the backend for the registry's
    /// id) after a migrating start whose upgrade failed: starting it migrating again still
    /// names participant_1, which no upgrade set yet; setting migrating back does not.
    #[test]
    fn a_migrating_start_to_the_running_id_names_its_database_too() {
        let cfg = K8sConfig::default();
        let again = FlowValues {
            migration_id: Some(1),
            migrating: Some(true),
            ..FlowValues::default()
        };
        let o = overlays(&cfg, &again, 1);
        assert_eq!(o.len(), 2);
        assert_eq!(
            o[0].values,
            json!({"persistence": {"databaseName": "participant_1"}})
        );
        let back = FlowValues {
            migrating: Some(false),
            ..FlowValues::default()
        };
        let o = overlays(&cfg, &back, 1);
        assert_eq!(o.len(), 1);
        assert_eq!(
            o[0].values,
            json!({"migration": {"id": 1, "migrating": false}})
        );
    }

    #[test]
    fn helm_needs_a_chart_and_gets_reuse_values() {
        let mut cfg = K8sConfig::default();
        let o = Overlay {
            release: cfg.releases.validator.clone(),
            values: json!({}),
        };
        let e = helm_args(&cfg, &o, Path::new("/o.yaml"), false).unwrap_err();
        assert!(e.to_string().contains("chart"), "{e}");
        cfg.releases.validator.chart = Some("oci://x/splice-validator".into());
        let o = Overlay {
            release: cfg.releases.validator.clone(),
            values: json!({}),
        };
        let args = helm_args(&cfg, &o, Path::new("/o.yaml"), true).expect("args");
        assert_eq!(
            args[..6],
            [
                "upgrade",
                "validator",
                "oci://x/splice-validator",
                "--namespace",
                "validator",
                "--reuse-values"
            ]
        );
        assert!(args.windows(2).any(|w| w == ["-f", "/o.yaml"]));
        assert!(args.contains(&"--wait".to_string()));
    }
}
