//! The node's containers as components: `postgres`, `participant`, `validator`, stopped
//! and started through the engine API and judged ready by what the applications answer.
//!
//! The real bundle gives only `postgres-splice` (and nginx) a healthcheck, so a running
//! `validator` or `participant` container proves nothing: the validator is ready when its
//! `readyz` answers 200, the participant when its gRPC health answers SERVING (or, for an
//! image with a healthcheck of its own, when that says healthy). Postgres keeps its
//! compose healthcheck.

use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::{StartContainerOptions, StopContainerOptionsBuilder};
use splice_dr_plugin_api::{BackendError, ComponentStatus, OpContext};

use crate::engine::{container_ip, engine_err, id_of};
use crate::probe::{self, ProbeResult, PARTICIPANT_HEALTH_PORT, READYZ_PATH, VALIDATOR_PORT};
use crate::ComposeBackend;

/// Interval between readiness checks in `wait_ready`.
const POLL: Duration = Duration::from_millis(500);

/// The component names flows use, in start order.
pub const COMPONENTS: [&str; 3] = ["postgres", "participant", "validator"];

/// What decides whether a component is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The container's own healthcheck (postgres; a participant image that has one).
    ContainerHealth,
    /// The validator's `GET /api/validator/readyz`.
    Readyz,
    /// The participant's `grpc.health.v1.Health/Check`.
    GrpcHealth,
}

/// The container's healthcheck status, when its image or compose file gives it one.
fn container_health(c: &ContainerInspectResponse) -> Option<HealthStatusEnum> {
    c.state
        .as_ref()?
        .health
        .as_ref()?
        .status
        .filter(|h| !matches!(h, HealthStatusEnum::NONE | HealthStatusEnum::EMPTY))
}

/// Which check decides the readiness of `component` running in `c`.
pub fn check_for(component: &str, c: &ContainerInspectResponse) -> Check {
    match component {
        "validator" => Check::Readyz,
        "participant" if container_health(c).is_some() => Check::ContainerHealth,
        "participant" => Check::GrpcHealth,
        _ => Check::ContainerHealth,
    }
}

/// A component's readiness as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `running` or `stopped`.
    pub state: String,
    /// Ready for work.
    pub ready: bool,
    /// Why, e.g. `running, readyz 503`.
    pub detail: String,
}

/// Whether the application should be asked: only a running container whose own
/// healthcheck (if any) does not already say no.
fn worth_asking(c: &ContainerInspectResponse, check: Check) -> bool {
    let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
    running
        && check != Check::ContainerHealth
        && !matches!(
            container_health(c),
            Some(HealthStatusEnum::STARTING | HealthStatusEnum::UNHEALTHY)
        )
}

/// Readiness of an inspected container under `check`, given what the application
/// answered (`probe`, for [`Check::Readyz`] and [`Check::GrpcHealth`]). A running container
/// is ready by itself only under [`Check::ContainerHealth`].
pub fn readiness(
    c: &ContainerInspectResponse,
    check: Check,
    probe: Option<&ProbeResult>,
) -> Readiness {
    let state = c.state.clone().unwrap_or_default();
    let status = state
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".into());
    let running = state.running == Some(true);
    let (ready, detail) = match (running, container_health(c), check, probe) {
        (false, ..) => (
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
        (true, Some(h @ (HealthStatusEnum::STARTING | HealthStatusEnum::UNHEALTHY)), ..) => {
            (false, format!("running, {h}"))
        }
        (true, _, Check::Readyz | Check::GrpcHealth, Some(p)) => {
            (p.ok, format!("running, {}", p.detail))
        }
        (true, _, Check::Readyz | Check::GrpcHealth, None) => {
            (false, "running, not asked whether it is ready".into())
        }
        (true, Some(_), Check::ContainerHealth, _) => (true, "running, healthy".into()),
        (true, None, Check::ContainerHealth, _) => (true, "running (no health check)".into()),
    };
    let state = if running { "running" } else { "stopped" };
    Readiness {
        state: state.into(),
        ready,
        detail,
    }
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

    /// The readiness of `component` in container `c`, asking the application when its
    /// check needs an answer (bounded by [`probe::PROBE_LIMIT`], cancelled with `ctx`).
    fn readiness_of(
        &self,
        ctx: &OpContext,
        component: &str,
        c: &ContainerInspectResponse,
    ) -> Result<Readiness, BackendError> {
        let component = self.component_of(component);
        let check = check_for(component, c);
        let answer = if worth_asking(c, check) {
            Some(self.ask(ctx, check, c)?)
        } else {
            None
        };
        Ok(readiness(c, check, answer.as_ref()))
    }

    /// The component name of a component or service name (`validator` for the
    /// `validator` service, ...), as [`check_for`] takes it.
    fn component_of<'a>(&self, name: &'a str) -> &'a str {
        let s = &self.cfg.services;
        match name {
            n if n == s.postgres => "postgres",
            n if n == s.participant => "participant",
            n if n == s.validator => "validator",
            n => n,
        }
    }

    /// Asks the validator's `readyz` or the participant's gRPC health, at the configured
    /// address or the container's address on its compose network.
    fn ask(
        &self,
        ctx: &OpContext,
        check: Check,
        c: &ContainerInspectResponse,
    ) -> Result<ProbeResult, BackendError> {
        let r = &self.cfg.readiness;
        let no_address = |key: &str| ProbeResult {
            ok: false,
            detail: format!(
                "the container has no network address to ask; set [node.compose.readiness] {key}"
            ),
        };
        match check {
            Check::Readyz => {
                let url = match (&r.validator_url, container_ip(c)) {
                    (Some(url), _) => url.clone(),
                    (None, Some(ip)) => format!("http://{ip}:{VALIDATOR_PORT}{READYZ_PATH}"),
                    (None, None) => return Ok(no_address("validator_url")),
                };
                let target = probe::http_target(&url).map_err(BackendError::Config)?;
                self.engine
                    .block(ctx, "asking the validator's readyz", async {
                        Ok(probe::readyz(&target, probe::PROBE_LIMIT).await)
                    })
            }
            Check::GrpcHealth => {
                let addr = match (&r.participant_address, container_ip(c)) {
                    (Some(a), _) => a.clone(),
                    (None, Some(ip)) => format!("{ip}:{PARTICIPANT_HEALTH_PORT}"),
                    (None, None) => return Ok(no_address("participant_address")),
                };
                self.engine
                    .block(ctx, "asking the participant's gRPC health", async {
                        Ok(probe::grpc(&addr, probe::PROBE_LIMIT).await)
                    })
            }
            Check::ContainerHealth => Err(BackendError::Plugin(
                "asked an application whose container healthcheck decides".into(),
            )),
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
                        let r = self.readiness_of(ctx, name, &c)?;
                        ComponentStatus {
                            name: name.into(),
                            state: r.state,
                            ready: r.ready,
                            detail: format!("service {service}: {}", r.detail),
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
            let Readiness {
                state,
                ready,
                detail,
            } = self.readiness_of(ctx, component, &c)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A container as `docker inspect` shows it (the engine API's field names).
    fn inspected(state: serde_json::Value) -> ContainerInspectResponse {
        serde_json::from_value(json!({
            "Id": "0123abcd",
            "State": state,
            "NetworkSettings": {"Networks": {"splice-validator_splice_validator": {"IPAddress": "172.18.0.3"}}},
        }))
        .unwrap()
    }

    /// Running, no healthcheck: the real bundle's `validator` and `participant`.
    fn running_without_healthcheck() -> ContainerInspectResponse {
        inspected(json!({"Status": "running", "Running": true, "ExitCode": 0}))
    }

    fn running_with_health(h: &str) -> ContainerInspectResponse {
        inspected(
            json!({"Status": "running", "Running": true, "Health": {"Status": h, "FailingStreak": 0}}),
        )
    }

    fn answer(ok: bool, detail: &str) -> ProbeResult {
        ProbeResult {
            ok,
            detail: detail.into(),
        }
    }

    #[test]
    fn a_running_validator_is_ready_only_when_readyz_says_200() {
        let c = running_without_healthcheck();
        assert_eq!(check_for("validator", &c), Check::Readyz);
        assert!(worth_asking(&c, Check::Readyz));
        let r = readiness(&c, Check::Readyz, Some(&answer(false, "readyz 503")));
        assert_eq!(
            r,
            Readiness {
                state: "running".into(),
                ready: false,
                detail: "running, readyz 503".into()
            }
        );
        let r = readiness(&c, Check::Readyz, Some(&answer(true, "readyz 200")));
        assert!(r.ready, "{r:?}");
        assert_eq!(r.detail, "running, readyz 200");
        // Not asked (or no answer): never ready on "running" alone.
        let r = readiness(&c, Check::Readyz, None);
        assert!(!r.ready && r.detail.contains("not asked"), "{r:?}");
        // A validator image with a healthcheck of its own still needs readyz.
        let c = running_with_health("healthy");
        assert_eq!(check_for("validator", &c), Check::Readyz);
        assert!(worth_asking(&c, Check::Readyz));
        assert!(!readiness(&c, Check::Readyz, Some(&answer(false, "readyz 503"))).ready);
    }

    #[test]
    fn a_participant_is_ready_on_grpc_serving_or_its_own_healthcheck() {
        let c = running_without_healthcheck();
        assert_eq!(check_for("participant", &c), Check::GrpcHealth);
        let not_serving = answer(
            false,
            "participant at 172.18.0.3:5061: gRPC health NOT_SERVING",
        );
        let r = readiness(&c, Check::GrpcHealth, Some(&not_serving));
        assert!(!r.ready);
        assert_eq!(
            r.detail,
            "running, participant at 172.18.0.3:5061: gRPC health NOT_SERVING"
        );
        let serving = answer(true, "participant at 172.18.0.3:5061: gRPC health SERVING");
        assert!(readiness(&c, Check::GrpcHealth, Some(&serving)).ready);

        // An image with its own healthcheck: that decides, nothing is asked.
        let healthy = running_with_health("healthy");
        assert_eq!(check_for("participant", &healthy), Check::ContainerHealth);
        assert!(!worth_asking(&healthy, Check::ContainerHealth));
        let r = readiness(&healthy, Check::ContainerHealth, None);
        assert!(r.ready && r.detail == "running, healthy", "{r:?}");
        let starting = running_with_health("starting");
        assert_eq!(check_for("participant", &starting), Check::ContainerHealth);
        let r = readiness(&starting, Check::ContainerHealth, None);
        assert!(!r.ready && r.detail == "running, starting", "{r:?}");
    }

    #[test]
    fn postgres_keeps_its_compose_healthcheck_and_stopped_is_never_ready() {
        let pg = running_with_health("unhealthy");
        assert_eq!(check_for("postgres", &pg), Check::ContainerHealth);
        assert!(!readiness(&pg, Check::ContainerHealth, None).ready);
        assert!(
            readiness(
                &running_with_health("healthy"),
                Check::ContainerHealth,
                None
            )
            .ready
        );

        let stopped = inspected(json!({"Status": "exited", "Running": false, "ExitCode": 137}));
        for check in [Check::ContainerHealth, Check::Readyz, Check::GrpcHealth] {
            assert!(!worth_asking(&stopped, check));
            let r = readiness(&stopped, check, Some(&answer(true, "readyz 200")));
            assert_eq!(
                r,
                Readiness {
                    state: "stopped".into(),
                    ready: false,
                    detail: "exited (exit code 137)".into()
                }
            );
        }
        // An unhealthy container is not asked: its own check already says no.
        let sick = running_with_health("unhealthy");
        assert!(!worth_asking(&sick, Check::Readyz));
        let r = readiness(&sick, Check::Readyz, None);
        assert!(!r.ready && r.detail == "running, unhealthy", "{r:?}");
        assert_eq!(container_ip(&sick).as_deref(), Some("172.18.0.3"));
    }
}
