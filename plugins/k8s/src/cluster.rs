//! The Kubernetes API connection: a private async runtime driving kube-rs, run from the
//! synchronous [`Backend`](splice_dr_plugin_api::Backend) calls, with cancellation.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use splice_dr_plugin_api::{BackendError, OpContext};

/// How often a blocked call checks the run's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);
/// Where Kubernetes mounts a pod's service-account token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Turns a kube error into the backend's error, saying what was being done.
pub fn kube_err(context: impl Into<String>) -> impl FnOnce(kube::Error) -> BackendError {
    move |e| {
        let context = context.into();
        match e {
            kube::Error::Api(s) if s.code == 404 => {
                BackendError::NotFound(format!("{context}: {}", s.message))
            }
            kube::Error::Api(s) if s.code == 403 => BackendError::Config(format!(
                "{context}: forbidden ({}); the daemon's Role lacks this permission (see \
                 deploy/k8s/rbac.yaml)",
                s.message
            )),
            other => BackendError::Command {
                command: format!("Kubernetes API: {context}"),
                status: "error".into(),
                stderr: other.to_string(),
            },
        }
    }
}

/// Builds a client from a kubeconfig file (optionally a named context), or from the
/// pod's service account when `kubeconfig` is `None`. Must run inside a tokio runtime.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, BackendError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| BackendError::Config(format!("kubeconfig {}: {e}", path.display())))?;
            let options = KubeConfigOptions {
                context: context.map(str::to_string),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| BackendError::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::incluster().map_err(|e| {
            BackendError::Config(format!(
                "no `kubeconfig` is set, so the daemon must run in a pod with a service \
                 account, but the in-cluster settings are missing ({e}): \
                 KUBERNETES_SERVICE_HOST/PORT must be set and {SERVICE_ACCOUNT_TOKEN} \
                 readable (automountServiceAccountToken) — or set `kubeconfig`"
            ))
        })?,
    };
    kube::Client::try_from(config)
        .map_err(|e| BackendError::Config(format!("cannot build a Kubernetes client: {e}")))
}

/// A kube client usable from blocking code, on its own runtime.
pub struct Cluster {
    /// Owner of the private runtime; `Some` until drop hands it to `shutdown_background`
    /// (dropping a runtime inside the daemon's async context would panic).
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: kube::Client,
    namespace: String,
}

impl Cluster {
    /// Starts the runtime and builds the client. Nothing is contacted yet: a node whose
    /// API server is down still loads, and the failure shows up in `status` and runs.
    pub fn connect(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
        namespace: &str,
    ) -> Result<Self, BackendError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sdr-k8s")
            .enable_all()
            .build()
            .map_err(|e| BackendError::io("starting the Kubernetes client runtime", e))?;
        let handle = rt.handle().clone();
        let client = std::thread::scope(|s| {
            s.spawn(|| handle.block_on(connect(kubeconfig, context)))
                .join()
                .unwrap_or_else(|_| {
                    Err(BackendError::Plugin(
                        "building the Kubernetes client panicked".into(),
                    ))
                })
        })?;
        Ok(Cluster {
            rt: Some(rt),
            handle,
            client,
            namespace: namespace.into(),
        })
    }

    /// The client, for async code run through [`Cluster::block`].
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The namespace every call is scoped to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A namespaced API of `K`.
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Runs `fut` to completion on the private runtime from any thread. When `ctx` is
    /// cancelled first, the future is dropped and `Cancelled { what }` returned.
    pub fn block<T: Send>(
        &self,
        ctx: &OpContext,
        what: &str,
        fut: impl Future<Output = Result<T, BackendError>> + Send,
    ) -> Result<T, BackendError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.handle.block_on(async {
                    tokio::select! {
                        r = fut => r,
                        _ = cancelled(ctx) => Err(BackendError::Cancelled { what: what.into() }),
                    }
                })
            })
            .join()
            .unwrap_or_else(|_| {
                Err(BackendError::Plugin(format!(
                    "{what}: the Kubernetes call panicked"
                )))
            })
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Resolves once `ctx` is cancelled.
async fn cancelled(ctx: &OpContext) {
    while !ctx.is_cancelled() {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}
