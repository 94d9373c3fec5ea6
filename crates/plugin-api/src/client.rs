//! One call path: every backend operation as a [`BackendCall`] answered by a
//! [`CallService`], and one typed [`Backend`] over any of them.
//!
//! The shape is tower's `Service` + `Layer`: a loaded plugin library answers calls, any
//! in-process backend answers them through [`dispatch`](crate::dispatch), and a layer
//! (the dry-run recorder, the daemon's metrics) wraps either by looking at the call as
//! data: its [`BackendCall::op`] and [`BackendCall::effect`]. [`CallClient`] is the only
//! place a trait method becomes a call; its methods, like the call type and dispatch, are
//! written by [`backend_operations!`](crate::backend_operations) from the one definition
//! of each operation in `backend.rs`.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::backend::BackendResult;
use crate::{Backend, BackendCall, BackendError, Capabilities, OpContext};

/// Something that answers backend calls given as data.
pub trait CallService: Send + Sync {
    /// The backend's kind, for logs and status (asked without a call: it never changes).
    fn kind(&self) -> String;

    /// What the backend can do (fixed for an instance, like its kind).
    fn capabilities(&self) -> Capabilities;

    /// Performs `call` and returns its result as JSON.
    fn call(&self, ctx: &OpContext, call: BackendCall) -> Result<Value, BackendError>;
}

/// Any [`Backend`] answers calls through [`crate::dispatch`]: the bottom of a stack of
/// layers around an in-process backend.
pub struct Dispatch(pub Arc<dyn Backend>);

impl CallService for Dispatch {
    fn kind(&self) -> String {
        self.0.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn call(&self, ctx: &OpContext, call: BackendCall) -> Result<Value, BackendError> {
        crate::dispatch(self.0.as_ref(), ctx, call)
    }
}

/// The typed [`Backend`] over a [`CallService`]: each trait method builds its call and
/// decodes the answer.
#[derive(Debug)]
pub struct CallClient<S>(pub S);

impl<S: CallService> CallClient<S> {
    /// Sends `call` and decodes its answer into the trait method's result type.
    pub fn typed<T: DeserializeOwned>(
        &self,
        ctx: &OpContext,
        call: BackendCall,
    ) -> BackendResult<T> {
        let v = self.0.call(ctx, call)?;
        serde_json::from_value(v)
            .map_err(|e| BackendError::Plugin(format!("backend result has the wrong shape: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        BackendInfo, ComponentStatus, DatabaseInfo, Databases, DumpCheck, DumpInfo, ExecOutput,
        KeptDb, KeptStorage, Leftovers, StagedCheck, StagedDb, StagedQuery, Storage, StorageTarget,
        Workloads,
    };
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Answers only the operations whose trait bodies have a default, recording each.
    #[derive(Default)]
    struct Optional(Mutex<Vec<&'static str>>);

    impl Optional {
        fn saw(&self, op: &'static str) {
            self.0.lock().unwrap().push(op);
        }
    }

    #[rustfmt::skip]
    impl BackendInfo for Optional {
        fn kind(&self) -> String { "optional".into() }
        fn capabilities(&self) -> Capabilities {
            self.saw("capabilities");
            let mut c = Capabilities::default();
            c.workloads.exec = true;
            c
        }
        fn kept_removal_command(&self, kept: &str) -> Option<String> { self.saw("kept_removal_command"); Some(format!("rm {kept}")) }
    }

    #[rustfmt::skip]
    impl Workloads for Optional {
        fn components(&self, _: &OpContext) -> BackendResult<Vec<ComponentStatus>> { Err(self.unsupported("components")) }
        fn scale(&self, _: &OpContext, _: &str, _: u32) -> BackendResult<()> { Err(self.unsupported("scale")) }
        fn wait_ready(&self, _: &OpContext, _: &str, _: Duration) -> BackendResult<()> { Err(self.unsupported("wait_ready")) }
        fn exec(&self, _: &OpContext, _: &str, _: &[String], _: Option<&Path>) -> BackendResult<ExecOutput> {
            self.saw("exec");
            Ok(ExecOutput { code: 7, stdout: String::new(), stderr: String::new() })
        }
        fn set_values(&self, _: &OpContext, _: &Value) -> BackendResult<()> { self.saw("set_values"); Ok(()) }
    }

    #[rustfmt::skip]
    impl Databases for Optional {
        fn databases(&self, _: &OpContext) -> BackendResult<Vec<DatabaseInfo>> { Err(self.unsupported("databases")) }
        fn dump(&self, _: &OpContext, _: &str, _: &Path) -> BackendResult<DumpInfo> { Err(self.unsupported("dump")) }
        fn check_dump(&self, _: &OpContext, _: &Path) -> BackendResult<DumpCheck> { Err(self.unsupported("check_dump")) }
        fn restore_staged(&self, _: &OpContext, _: &str, _: &Path, _: &DumpInfo) -> BackendResult<StagedDb> { Err(self.unsupported("restore_staged")) }
        fn swap_in(&self, _: &OpContext, _: &[StagedDb]) -> BackendResult<Vec<KeptDb>> { Err(self.unsupported("swap_in")) }
        fn roll_back(&self, _: &OpContext, _: &[KeptDb]) -> BackendResult<()> { Err(self.unsupported("roll_back")) }
        fn drop_kept(&self, _: &OpContext, _: &[KeptDb]) -> BackendResult<()> { Err(self.unsupported("drop_kept")) }
        fn drop_staged(&self, _: &OpContext, _: &[StagedDb]) -> BackendResult<()> { Err(self.unsupported("drop_staged")) }
        fn leftovers(&self, _: &OpContext) -> BackendResult<Leftovers> { Err(self.unsupported("leftovers")) }
        fn check_staged(&self, _: &OpContext, s: &StagedDb, _: &[StagedQuery]) -> BackendResult<StagedCheck> {
            self.saw("check_staged");
            Ok(StagedCheck { database: s.staging.clone(), ..StagedCheck::default() })
        }
        fn restore_into_empty(&self, _: &OpContext, _: &str, _: &Path, _: &DumpInfo) -> BackendResult<()> { self.saw("restore_into_empty"); Ok(()) }
    }

    #[rustfmt::skip]
    impl Storage for Optional {
        fn put_file(&self, _: &OpContext, _: &StorageTarget, _: &Path) -> BackendResult<()> { self.saw("put_file"); Ok(()) }
        fn wipe(&self, _: &OpContext, _: &StorageTarget) -> BackendResult<()> { self.saw("wipe"); Ok(()) }
        fn keep_storage(&self, _: &OpContext, t: &StorageTarget) -> BackendResult<KeptStorage> {
            self.saw("keep_storage");
            Ok(KeptStorage { target: t.name.clone(), live: t.name.clone(), kept: "k".into(), bytes: 1 })
        }
        fn restore_kept_storage(&self, _: &OpContext, _: &KeptStorage) -> BackendResult<()> { self.saw("restore_kept_storage"); Ok(()) }
        fn drop_kept_storage(&self, _: &OpContext, _: &KeptStorage) -> BackendResult<()> { self.saw("drop_kept_storage"); Ok(()) }
    }

    /// Every operation with a default body must be forwarded by the client: one that is
    /// not silently answers "unsupported" (or nothing) for a plugin or a dry run whose
    /// backend supports it.
    #[test]
    fn the_client_forwards_every_operation_that_has_a_default() {
        let inner = Arc::new(Optional::default());
        let client = CallClient(Dispatch(inner.clone()));
        let ctx = OpContext::new(|| false, |_| {});
        let t = StorageTarget {
            name: "dump".into(),
            path: None,
        };
        let staged = StagedDb {
            role: "validator".into(),
            live: "v".into(),
            staging: "s".into(),
        };
        let now = chrono::Utc::now();
        let info = DumpInfo {
            role: "validator".into(),
            database: "v".into(),
            format: "directory".into(),
            started_at: now,
            finished_at: now,
            server_version: String::new(),
            tables: Vec::new(),
        };
        let src = Path::new("/x");
        assert!(client.capabilities().workloads.exec);
        assert_eq!(
            client.check_staged(&ctx, &staged, &[]).unwrap().database,
            "s"
        );
        assert_eq!(client.exec(&ctx, "c", &[], None).unwrap().code, 7);
        client.put_file(&ctx, &t, src).unwrap();
        client.wipe(&ctx, &t).unwrap();
        client.set_values(&ctx, &serde_json::json!({})).unwrap();
        let kept = client.keep_storage(&ctx, &t).unwrap();
        client.restore_kept_storage(&ctx, &kept).unwrap();
        client.drop_kept_storage(&ctx, &kept).unwrap();
        client
            .restore_into_empty(&ctx, "validator", src, &info)
            .unwrap();
        assert_eq!(client.kept_removal_command("a").as_deref(), Some("rm a"));
        assert_eq!(
            inner.0.lock().unwrap().len(),
            11,
            "{:?}",
            inner.0.lock().unwrap()
        );
    }
}
