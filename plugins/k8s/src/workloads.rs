//! The node's components as Kubernetes workloads: replicas through the `scale`
//! subresource (what `kubectl scale` does), and pods found by the workload's own
//! `spec.selector` to see them gone or ready.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, Patch, PatchParams};
use splice_dr_plugin_api::{BackendError, ComponentStatus};

use crate::cluster::{kube_err, Cluster};
use crate::config::Workloads;

/// How often waits look at the pods again.
const POLL: Duration = Duration::from_millis(500);

/// Kind of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

/// One component: its role name (as flows address it) and its workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `validator`, `participant` or `postgres`.
    pub role: &'static str,
    /// Deployment or StatefulSet.
    pub kind: Kind,
    /// The workload's name.
    pub name: String,
}

impl Workload {
    /// `Deployment validator-app`, for messages.
    pub fn shown(&self) -> String {
        let kind = match self.kind {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
        };
        format!("{kind} {}", self.name)
    }
}

/// Every component of a node, in the order they are listed.
pub fn all(w: &Workloads) -> Vec<Workload> {
    vec![
        Workload {
            role: "postgres",
            kind: Kind::StatefulSet,
            name: w.postgres.clone(),
        },
        Workload {
            role: "participant",
            kind: Kind::Deployment,
            name: w.participant.clone(),
        },
        Workload {
            role: "validator",
            kind: Kind::Deployment,
            name: w.validator.clone(),
        },
    ]
}

/// The component called `name`: by role (`validator`) or by workload name
/// (`validator-app`).
pub fn find(w: &Workloads, name: &str) -> Result<Workload, BackendError> {
    all(w)
        .into_iter()
        .find(|c| c.role == name || c.name == name)
        .ok_or_else(|| {
            BackendError::NotFound(format!(
                "component `{name}` (known: validator / {}, participant / {}, postgres / {})",
                w.validator, w.participant, w.postgres
            ))
        })
}

/// Desired replicas and the label selector (`k=v,...`) of a workload.
pub async fn spec(cluster: &Cluster, w: &Workload) -> Result<(i32, String), BackendError> {
    let what = format!("reading {}", w.shown());
    let (replicas, selector) = match w.kind {
        Kind::Deployment => {
            let d = cluster
                .api::<Deployment>()
                .get(&w.name)
                .await
                .map_err(kube_err(what))?;
            let s = d.spec.unwrap_or_default();
            (s.replicas.unwrap_or(1), s.selector)
        }
        Kind::StatefulSet => {
            let d = cluster
                .api::<StatefulSet>()
                .get(&w.name)
                .await
                .map_err(kube_err(what))?;
            let s = d.spec.unwrap_or_default();
            (s.replicas.unwrap_or(1), s.selector)
        }
    };
    Ok((replicas, selector_string(w, &selector)?))
}

fn selector_string(w: &Workload, s: &LabelSelector) -> Result<String, BackendError> {
    let labels = s.match_labels.clone().unwrap_or_default();
    if labels.is_empty() {
        return Err(BackendError::Config(format!(
            "{} has no spec.selector.matchLabels; its pods cannot be found",
            w.shown()
        )));
    }
    Ok(labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// The pods a selector matches.
pub async fn pods(cluster: &Cluster, selector: &str) -> Result<Vec<Pod>, BackendError> {
    let list = cluster
        .api::<Pod>()
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(kube_err(format!("listing pods with labels {selector}")))?;
    Ok(list.items)
}

/// Whether a pod is running and its `Ready` condition is true.
pub fn pod_ready(p: &Pod) -> bool {
    let Some(status) = &p.status else {
        return false;
    };
    p.metadata.deletion_timestamp.is_none()
        && status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Observed state of one component.
/// State of a component whose workload does not exist: splice-dr cannot bring it back (a
/// helm release installs it), so flows stop before anything destructive and the detail
/// gives the install command.
pub const NOT_INSTALLED: &str = "not installed";

/// A workload's state; `install` is the helm command that installs it, shown when it
/// does not exist.
pub async fn status(cluster: &Cluster, w: &Workload, install: &str) -> ComponentStatus {
    let managed = w.role != "postgres";
    let observed = async {
        let (replicas, selector) = spec(cluster, w).await?;
        let pods = pods(cluster, &selector).await?;
        Ok::<_, BackendError>((replicas, pods.iter().filter(|p| pod_ready(p)).count()))
    };
    let (state, ready, detail) = match observed.await {
        Ok((0, _)) => ("stopped", false, format!("{} scaled to 0", w.shown())),
        Ok((want, ready)) => (
            "running",
            ready >= want as usize,
            format!("{}: {ready}/{want} pods ready", w.shown()),
        ),
        Err(BackendError::NotFound(_)) => (
            NOT_INSTALLED,
            false,
            format!(
                "{} does not exist in namespace {}: install it, then run the flow again: {install}",
                w.shown(),
                cluster.namespace()
            ),
        ),
        Err(e) => ("unknown", false, e.to_string()),
    };
    let detail = if managed {
        detail
    } else {
        format!("{detail} (kept running by restores, which stream into it)")
    };
    ComponentStatus {
        name: w.role.into(),
        state: state.into(),
        ready,
        detail,
        managed,
    }
}

/// Sets a workload's replicas through its `scale` subresource.
pub async fn set_replicas(cluster: &Cluster, w: &Workload, n: u32) -> Result<(), BackendError> {
    let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": n } }));
    let pp = PatchParams::default();
    let what = format!("scaling {} to {n}", w.shown());
    match w.kind {
        Kind::Deployment => cluster
            .api::<Deployment>()
            .patch_scale(&w.name, &pp, &patch)
            .await
            .map(|_| ())
            .map_err(kube_err(what)),
        Kind::StatefulSet => cluster
            .api::<StatefulSet>()
            .patch_scale(&w.name, &pp, &patch)
            .await
            .map(|_| ())
            .map_err(kube_err(what)),
    }
}

/// Waits until no pod of the workload is left (a scale-down is only done then: the
/// database is free of its sessions).
pub async fn wait_gone(
    cluster: &Cluster,
    w: &Workload,
    timeout: Duration,
) -> Result<(), BackendError> {
    let (_, selector) = spec(cluster, w).await?;
    let start = Instant::now();
    loop {
        let left = pods(cluster, &selector).await?;
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(BackendError::Timeout {
                what: format!(
                    "the pods of {} to go away ({} left, e.g. {})",
                    w.shown(),
                    left.len(),
                    left[0].metadata.name.clone().unwrap_or_default()
                ),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until as many pods as the workload wants are ready.
pub async fn wait_ready(
    cluster: &Cluster,
    w: &Workload,
    timeout: Duration,
) -> Result<(), BackendError> {
    let start = Instant::now();
    loop {
        let (want, selector) = spec(cluster, w).await?;
        if want == 0 {
            return Err(BackendError::Config(format!(
                "{} is scaled to 0 and cannot become ready: scale it up first",
                w.shown()
            )));
        }
        let ready = pods(cluster, &selector)
            .await?
            .iter()
            .filter(|p| pod_ready(p))
            .count();
        if ready >= want as usize {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(BackendError::Timeout {
                what: format!("{} to be ready ({ready}/{want} pods ready)", w.shown()),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The name of a ready pod of the workload, for exec and file copies.
pub async fn ready_pod(cluster: &Cluster, w: &Workload) -> Result<String, BackendError> {
    let (_, selector) = spec(cluster, w).await?;
    pods(cluster, &selector)
        .await?
        .iter()
        .find(|p| pod_ready(p))
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| {
            BackendError::NotFound(format!(
                "no ready pod of {} (labels {selector}): scale it up and wait until it is ready",
                w.shown()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    #[test]
    fn components_are_found_by_role_or_workload_name() {
        let w = Workloads::default();
        assert_eq!(find(&w, "validator").expect("role").name, "validator-app");
        assert_eq!(find(&w, "validator-app").expect("name").role, "validator");
        assert_eq!(find(&w, "postgres").expect("sts").kind, Kind::StatefulSet);
        let e = find(&w, "scan").unwrap_err().to_string();
        assert!(e.contains("validator-app") && e.contains("postgres"), "{e}");
    }

    #[test]
    fn a_pod_is_ready_when_running_with_the_ready_condition() {
        let pod = |phase: &str, ready: &str| Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        assert!(pod_ready(&pod("Running", "True")));
        assert!(!pod_ready(&pod("Running", "False")));
        assert!(!pod_ready(&pod("Pending", "True")));
        assert!(!pod_ready(&Pod::default()));
    }

    #[test]
    fn a_workload_without_match_labels_is_a_config_error() {
        let w = find(&Workloads::default(), "participant").expect("found");
        let e = selector_string(&w, &LabelSelector::default()).unwrap_err();
        assert!(e.to_string().contains("Deployment participant"), "{e}");
        let s = LabelSelector {
            match_labels: Some([("app".to_string(), "participant".to_string())].into()),
            ..LabelSelector::default()
        };
        assert_eq!(selector_string(&w, &s).expect("ok"), "app=participant");
    }
}
