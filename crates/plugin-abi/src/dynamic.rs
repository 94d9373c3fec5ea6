//! Host side of the C ABI: a loaded plugin library answering [`BackendCall`]s, and
//! [`DynamicBackend`], the typed `Backend` over it.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

use libloading::Library;
use serde::de::DeserializeOwned;

use splice_dr_plugin_api::backend::BackendResult;
use splice_dr_plugin_api::{
    BackendCall, BackendError, CallClient, CallService, Capabilities, OpContext, OpEvent,
};

use crate::abi::{ByteBuf, HostCallbacks, PluginVTable, ABI_VERSION, ENTRY_SYMBOL};

/// A backend implemented by a dynamically loaded library: the typed
/// [`Backend`](splice_dr_plugin_api::Backend) over the
/// library's [`Plugin`] calls.
pub type DynamicBackend = CallClient<Plugin>;

/// Loads the library at `path`, checks its ABI version, and creates an instance from
/// `config` (the node's `[node.plugin.config]` table as JSON).
pub fn load(path: &Path, config: &serde_json::Value) -> Result<DynamicBackend, BackendError> {
    Plugin::load(path, config).map(CallClient)
}

/// A loaded plugin library, answering [`BackendCall`]s over the C ABI.
///
/// The library is leaked on purpose: unloading code that may still have threads or
/// statics alive is a crash waiting to happen, and a daemon loads each plugin once.
pub struct Plugin {
    vtable: &'static PluginVTable,
    instance: *mut c_void,
    path: PathBuf,
    kind: String,
    capabilities: Capabilities,
}

// SAFETY: plugin instances are `Box<dyn Backend>` on the plugin side, which is Send + Sync.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Contexts of the plugin calls in progress, by handle. A plugin's callbacks carry a
/// handle, never a pointer: a plugin that keeps its context (clones it into a thread)
/// and uses it after the call returned reaches no freed memory — the handle is gone, so
/// it reads "cancelled" and its events are dropped.
static CALLS: LazyLock<Mutex<HashMap<usize, OpContext>>> = LazyLock::new(Default::default);

/// Handles are never reused, so a stale one cannot reach a later call's context.
static NEXT_CALL: AtomicUsize = AtomicUsize::new(1);

/// One call's registration in [`CALLS`]; removed when the call returns (or unwinds).
struct CallHandle(usize);

impl CallHandle {
    fn open(ctx: &OpContext) -> Self {
        let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
        calls().insert(id, ctx.clone());
        CallHandle(id)
    }

    /// What the plugin gets as the callbacks' `user` argument.
    fn user(&self) -> *const c_void {
        self.0 as *const c_void
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        calls().remove(&self.0);
    }
}

fn calls() -> std::sync::MutexGuard<'static, HashMap<usize, OpContext>> {
    CALLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The context of the call `user` names, if that call is still in progress (cloned, so
/// no lock is held while the host's callback runs).
fn live_call(user: *const c_void) -> Option<OpContext> {
    calls().get(&(user as usize)).cloned()
}

unsafe extern "C" fn host_is_cancelled(user: *const c_void) -> bool {
    live_call(user).is_none_or(|ctx| ctx.is_cancelled())
}

unsafe extern "C" fn host_event(user: *const c_void, json: *const u8, len: usize) {
    let Some(ctx) = live_call(user) else { return };
    if json.is_null() {
        return;
    }
    let bytes = unsafe { std::slice::from_raw_parts(json, len) };
    if let Ok(ev) = serde_json::from_slice::<OpEvent>(bytes) {
        ctx.emit(ev);
    }
}

impl Plugin {
    /// Loads the library at `path`, checks its ABI version, and creates an instance from
    /// `config` (the node's `[node.plugin.config]` table as JSON).
    pub fn load(path: &Path, config: &serde_json::Value) -> Result<Self, BackendError> {
        let shown = path.display();
        // SAFETY: loading runs the library's initialisers; the operator chose this file.
        let lib = unsafe { Library::new(path) }
            .map_err(|e| BackendError::Plugin(format!("cannot load {shown}: {e}")))?;
        let lib: &'static Library = Box::leak(Box::new(lib));
        // SAFETY: the symbol's type is fixed by the ABI.
        let entry = unsafe {
            lib.get::<unsafe extern "C" fn() -> *const PluginVTable>(ENTRY_SYMBOL.as_bytes())
        }
        .map_err(|e| {
            BackendError::Plugin(format!(
                "{shown} is not a splice-dr plugin (no `{ENTRY_SYMBOL}` symbol): {e}"
            ))
        })?;
        let table = unsafe { entry() };
        if table.is_null() {
            return Err(BackendError::Plugin(format!(
                "{shown}: entry returned null"
            )));
        }
        // SAFETY: every ABI version keeps `abi_version: u32` as the first field.
        let version = unsafe { std::ptr::read(table as *const u32) };
        if version != ABI_VERSION {
            return Err(BackendError::Plugin(format!(
                "{shown} speaks plugin ABI v{version}, this splice-dr speaks v{ABI_VERSION}: \
                 rebuild the plugin against the matching splice-dr-plugin-api"
            )));
        }
        let vtable: &'static PluginVTable = unsafe { &*table };
        let cfg = serde_json::to_vec(config)
            .map_err(|e| BackendError::Config(format!("plugin config: {e}")))?;
        let mut out = ByteBuf::empty();
        let instance = unsafe { (vtable.create)(cfg.as_ptr(), cfg.len(), &mut out) };
        if instance.is_null() {
            let body = unsafe { out.to_vec() };
            unsafe { (vtable.free_buf)(out) };
            return Err(serde_json::from_slice(&body).unwrap_or_else(|_| {
                BackendError::Plugin(format!("{shown}: create failed without an error"))
            }));
        }
        let mut backend = Plugin {
            vtable,
            instance,
            path: path.to_path_buf(),
            kind: String::new(),
            capabilities: Capabilities::default(),
        };
        let ctx = OpContext::new(|| false, |_| {});
        backend.kind = backend.typed(&ctx, BackendCall::Kind {})?;
        // Asked once: capabilities are fixed for an instance. A plugin built before the
        // call existed answers an error, which reads as the conservative default.
        backend.capabilities = backend
            .typed(&ctx, BackendCall::Capabilities {})
            .unwrap_or_default();
        Ok(backend)
    }

    fn raw_call(
        &self,
        ctx: &OpContext,
        call: &BackendCall,
    ) -> Result<serde_json::Value, BackendError> {
        let req = serde_json::to_vec(call)
            .map_err(|e| BackendError::Plugin(format!("encoding request: {e}")))?;
        let handle = CallHandle::open(ctx);
        let host = HostCallbacks {
            user: handle.user(),
            is_cancelled: host_is_cancelled,
            event: host_event,
        };
        let mut out = ByteBuf::empty();
        // SAFETY: instance came from this vtable's create; buffers live for the call.
        let code =
            unsafe { (self.vtable.call)(self.instance, req.as_ptr(), req.len(), &host, &mut out) };
        let body = unsafe { out.to_vec() };
        unsafe { (self.vtable.free_buf)(out) };
        if code == 0 {
            serde_json::from_slice(&body)
                .map_err(|e| BackendError::Plugin(format!("plugin answered bad JSON: {e}")))
        } else {
            Err(serde_json::from_slice(&body).unwrap_or_else(|e| {
                BackendError::Plugin(format!("plugin failed with an unreadable error: {e}"))
            }))
        }
    }

    fn typed<T: DeserializeOwned>(&self, ctx: &OpContext, call: BackendCall) -> BackendResult<T> {
        let v = self.raw_call(ctx, &call)?;
        serde_json::from_value(v)
            .map_err(|e| BackendError::Plugin(format!("plugin result has the wrong shape: {e}")))
    }
}

impl CallService for Plugin {
    fn kind(&self) -> String {
        self.kind.clone()
    }
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }
    fn call(&self, ctx: &OpContext, call: BackendCall) -> Result<serde_json::Value, BackendError> {
        self.raw_call(ctx, &call)
    }
}

#[cfg(test)]
mod call_handle_tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A plugin that kept its callbacks past the call reaches nothing: the handle answers
    /// "cancelled" and drops events, instead of reading a dead stack frame.
    #[test]
    fn callbacks_outliving_their_call_reach_nothing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let ctx = OpContext::new(
            || false,
            move |ev| sink.lock().unwrap().push(format!("{ev:?}")),
        );
        let event = serde_json::to_vec(&OpEvent::Log {
            level: "info".into(),
            message: "hello".into(),
        })
        .unwrap();
        let handle = CallHandle::open(&ctx);
        let user = handle.user();
        unsafe {
            assert!(!host_is_cancelled(user), "live during the call");
            host_event(user, event.as_ptr(), event.len());
        }
        assert_eq!(seen.lock().unwrap().len(), 1);
        drop(handle);
        drop(ctx);
        unsafe {
            assert!(host_is_cancelled(user), "a stale handle reads cancelled");
            host_event(user, event.as_ptr(), event.len());
        }
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "events after the call are dropped"
        );

        // Handles are never reused: a later call is not reachable through the old one.
        let flag = Arc::new(AtomicBool::new(false));
        let later = OpContext::detached(flag);
        let next = CallHandle::open(&later);
        assert_ne!(next.user(), user);
        assert!(unsafe { host_is_cancelled(user) });
        assert!(!unsafe { host_is_cancelled(next.user()) });
    }
}
