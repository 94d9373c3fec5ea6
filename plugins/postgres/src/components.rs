//! Components the operator runs by hand: stopped and started through configured shell
//! commands, observed through an optional HTTP readiness URL.
//!
//! Readiness without a `health_url` cannot be observed: such a component is reported with
//! state `unknown` and `ready = false` (claiming readiness we cannot see would let a flow
//! continue blindly), and `wait_ready` returns at once with a warning in the journal so
//! that a restore on a node without health checks still completes.

use std::thread;
use std::time::{Duration, Instant};

use splice_dr_plugin_api::{BackendError, ComponentStatus, OpContext};

use crate::config::ComponentConfig;

use crate::PostgresBackend;
use splice_dr_pg_toolkit::{child_env, process};

/// Interval between readiness probes in `wait_ready`.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Upper bound of one readiness request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Outcome of one readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Answered 200.
    Ready,
    /// Answered, with another status: up but not ready.
    NotReady(u16),
    /// Refused the connection: nothing listens, the process is down.
    Refused(String),
    /// Any other failure (timeout, DNS, bad URL).
    Failed(String),
}

/// GETs `url` once (plain HTTP) and classifies the answer.
pub fn probe(url: &str, timeout: Duration) -> Probe {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    match agent.get(url).call() {
        Ok(resp) if resp.status().as_u16() == 200 => Probe::Ready,
        Ok(resp) => Probe::NotReady(resp.status().as_u16()),
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Probe::Refused(e.to_string())
        }
        Err(ureq::Error::ConnectionFailed) => Probe::Refused("connection failed".into()),
        Err(e) => Probe::Failed(e.to_string()),
    }
}

impl PostgresBackend {
    /// The configuration of a named component, or `NotFound` listing the known ones.
    fn component(&self, name: &str) -> Result<&ComponentConfig, BackendError> {
        self.cfg.components.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.cfg.components.keys().map(String::as_str).collect();
            BackendError::NotFound(format!(
                "component `{name}` (configured: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// See [`splice_dr_plugin_api::Workloads::components`].
    pub(crate) fn components_impl(
        &self,
        _ctx: &OpContext,
    ) -> Result<Vec<ComponentStatus>, BackendError> {
        Ok(self
            .cfg
            .components
            .iter()
            .map(|(name, c)| {
                let managed = c.stop_command.is_some() && c.start_command.is_some();
                let (state, ready, detail) = match &c.health_url {
                    None => (
                        "unknown",
                        false,
                        "no `health_url` configured: readiness cannot be observed".to_string(),
                    ),
                    Some(url) => match probe(url, PROBE_TIMEOUT) {
                        Probe::Ready => ("running", true, format!("{url} answered 200")),
                        Probe::NotReady(code) => {
                            ("running", false, format!("{url} answered {code}"))
                        }
                        Probe::Refused(e) => ("stopped", false, format!("{url} refused: {e}")),
                        Probe::Failed(e) => ("unknown", false, format!("{url} failed: {e}")),
                    },
                };
                ComponentStatus {
                    name: name.clone(),
                    state: state.into(),
                    ready,
                    detail,
                    managed,
                }
            })
            .collect())
    }

    /// See [`splice_dr_plugin_api::Workloads::scale`]: `0` runs `stop_command`, anything
    /// else `start_command`, through `sh -c`.
    pub(crate) fn scale_impl(
        &self,
        ctx: &OpContext,
        name: &str,
        replicas: u32,
    ) -> Result<(), BackendError> {
        let c = self.component(name)?;
        let (key, command, verb) = if replicas == 0 {
            ("stop_command", &c.stop_command, "stop")
        } else {
            ("start_command", &c.start_command, "start")
        };
        let command = command.as_deref().ok_or_else(|| {
            BackendError::Config(format!(
                "component `{name}` has no `{key}`: set `{key}` under its `[node.postgres.components.{name}]` table to let flows {verb} it"
            ))
        })?;
        ctx.info(format!("{verb} {name}: {command}"));
        let mut cmd = child_env::command("sh", child_env::POSTGRES);
        cmd.arg("-c").arg(command);
        let out = process::run(ctx, cmd, command, &format!("{verb} {name}"), &mut || {})?;
        if !out.stderr.is_empty() {
            ctx.info(format!("{verb} {name} said: {}", out.stderr));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Workloads::wait_ready`].
    pub(crate) fn wait_ready_impl(
        &self,
        ctx: &OpContext,
        name: &str,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let c = self.component(name)?;
        let Some(url) = &c.health_url else {
            ctx.warn(format!(
                "component `{name}` has no `health_url`: its readiness cannot be checked, continuing"
            ));
            return Ok(());
        };
        let what = format!("{name} to be ready");
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            ctx.check_cancelled(&what)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let last = match probe(url, PROBE_TIMEOUT.min(left.max(Duration::from_millis(100)))) {
                Probe::Ready => {
                    ctx.info(format!(
                        "{name} ready after {:.1}s",
                        start.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
                Probe::NotReady(code) => format!("answered {code}"),
                Probe::Refused(e) | Probe::Failed(e) => e,
            };
            if Instant::now() >= deadline {
                ctx.warn(format!("{name} not ready: {url} {last}"));
                return Err(BackendError::Timeout {
                    what: format!("{what} ({url} last: {last})"),
                    seconds: timeout.as_secs(),
                });
            }
            // Sleep in small steps so cancellation is noticed quickly.
            let wake = (Instant::now() + PROBE_INTERVAL).min(deadline);
            while Instant::now() < wake {
                ctx.check_cancelled(&what)?;
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
