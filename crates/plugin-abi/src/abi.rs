//! The versioned C ABI through which splice-dr loads site backends at run time.
//!
//! Rust trait objects, tokio and tracing cannot cross a `dlopen` boundary (a dynamic
//! library has its own copies of their statics), so the ABI is three synchronous C
//! functions exchanging JSON: `create(config)`, `call(instance, BackendCall)` and
//! `free_buf`. The host passes callbacks for cancellation and for events (log lines,
//! progress). A library exports one symbol, [`ENTRY_SYMBOL`], returning a
//! [`PluginVTable`] whose first field is the ABI version; the host reads it before using
//! anything else and never unloads a library it has loaded.
//!
//! Plugin authors do not write any of this by hand: they implement `Backend` (of
//! `splice-dr-plugin-api`) and invoke [`crate::export_backend!`].
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use splice_dr_plugin_api::{dispatch, Backend, BackendCall, BackendError, OpContext, OpEvent};

/// Version of the layout below; bumped on any incompatible change.
pub const ABI_VERSION: u32 = 1;

/// Name of the function every plugin library exports.
pub const ENTRY_SYMBOL: &str = "splice_dr_plugin_entry";

/// A byte buffer allocated by the plugin and handed to the host, which must give it back
/// through [`PluginVTable::free_buf`] so that the allocator that made it frees it.
#[repr(C)]
#[derive(Debug)]
pub struct ByteBuf {
    /// Start of the bytes (null for an empty buffer).
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocated capacity.
    pub cap: usize,
}

impl ByteBuf {
    /// An empty buffer that owns nothing.
    pub fn empty() -> Self {
        ByteBuf {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    /// Hands a vector's allocation over to the other side.
    pub fn from_vec(v: Vec<u8>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        ByteBuf {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// Copies the bytes out without taking ownership.
    ///
    /// # Safety
    /// `ptr`/`len` must describe a live allocation (or `ptr` be null).
    pub unsafe fn to_vec(&self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
    }
}

/// Functions the host offers a plugin for the duration of one call.
///
/// `user` is an opaque handle of the call, not a pointer into the host: it is valid only
/// until `call` returns. A plugin that keeps the callbacks (e.g. an `OpContext` clone in a
/// thread) and uses them later reaches no freed memory: the host then answers
/// `is_cancelled` with true and drops events (`CallHandle` in `dynamic.rs`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostCallbacks {
    /// Opaque handle of the call, passed back to the callbacks; valid only during it.
    pub user: *const c_void,
    /// Whether the run was cancelled.
    pub is_cancelled: unsafe extern "C" fn(user: *const c_void) -> bool,
    /// Delivers one [`OpEvent`] as JSON.
    pub event: unsafe extern "C" fn(user: *const c_void, json: *const u8, len: usize),
}

/// The table a plugin's entry symbol returns. `abi_version` must stay the first field.
#[repr(C)]
#[derive(Debug)]
pub struct PluginVTable {
    /// [`ABI_VERSION`] of the plugin.
    pub abi_version: u32,
    /// Builds an instance from JSON config; returns null and an error JSON in `out` on failure.
    pub create:
        unsafe extern "C" fn(config: *const u8, len: usize, out: *mut ByteBuf) -> *mut c_void,
    /// Performs one [`BackendCall`]; returns 0 with the result JSON in `out`, or non-zero
    /// with a [`BackendError`] JSON in `out`.
    pub call: unsafe extern "C" fn(
        instance: *mut c_void,
        request: *const u8,
        len: usize,
        host: *const HostCallbacks,
        out: *mut ByteBuf,
    ) -> i32,
    /// Frees a buffer this plugin returned.
    pub free_buf: unsafe extern "C" fn(buf: ByteBuf),
}

/// The host callbacks, made movable into the [`OpContext`] closures for one call.
#[derive(Clone, Copy)]
struct SendCallbacks(HostCallbacks);
// SAFETY: the host's callbacks are thread-safe and take a handle, not a pointer, so a
// copy that outlives the call is harmless (it reads "cancelled").
unsafe impl Send for SendCallbacks {}
unsafe impl Sync for SendCallbacks {}

fn error_json(err: &BackendError) -> Vec<u8> {
    serde_json::to_vec(err)
        .unwrap_or_else(|_| br#"{"kind":"plugin","detail":"unencodable error"}"#.to_vec())
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Plugin side of `create`; used by [`crate::export_backend!`].
///
/// # Safety
/// `config` must point to `len` readable bytes and `out` to a writable [`ByteBuf`].
pub unsafe fn plugin_create<B, F>(
    ctor: F,
    config: *const u8,
    len: usize,
    out: *mut ByteBuf,
) -> *mut c_void
where
    B: Backend + 'static,
    F: Fn(serde_json::Value) -> Result<B, BackendError>,
{
    let bytes = unsafe { std::slice::from_raw_parts(config, len) };
    let built = catch_unwind(AssertUnwindSafe(|| {
        let value = serde_json::from_slice(bytes)
            .map_err(|e| BackendError::Config(format!("plugin config is not JSON: {e}")))?;
        ctor(value)
    }))
    .unwrap_or_else(|p| {
        Err(BackendError::Plugin(format!(
            "panic in create: {}",
            panic_message(p)
        )))
    });
    match built {
        Ok(b) => {
            let boxed: Box<dyn Backend> = Box::new(b);
            Box::into_raw(Box::new(boxed)) as *mut c_void
        }
        Err(e) => {
            unsafe { *out = ByteBuf::from_vec(error_json(&e)) };
            std::ptr::null_mut()
        }
    }
}

/// Plugin side of `call`; used by [`crate::export_backend!`].
///
/// # Safety
/// `instance` must come from [`plugin_create`]; the pointers must be valid for the call.
pub unsafe fn plugin_call(
    instance: *mut c_void,
    request: *const u8,
    len: usize,
    host: *const HostCallbacks,
    out: *mut ByteBuf,
) -> i32 {
    let backend: &dyn Backend = unsafe { &**(instance as *const Box<dyn Backend>) };
    let bytes = unsafe { std::slice::from_raw_parts(request, len) };
    let cb = SendCallbacks(unsafe { *host });
    let ctx = OpContext::new(
        move || {
            let c = cb;
            unsafe { (c.0.is_cancelled)(c.0.user) }
        },
        move |ev: OpEvent| {
            let c = cb;
            if let Ok(json) = serde_json::to_vec(&ev) {
                unsafe { (c.0.event)(c.0.user, json.as_ptr(), json.len()) }
            }
        },
    );
    let result = catch_unwind(AssertUnwindSafe(|| {
        let call: BackendCall = serde_json::from_slice(bytes)
            .map_err(|e| BackendError::Plugin(format!("request is not a known call: {e}")))?;
        dispatch(backend, &ctx, call)
    }))
    .unwrap_or_else(|p| {
        Err(BackendError::Plugin(format!(
            "panic in call: {}",
            panic_message(p)
        )))
    });
    let (code, body) = match result {
        Ok(v) => (
            0,
            serde_json::to_vec(&v).unwrap_or_else(|_| b"null".to_vec()),
        ),
        Err(e) => (1, error_json(&e)),
    };
    unsafe { *out = ByteBuf::from_vec(body) };
    code
}

/// Plugin side of `free_buf`; used by [`crate::export_backend!`].
///
/// # Safety
/// `buf` must have been produced by [`ByteBuf::from_vec`] in this library.
pub unsafe extern "C" fn plugin_free_buf(buf: ByteBuf) {
    if !buf.ptr.is_null() {
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

/// Exports a [`Backend`] as a splice-dr plugin library: any type implementing
/// `BackendInfo` and the three concern traits (`Workloads`, `Databases`, `Storage`) is one.
///
/// Call once at the root of a `cdylib` crate with a constructor
/// `fn(serde_json::Value) -> Result<YourBackend, BackendError>` given by absolute path
/// (e.g. `crate::MyBackend::from_json`).
#[macro_export]
macro_rules! export_backend {
    ($ctor:path) => {
        #[allow(unsafe_code, missing_docs)]
        mod __splice_dr_plugin_export {
            use $crate::abi::{ByteBuf, HostCallbacks, PluginVTable};
            unsafe extern "C" fn create(
                config: *const u8,
                len: usize,
                out: *mut ByteBuf,
            ) -> *mut ::std::ffi::c_void {
                unsafe { $crate::abi::plugin_create($ctor, config, len, out) }
            }
            unsafe extern "C" fn call(
                instance: *mut ::std::ffi::c_void,
                request: *const u8,
                len: usize,
                host: *const HostCallbacks,
                out: *mut ByteBuf,
            ) -> i32 {
                unsafe { $crate::abi::plugin_call(instance, request, len, host, out) }
            }
            static VTABLE: PluginVTable = PluginVTable {
                abi_version: $crate::abi::ABI_VERSION,
                create,
                call,
                free_buf: $crate::abi::plugin_free_buf,
            };
            /// The plugin's entry point, looked up by the host with `dlsym`.
            #[no_mangle]
            pub extern "C" fn splice_dr_plugin_entry() -> *const PluginVTable {
                &VTABLE
            }
        }
    };
}
