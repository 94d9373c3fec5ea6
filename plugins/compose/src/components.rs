//! The node's containers as components: `postgres`, `participant`, `validator`, stopped
//! and started through the engine API and judged ready by their compose health checks.

use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::{StartContainerOptions, StopContainerOptionsBuilder};
use splice_dr_plugin_api::{BackendError, ComponentStatus, OpContext};

use crate::engine::{engine_err, id_of};
use crate::ComposeBackend;

/// Interval between readiness checks in `wait_ready`.
const POLL: Duration = Duration::from_millis(500);

/// The component names flows use, in start order.
pub const COMPONENTS: [&str; 3] = ["postgres", "participant", "validator"];

/// Readiness of an inspected container: running, and healthy when it has a health check.
fn readiness(c: &ContainerInspectResponse) -> (String, bool, String) {
    let state = c.state.clone().unwrap_or_default();
    let status = state
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".into());
    let running = state.running == Some(true);
    let health = state.health.and_then(|h| h.status);
    let (ready, detail) = match (running, health) {
        (false, _) => (
            false,
            format!(
                "{status}{}",
                state
                    .exit_code
                    .filter(|c| *c != 0)
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default()
            ),
        ),
        (true, Some(HealthStatusEnum::HEALTHY)) => (true, "running, healthy".into()),
        (true, Some(h @ (HealthStatusEnum::STARTING | HealthStatusEnum::UNHEALTHY))) => {
            (false, format!("running, {h}"))
        }
        (true, _) => (true, "running (no health check)".into()),
    };
    let state = if running { "running" } else { "stopped" };
    (state.into(), ready, detail)
}

impl ComposeBackend {
    /// The compose service of a component name (a service name is accepted too).
    pub(crate) fn service_of(&self, component: &str) -> Result<String, BackendError> {
        let s = &self.cfg.services;
        match component {
            "postgres" => Ok(s.postgres.clone()),
            "participant" => Ok(s.participant.clone()),
            "validator" => Ok(s.validator.clone()),
            other if [&s.postgres, &s.participant, &s.validator].contains(&&other.to_string()) => {
                Ok(other.to_string())
            }
            other => Err(BackendError::NotFound(format!(
                "component `{other}`: the compose backend knows postgres, participant and validator"
            ))),
        }
    }

    pub(crate) fn components_impl(
        &self,
        ctx: &OpContext,
    ) -> Result<Vec<ComponentStatus>, BackendError> {
        let mut out = Vec::new();
        for name in COMPONENTS {
            let service = self.service_of(name)?;
            let status =
                match self
                    .engine
                    .block(ctx, "inspecting containers", self.engine.inspect(&service))
                {
                    Ok(c) => {
                        let (state, ready, detail) = readiness(&c);
                        ComponentStatus {
                            name: name.into(),
                            state,
                            ready,
                            detail: format!("service {service}: {detail}"),
                            managed: true,
                        }
                    }
                    Err(BackendError::NotFound(msg)) => ComponentStatus {
                        name: name.into(),
                        state: "missing".into(),
                        ready: false,
                        detail: msg,
                        managed: false,
                    },
                    Err(e) => return Err(e),
                };
            out.push(status);
        }
        Ok(out)
    }

    pub(crate) fn scale_impl(
        &self,
        ctx: &OpContext,
        component: &str,
        replicas: u32,
    ) -> Result<(), BackendError> {
        if replicas > 1 {
            return Err(BackendError::Config(format!(
                "compose services run one container; cannot scale {component} to {replicas}"
            )));
        }
        let service = self.service_of(component)?;
        let engine = &self.engine;
        let c = match engine.block(ctx, "inspecting containers", engine.inspect(&service)) {
            Ok(c) => c,
            // A node whose containers are gone (`stop.sh`, a new host): nothing runs to stop.
            Err(BackendError::NotFound(_)) if replicas == 0 => {
                ctx.info(format!("{service} has no container: nothing to stop"));
                return Ok(());
            }
            // Postgres alone comes back the runbook's way, from the bundle's files.
            Err(BackendError::NotFound(_)) if service == self.cfg.services.postgres => {
                self.postgres_container(ctx)?
            }
            Err(BackendError::NotFound(why)) => {
                return Err(BackendError::NotFound(format!(
                    "{why}. The node's containers are gone (stop.sh, or a new host): the \
                     {component} starts with the node's start.sh and its start flags (the \
                     `restart` flow), not on its own"
                )))
            }
            Err(e) => return Err(e),
        };
        let stop_timeout = self.cfg.stop_timeout as i32;
        let what = format!("scale {component} to {replicas}");
        engine.block_uncancellable(&what, async {
            let id = id_of(&c, &service)?;
            let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
            match (replicas, running) {
                (0, true) => engine
                    .docker()
                    .stop_container(
                        &id,
                        Some(StopContainerOptionsBuilder::new().t(stop_timeout).build()),
                    )
                    .await
                    .map_err(engine_err(format!("stopping the {service} container"))),
                (1, false) => engine
                    .docker()
                    .start_container(&id, None::<StartContainerOptions>)
                    .await
                    .map_err(engine_err(format!("starting the {service} container"))),
                _ => Ok(()),
            }
        })?;
        ctx.info(format!(
            "{} {service}",
            if replicas == 0 { "stopped" } else { "started" }
        ));
        Ok(())
    }

    pub(crate) fn wait_ready_impl(
        &self,
        ctx: &OpContext,
        component: &str,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let service = self.service_of(component)?;
        let what = format!("{component} to be ready");
        let start = Instant::now();
        let engine = &self.engine;
        loop {
            ctx.check_cancelled(&what)?;
            let c = engine.block(ctx, &what, engine.inspect(&service))?;
            let (state, ready, detail) = readiness(&c);
            if ready {
                ctx.info(format!(
                    "{component} ready after {:.1}s",
                    start.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            if start.elapsed() >= timeout {
                ctx.warn(format!("{component} not ready: {state}, {detail}"));
                return Err(BackendError::Timeout {
                    what: format!("{what} (last seen: {detail})"),
                    seconds: timeout.as_secs(),
                });
            }
            std::thread::sleep(POLL);
        }
    }
}
