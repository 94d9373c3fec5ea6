//! `[node.k8s]`: where a helm-deployed validator lives in the cluster and how its parts
//! are named. Every default is the Splice helm charts' own name (namespace `validator`,
//! Deployments `validator-app` and `participant`, StatefulSet `postgres` with pod
//! `postgres-0`, databases `cantonnet_validator` and `participant_<migration id>`), so a
//! stock deployment needs no keys at all except the chart references for flows that
//! redeploy.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Settings of one helm-deployed validator node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sConfig {
    /// Kubeconfig file to use. Absent: the pod's service account (in-cluster), which is
    /// how the daemon runs next to the validator (see `deploy/k8s/`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Context inside `kubeconfig` [default: its current context].
    #[serde(default)]
    pub context: Option<String>,
    /// Namespace of the validator's releases.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Workload names of the node's components.
    #[serde(default)]
    pub workloads: Workloads,
    /// The Postgres pod that dumps stream out of and restores into.
    #[serde(default = "default_postgres_pod")]
    pub postgres_pod: String,
    /// Container of the Postgres pod that runs `pg_dump` / `pg_restore`.
    #[serde(default = "default_postgres_container")]
    pub postgres_container: String,
    /// Container of the validator-app pod that receives the migration dump [default: the
    /// pod's only container].
    #[serde(default)]
    pub validator_container: Option<String>,
    /// Postgres user the tools inside the pod run as (the charts' `persistence.user`).
    #[serde(default = "default_db_user")]
    pub db_user: String,
    /// How the daemon reaches Postgres over SQL for snapshots, row counts and renames
    /// [default: the chart's `postgres` Service in the namespace, as the daemon runs there].
    #[serde(default)]
    pub db_url: Option<String>,
    /// File holding the Postgres password: mount key `postgresPassword` of the
    /// `postgres-secrets` Secret there (see `deploy/k8s/`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Validator app database (the chart's `persistence.databaseName`).
    #[serde(default = "default_validator_db")]
    pub validator_db: String,
    /// Participant database [default: `participant_<migration_id>`].
    #[serde(default)]
    pub participant_db: Option<String>,
    /// `pg_dump` compression level for the custom-format dumps (0–9).
    #[serde(default = "splice_dr_pg_toolkit::dump::default_compress")]
    pub compress: u32,
    /// Seconds a scale-down waits for the pods to be gone.
    #[serde(default = "default_scale_timeout")]
    pub scale_timeout: u64,
    /// The `helm` binary (a bare name is looked up on PATH).
    #[serde(default = "default_helm")]
    pub helm: PathBuf,
    /// The helm releases that flows redeploy with a values overlay.
    #[serde(default)]
    pub releases: Releases,
    /// Directory the values overlays are written to (they are also copied into the run's
    /// journal) [default: `<daemon.state_dir>/k8s-overlays`].
    #[serde(default)]
    pub overlay_dir: Option<PathBuf>,
    /// Secret that holds the identities dump a re-onboard imports (key `content`).
    #[serde(default = "default_bootstrap_secret")]
    pub bootstrap_secret: String,
}

/// Names of the Deployments and the StatefulSet of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workloads {
    /// Deployment of the validator app.
    #[serde(default = "default_validator_workload")]
    pub validator: String,
    /// Deployment of the participant.
    #[serde(default = "default_participant_workload")]
    pub participant: String,
    /// StatefulSet of Postgres.
    #[serde(default = "default_postgres_workload")]
    pub postgres: String,
}

impl Default for Workloads {
    fn default() -> Self {
        Workloads {
            validator: default_validator_workload(),
            participant: default_participant_workload(),
            postgres: default_postgres_workload(),
        }
    }
}

/// The helm releases of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Releases {
    /// The validator app's release (values of `standalone-validator-values.yaml`).
    #[serde(default = "default_validator_release")]
    pub validator: Release,
    /// The participant's release (values of `standalone-participant-values.yaml`).
    #[serde(default = "default_participant_release")]
    pub participant: Release,
}

impl Default for Releases {
    fn default() -> Self {
        Releases {
            validator: default_validator_release(),
            participant: default_participant_release(),
        }
    }
}

/// One helm release and the chart it is upgraded with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Release name.
    pub name: String,
    /// Chart reference for `helm upgrade`, e.g.
    /// `oci://ghcr.io/digital-asset/decentralized-canton-sync/helm/splice-validator`.
    #[serde(default)]
    pub chart: Option<String>,
    /// Chart version (`--version`) [default: helm's choice].
    #[serde(default)]
    pub version: Option<String>,
    /// The operator's values files, passed with `-f` before the overlay.
    #[serde(default)]
    pub values: Vec<PathBuf>,
}

fn default_namespace() -> String {
    "validator".into()
}
fn default_postgres_pod() -> String {
    "postgres-0".into()
}
fn default_postgres_container() -> String {
    "postgres".into()
}
fn default_db_user() -> String {
    "cnadmin".into()
}
fn default_validator_db() -> String {
    "cantonnet_validator".into()
}
fn default_scale_timeout() -> u64 {
    600
}
fn default_helm() -> PathBuf {
    PathBuf::from("helm")
}
fn default_bootstrap_secret() -> String {
    "participant-bootstrap-dump".into()
}
fn default_validator_workload() -> String {
    "validator-app".into()
}
fn default_participant_workload() -> String {
    "participant".into()
}
fn default_postgres_workload() -> String {
    "postgres".into()
}
fn default_validator_release() -> Release {
    Release::named("validator")
}
fn default_participant_release() -> Release {
    Release::named("participant")
}

impl Release {
    /// A release with no chart reference yet.
    pub fn named(name: &str) -> Self {
        Release {
            name: name.into(),
            chart: None,
            version: None,
            values: Vec::new(),
        }
    }
}

impl Default for K8sConfig {
    fn default() -> Self {
        K8sConfig {
            kubeconfig: None,
            context: None,
            namespace: default_namespace(),
            workloads: Workloads::default(),
            postgres_pod: default_postgres_pod(),
            postgres_container: default_postgres_container(),
            validator_container: None,
            db_user: default_db_user(),
            db_url: None,
            password_file: None,
            validator_db: default_validator_db(),
            participant_db: None,
            compress: splice_dr_pg_toolkit::dump::default_compress(),
            scale_timeout: default_scale_timeout(),
            helm: default_helm(),
            releases: Releases::default(),
            overlay_dir: None,
            bootstrap_secret: default_bootstrap_secret(),
        }
    }
}

impl K8sConfig {
    /// Why a redeploy (`helm upgrade`) cannot run: a release without a chart reference
    /// (optional, since backups and restores need none). The daemon's config check requires
    /// a pinned `version` wherever a chart is set.
    pub fn missing_chart(&self) -> Option<String> {
        [
            ("validator", &self.releases.validator),
            ("participant", &self.releases.participant),
        ]
        .into_iter()
        .find(|(_, r)| r.chart.is_none())
        .map(|(role, r)| {
            format!(
                "helm release `{}` has no chart reference, and flows that restart the node with \
                 new values run `helm upgrade`: set chart and version in \
                 [node.k8s.releases.{role}] (the chart and version the release was installed \
                 from: `helm list -n {}`)",
                r.name, self.namespace
            )
        })
    }

    /// The participant database at `migration_id`: `participant_db`, else the charts'
    /// `participant_<migration id>`.
    pub fn participant_db(&self, migration_id: u64) -> String {
        self.participant_db
            .clone()
            .unwrap_or_else(|| format!("participant_{migration_id}"))
    }

    /// The SQL URL in force: `db_url`, or the chart's `postgres` Service.
    pub fn sql_url(&self) -> String {
        self.db_url.clone().unwrap_or_else(|| {
            format!(
                "postgresql://{}@{}.{}.svc:5432/postgres",
                self.db_user, self.workloads.postgres, self.namespace
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_without_a_chart_makes_redeploys_unavailable() {
        let mut c = K8sConfig::default();
        let why = c.missing_chart().expect("no charts");
        assert!(
            why.contains("release `validator` has no chart")
                && why.contains("[node.k8s.releases.validator]"),
            "{why}"
        );
        c.releases.validator.chart = Some("oci://x/splice-validator".into());
        let why = c.missing_chart().expect("participant has none");
        assert!(why.contains("[node.k8s.releases.participant]"), "{why}");
        c.releases.participant.chart = Some("oci://x/splice-participant".into());
        assert_eq!(c.missing_chart(), None);
    }

    #[test]
    fn an_empty_table_gives_the_helm_charts_names() {
        let c: K8sConfig = serde_json::from_str("{}").expect("parses");
        assert_eq!(c, K8sConfig::default());
        assert_eq!(c.namespace, "validator");
        assert_eq!(c.workloads.validator, "validator-app");
        assert_eq!(c.postgres_pod, "postgres-0");
        assert_eq!(c.releases.validator.name, "validator");
        assert_eq!(
            c.sql_url(),
            "postgresql://cnadmin@postgres.validator.svc:5432/postgres"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<K8sConfig>(r#"{"namespce": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("namespce"), "{e}");
    }
}
