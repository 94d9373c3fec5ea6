//! The Kubernetes API connection: a private async runtime driving kube-rs, run from the
//! synchronous [`Backend`](splice_dr_plugin_api::Backend) calls, with cancellation.

use std::future::Future;
use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use splice_dr_bridge::PrivateRuntime;
use splice_dr_plugin_api::{BackendError, OpContext};

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
    /// Where blocking calls run their futures.
    rt: PrivateRuntime,
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
        let rt = PrivateRuntime::start("Kubernetes", 2)?;
        let client = rt.block_uncancellable("building the client", connect(kubeconfig, context))?;
        Ok(Cluster {
            rt,
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
        self.rt.block(ctx, what, fut)
    }
}
