//! Blocking calls into async clients.
//!
//! The [`Backend`](splice_dr_plugin_api::Backend) trait is synchronous (it crosses a C ABI
//! and runs on the runner's blocking threads), while the clients it drives — bollard,
//! kube, object_store — are async. Each such backend owns a [`PrivateRuntime`]: a small
//! tokio runtime of its own, so a call works from any thread, including one that is
//! itself inside the daemon's runtime (where `block_on` on the daemon's handle would
//! panic), and a slow engine never starves the daemon's workers.

use std::future::Future;
use std::time::Duration;

use splice_dr_plugin_api::{BackendError, OpContext};

/// How often a blocked call checks the run's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// A runtime owned by one client, driven from blocking code.
pub struct PrivateRuntime {
    /// Owner of the runtime; `Some` until drop hands it to `shutdown_background`
    /// (dropping a runtime inside the daemon's async context would panic).
    rt: Option<tokio::runtime::Runtime>,
    /// Where blocking calls run their futures.
    handle: tokio::runtime::Handle,
    /// The client's name in messages (`Docker`, `Kubernetes`, `S3`).
    client: &'static str,
}

impl PrivateRuntime {
    /// Starts `threads` worker threads named after `client` (`sdr-docker`, ...).
    pub fn start(client: &'static str, threads: usize) -> Result<Self, BackendError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(format!("sdr-{}", client.to_lowercase()))
            .enable_all()
            .build()
            .map_err(|e| BackendError::io(format!("starting the {client} client runtime"), e))?;
        Ok(PrivateRuntime {
            handle: rt.handle().clone(),
            rt: Some(rt),
            client,
        })
    }

    /// The runtime's handle, for spawning background tasks (upload workers, ...).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `fut` to completion from any thread (a scoped helper thread blocks on it, so
    /// the caller may be inside another runtime). `Err` carries the panic of the future.
    pub fn run<T: Send>(&self, fut: impl Future<Output = T> + Send) -> std::thread::Result<T> {
        std::thread::scope(|s| s.spawn(|| self.handle.block_on(fut)).join())
    }

    /// Runs `fut` until it ends or `ctx` is cancelled; then the future is dropped and
    /// `Cancelled { what }` returned. Callers whose future started work elsewhere (a
    /// process in a container or pod) must stop that work themselves.
    pub fn block<T: Send>(
        &self,
        ctx: &OpContext,
        what: &str,
        fut: impl Future<Output = Result<T, BackendError>> + Send,
    ) -> Result<T, BackendError> {
        let guarded = async {
            tokio::select! {
                r = fut => r,
                _ = cancelled(ctx) => Err(BackendError::Cancelled { what: what.into() }),
            }
        };
        self.run(guarded)
            .unwrap_or_else(|_| Err(self.panicked(what)))
    }

    /// Like [`PrivateRuntime::block`] but never cancelled: for undo steps that must finish.
    pub fn block_uncancellable<T: Send>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, BackendError>> + Send,
    ) -> Result<T, BackendError> {
        self.run(fut).unwrap_or_else(|_| Err(self.panicked(what)))
    }

    fn panicked(&self, what: &str) -> BackendError {
        BackendError::Plugin(format!("{what}: the {} call panicked", self.client))
    }
}

impl Drop for PrivateRuntime {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_call_works_from_inside_another_runtime() {
        let private = PrivateRuntime::start("Test", 1).unwrap();
        let outer = tokio::runtime::Runtime::new().unwrap();
        let got = outer.block_on(async { private.run(async { 7 }) });
        assert_eq!(got.ok(), Some(7));
        // Dropped inside an async context without panicking.
        outer.block_on(async move { drop(private) });
    }

    #[test]
    fn cancellation_drops_the_future_and_says_what_was_cancelled() {
        let private = PrivateRuntime::start("Test", 1).unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let ctx = OpContext::new(move || f.load(Ordering::SeqCst), |_| {});
        let setter = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            setter.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        let r: Result<(), _> = private.block(&ctx, "waiting forever", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        assert!(started.elapsed() < Duration::from_secs(5));
        match r {
            Err(BackendError::Cancelled { what }) => assert_eq!(what, "waiting forever"),
            other => panic!("{other:?}"),
        }
        // The uncancellable variant runs to the end under the same cancelled context.
        let done = private.block_uncancellable("undo", async { Ok(1) });
        assert_eq!(done.ok(), Some(1));
    }

    #[test]
    fn a_panicking_future_is_an_error_naming_the_client() {
        let private = PrivateRuntime::start("Docker", 1).unwrap();
        let ctx = OpContext::new(|| false, |_| {});
        let r: Result<(), _> = private.block(&ctx, "inspecting postgres", async {
            panic!("boom");
        });
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("inspecting postgres") && e.contains("Docker call panicked"),
            "{e}"
        );
    }
}
