//! The Docker engine connection: a private async runtime driving bollard, run from the
//! synchronous [`Backend`](splice_dr_plugin_api::Backend) calls, with cancellation, and
//! container lookup by compose labels.

use std::collections::HashMap;
use std::future::Future;

use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use bollard::Docker;
use splice_dr_bridge::PrivateRuntime;
use splice_dr_plugin_api::{BackendError, OpContext};

/// Label compose puts on every container of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// Label compose puts on every container of a service.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// Engine request timeout (seconds): long, because exec streams a whole dump.
const REQUEST_TIMEOUT_SECS: u64 = 24 * 3600;
/// The engine's default address.
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// Engine API version spoken: 1.41 (Docker 20.10) has every call used here and every
/// engine since answers it, so no negotiation round-trip is needed.
const API_VERSION: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// A Docker engine client usable from blocking code.
pub struct Engine {
    /// Where blocking calls run their futures.
    rt: PrivateRuntime,
    docker: Docker,
    project: String,
}

/// Turns an engine error into the backend's error, saying what was being done.
pub fn engine_err(
    context: impl Into<String>,
) -> impl FnOnce(bollard::errors::Error) -> BackendError {
    move |e| {
        let context = context.into();
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message,
            } => BackendError::NotFound(format!("{context}: {message}")),
            other => BackendError::Command {
                command: format!("Docker engine: {context}"),
                status: "error".into(),
                stderr: other.to_string(),
            },
        }
    }
}

impl Engine {
    /// Prepares a client for `host` (or `DOCKER_HOST`, or the local socket). Nothing is
    /// contacted yet: a node whose engine is down still loads, and the failure shows up in
    /// `status` and in runs, like every other backend.
    pub fn connect(host: Option<&str>, project: &str) -> Result<Self, BackendError> {
        let rt = PrivateRuntime::start("Docker", 2)?;
        let from_env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let host = host
            .map(str::to_string)
            .or(from_env)
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        let docker = if host.starts_with("unix://") || host.starts_with('/') {
            Docker::connect_with_unix(&host, REQUEST_TIMEOUT_SECS, &API_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(&host, REQUEST_TIMEOUT_SECS, &API_VERSION)
        } else {
            return Err(BackendError::Config(format!(
                "`docker_host` {host}: expected unix:///path/to/docker.sock or tcp://host:port"
            )));
        }
        .map_err(|e| {
            BackendError::Config(format!("cannot use the Docker engine at {host}: {e}"))
        })?;
        Ok(Engine {
            rt,
            docker,
            project: project.into(),
        })
    }

    /// The bollard client, for async code run through [`Engine::block`].
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The compose project this engine's lookups are scoped to.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Runs `fut` to completion on the private runtime from any thread. When `ctx` is
    /// cancelled first, the future is dropped and `Cancelled { what }` returned; callers
    /// whose future started work inside a container must stop it themselves.
    pub fn block<T: Send>(
        &self,
        ctx: &OpContext,
        what: &str,
        fut: impl Future<Output = Result<T, BackendError>> + Send,
    ) -> Result<T, BackendError> {
        self.rt.block(ctx, what, fut)
    }

    /// Like [`Engine::block`] but never cancelled: for undo steps that must finish.
    pub fn block_uncancellable<T: Send>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, BackendError>> + Send,
    ) -> Result<T, BackendError> {
        self.rt.block_uncancellable(what, fut)
    }

    /// The label query that finds a service's container, for error messages an operator
    /// can paste into `docker ps`.
    pub fn label_query(&self, service: &str) -> String {
        format!(
            "docker ps -a --filter label={PROJECT_LABEL}={} --filter label={SERVICE_LABEL}={service}",
            self.project
        )
    }

    /// The one container of `service` in this project (compose v1 and v2 both label them).
    pub async fn find(&self, service: &str) -> Result<ContainerSummary, BackendError> {
        let filters: HashMap<&str, Vec<String>> = HashMap::from([(
            "label",
            vec![
                format!("{PROJECT_LABEL}={}", self.project),
                format!("{SERVICE_LABEL}={service}"),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let mut list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(engine_err(format!(
                "listing containers of service {service}"
            )))?;
        match list.len() {
            0 => Err(BackendError::NotFound(format!(
                "no container of service `{service}` in compose project `{}` (looked with `{}`): \
                 check `project` and `services` in [node.compose], or start the node with its start.sh",
                self.project,
                self.label_query(service)
            ))),
            1 => Ok(list.remove(0)),
            n => Err(BackendError::Config(format!(
                "{n} containers match service `{service}` of project `{}` (`{}`); scaled \
                 services are not supported: remove the extra ones",
                self.project,
                self.label_query(service)
            ))),
        }
    }

    /// Full inspection of a service's container.
    pub async fn inspect(&self, service: &str) -> Result<ContainerInspectResponse, BackendError> {
        let summary = self.find(service).await?;
        let id = summary.id.unwrap_or_default();
        self.docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .map_err(engine_err(format!("inspecting the {service} container")))
    }
}

/// The container's id, or an error naming the service.
pub fn id_of(c: &ContainerInspectResponse, service: &str) -> Result<String, BackendError> {
    c.id.clone()
        .ok_or_else(|| BackendError::Plugin(format!("the {service} container has no id")))
}

/// Value of `KEY=value` in a container's environment.
pub fn env_value(c: &ContainerInspectResponse, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    c.config
        .as_ref()?
        .env
        .as_ref()?
        .iter()
        .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
}

/// The container's address on its (first) compose network, if it has one: where the
/// daemon reaches Postgres, `readyz` and the gRPC health by default.
pub fn container_ip(c: &ContainerInspectResponse) -> Option<String> {
    c.network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .values()
        .filter_map(|e| e.ip_address.clone())
        .find(|ip| !ip.is_empty())
}

/// Name of the volume mounted at `dest` in a container.
pub fn volume_at(c: &ContainerInspectResponse, dest: &str) -> Option<String> {
    c.mounts.as_ref()?.iter().find_map(|m| {
        (m.destination.as_deref() == Some(dest) && m.typ.as_deref() == Some("volume"))
            .then(|| m.name.clone())
            .flatten()
    })
}
