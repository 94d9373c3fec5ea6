//! Components the operator runs by hand: stopped and started through configured shell
//! commands, observed through an optional HTTP(S) readiness URL.
//!
//! Readiness without a `health_url` cannot be observed: such a component is reported with
//! state `unknown` and `ready = false` (claiming readiness we cannot see would let a flow
//! continue blindly), and `wait_ready` returns at once with a warning in the journal so
//! that a restore on a node without health checks still completes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use splice_dr_plugin_api::{BackendError, ComponentStatus, OpContext};

use crate::config::ComponentConfig;

use crate::PostgresBackend;
use splice_dr_pg_toolkit::{certs, child_env, process};

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

/// A component's readiness endpoint and the client that asks it: plain HTTP, or HTTPS
/// (rustls with the `ring` provider) trusting the system roots plus the component's
/// `health_ca_file`. Built once when the backend is, so the roots are read once and a bad
/// CA file is a config error.
pub struct HealthCheck {
    url: String,
    ca_file: Option<PathBuf>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheck")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl HealthCheck {
    /// The check of `url`; `ca_file` is a PEM file of CAs trusted besides the system's,
    /// only meaningful for an `https://` URL. Errs with a sentence naming the problem.
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<Self, String> {
        let https = url.starts_with("https://");
        if !https && !url.starts_with("http://") {
            return Err(format!(
                "`health_url` must be an http:// or https:// URL (got `{url}`)"
            ));
        }
        let mut config = ureq::Agent::config_builder().http_status_as_error(false);
        if https {
            let mut roots: Vec<Certificate<'static>> = certs::system_roots()
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            if let Some(file) = ca_file {
                let extra =
                    certs::load_ca_file(file).map_err(|e| format!("`health_ca_file`: {e}"))?;
                roots.extend(
                    extra
                        .iter()
                        .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
                );
            }
            let tls = TlsConfig::builder()
                .provider(TlsProvider::Rustls)
                .root_certs(RootCerts::Specific(Arc::new(roots)))
                .unversioned_rustls_crypto_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .build();
            config = config.tls_config(tls);
        } else if let Some(file) = ca_file {
            return Err(format!(
                "`health_ca_file` ({}) is set but `health_url` is plain http (`{url}`): \
                 use an https:// URL or remove `health_ca_file`",
                file.display()
            ));
        }
        Ok(HealthCheck {
            url: url.to_string(),
            ca_file: ca_file.map(Path::to_path_buf),
            agent: ureq::Agent::new_with_config(config.build()),
        })
    }

    /// The URL probed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// GETs the URL once, giving up after `timeout`, and classifies the answer.
    pub fn probe(&self, timeout: Duration) -> Probe {
        let request = self
            .agent
            .get(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .build();
        match request.call() {
            Ok(resp) if resp.status().as_u16() == 200 => Probe::Ready,
            Ok(resp) => Probe::NotReady(resp.status().as_u16()),
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Probe::Refused(e.to_string())
            }
            Err(ureq::Error::ConnectionFailed) => Probe::Refused("connection failed".into()),
            Err(e) => Probe::Failed(match tls_error(&e) {
                Some(tls) => self.explain_tls(tls),
                None => e.to_string(),
            }),
        }
    }

    /// A TLS failure in the operator's terms: what is wrong with the certificate and
    /// which setting fixes it.
    fn explain_tls(&self, e: &rustls::Error) -> String {
        use rustls::CertificateError as C;
        let trusted_by = match &self.ca_file {
            Some(f) => format!("the system roots nor health_ca_file {}", f.display()),
            None => "the system roots".to_string(),
        };
        match e {
            rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
                let fix = match &self.ca_file {
                    Some(_) => "check that health_ca_file holds the CA that signed the server's certificate",
                    None => "set health_ca_file to the CA that signed the server's certificate",
                };
                format!("TLS: certificate not trusted (issuer unknown to {trusted_by}): {fix}")
            }
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => format!(
                "TLS: certificate not valid for the host of {} ({e}): use the name the \
                 certificate was issued for in health_url",
                self.url
            ),
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                format!("TLS: the server's certificate has expired ({e})")
            }
            other => format!("TLS handshake failed: {other}"),
        }
    }
}

/// The rustls error behind a failed request, if TLS is what failed.
fn tls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
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
                let (state, ready, detail) = match self.health.get(name) {
                    None => (
                        "unknown",
                        false,
                        "no `health_url` configured: readiness cannot be observed".to_string(),
                    ),
                    Some(check) => match (check.url(), check.probe(PROBE_TIMEOUT)) {
                        (url, Probe::Ready) => ("running", true, format!("{url} answered 200")),
                        (url, Probe::NotReady(code)) => {
                            ("running", false, format!("{url} answered {code}"))
                        }
                        (url, Probe::Refused(e)) => {
                            ("stopped", false, format!("{url} refused: {e}"))
                        }
                        (url, Probe::Failed(e)) => ("unknown", false, format!("{url} failed: {e}")),
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
        self.component(name)?;
        let Some(check) = self.health.get(name) else {
            ctx.warn(format!(
                "component `{name}` has no `health_url`: its readiness cannot be checked, continuing"
            ));
            return Ok(());
        };
        let url = check.url();
        let what = format!("{name} to be ready");
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            ctx.check_cancelled(&what)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let last = match check.probe(PROBE_TIMEOUT.min(left.max(Duration::from_millis(100)))) {
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
