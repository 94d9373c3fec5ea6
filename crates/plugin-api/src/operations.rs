//! How a backend operation is defined once.
//!
//! [`backend_operations!`] takes the list of operations (name, arguments with their wire
//! types, result, effect), grouped by the concern trait that declares them, and writes
//! every place that used to mirror it by hand: the trait method (in
//! [`Workloads`](crate::Workloads), [`Databases`](crate::Databases) or
//! [`Storage`](crate::Storage)), its [`BackendCall`](crate::BackendCall)
//! variant (the C ABI's request format), the arm of [`dispatch`](crate::dispatch), the
//! method of [`CallClient`](crate::CallClient) that turns a trait call into a request, and
//! the operation's [`Effect`], which the dry-run recorder and other layers read instead
//! of listing operations. Adding an operation is one entry in `backend.rs` plus the
//! backends that implement it.
//!
//! Arguments are passed borrowed to the trait (`&str`, `&Path`, `&[T]`) and owned on the
//! wire (`String`, `PathBuf`, `Vec<T>`); [`IntoWire`] and [`FromWire`] convert between the
//! two so the macro needs no per-type code.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a call does to the world, for layers that must treat the two differently (a dry
/// run lets reads through and records writes; metrics label by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Looks only: safe to perform during a dry run.
    Read,
    /// Changes the node, its databases or its storage, or reads state that only an earlier
    /// write creates (a staged database): a dry run cannot perform it.
    Write,
}

/// Converts a trait argument (borrowed) into its owned wire form.
pub trait IntoWire<W> {
    /// The owned value sent in a [`BackendCall`](crate::BackendCall).
    fn into_wire(self) -> W;
}

/// Borrows a trait argument back out of its wire form, on the dispatching side.
pub trait FromWire<'a, W> {
    /// The argument as the trait method takes it.
    fn from_wire(wire: &'a W) -> Self;
}

impl<T: Clone> IntoWire<T> for &T {
    fn into_wire(self) -> T {
        self.clone()
    }
}

impl<'a, T> FromWire<'a, T> for &'a T {
    fn from_wire(wire: &'a T) -> Self {
        wire
    }
}

impl IntoWire<String> for &str {
    fn into_wire(self) -> String {
        self.to_owned()
    }
}

impl<'a> FromWire<'a, String> for &'a str {
    fn from_wire(wire: &'a String) -> Self {
        wire
    }
}

impl IntoWire<PathBuf> for &Path {
    fn into_wire(self) -> PathBuf {
        self.to_owned()
    }
}

impl<'a> FromWire<'a, PathBuf> for &'a Path {
    fn from_wire(wire: &'a PathBuf) -> Self {
        wire
    }
}

impl IntoWire<Option<PathBuf>> for Option<&Path> {
    fn into_wire(self) -> Option<PathBuf> {
        self.map(Path::to_owned)
    }
}

impl<'a> FromWire<'a, Option<PathBuf>> for Option<&'a Path> {
    fn from_wire(wire: &'a Option<PathBuf>) -> Self {
        wire.as_deref()
    }
}

impl<T: Clone> IntoWire<Vec<T>> for &[T] {
    fn into_wire(self) -> Vec<T> {
        self.to_vec()
    }
}

impl<'a, T> FromWire<'a, Vec<T>> for &'a [T] {
    fn from_wire(wire: &'a Vec<T>) -> Self {
        wire
    }
}

impl IntoWire<u32> for u32 {
    fn into_wire(self) -> u32 {
        self
    }
}

impl<'a> FromWire<'a, u32> for u32 {
    fn from_wire(wire: &'a u32) -> Self {
        *wire
    }
}

/// A duration travels as whole milliseconds (saturating), the ABI's format since v1.
impl IntoWire<u64> for Duration {
    fn into_wire(self) -> u64 {
        u64::try_from(self.as_millis()).unwrap_or(u64::MAX)
    }
}

impl<'a> FromWire<'a, u64> for Duration {
    fn from_wire(wire: &'a u64) -> Self {
        Duration::from_millis(*wire)
    }
}

/// Writes the traits, the call type, dispatch and the client from one list of operations.
///
/// The input names the union trait (`union Backend;`), then the identity trait every
/// concern builds on (`info BackendInfo { .. }`), then each concern with its operations
/// (`concern Workloads { .. }`). Each operation reads
/// `[read|write] fn name(arg: TraitType => WireType, ...) -> Result = Variant;` (an
/// argument may carry serde attributes for its wire field), with
/// `[write, optional]` (or `[read, optional]`) for an operation whose trait method has a
/// default body answering [`BackendError::Unsupported`](crate::BackendError). Inside
/// `info`, `trait { .. }` holds the identity trait's items (the backend's kind, its
/// capabilities), `client { .. }` their [`CallClient`](crate::CallClient) bodies, and
/// `calls { .. }` the read-only call variants behind them with their dispatch.
///
/// The union is a supertrait of the identity trait and every concern, implemented for
/// every type that has them all, so a backend implements the concerns and never the union.
/// All concerns share one flat [`BackendCall`](crate::BackendCall): which trait declares
/// an operation is invisible on the wire.
#[macro_export]
#[doc(hidden)]
macro_rules! backend_operations {
    (
        $(#[$union_meta:meta])*
        union $union:ident;
        $(#[$info_meta:meta])*
        info $info:ident {
            trait { $($info_items:tt)* }
            client { $($client_items:tt)* }
            calls {
                $( $(#[$xmeta:meta])* $xname:ident = $xvariant:ident { $($xfield:ident : $xty:ty),* }
                    => |$xb:ident| $xdispatch:expr; )*
            }
        }
        $(
            $(#[$concern_meta:meta])*
            concern $concern:ident {
                $( $(#[$meta:meta])*
                   [$effect:ident $(, $optional:ident)?]
                   fn $name:ident ( $( $(#[$ameta:meta])* $arg:ident : $aty:ty => $wty:ty ),* )
                       -> $ret:ty
                   = $variant:ident; )*
            }
        )*
    ) => {
        $(#[$info_meta])*
        pub trait $info: Send + Sync {
            $($info_items)*
        }

        $(
            $(#[$concern_meta])*
            pub trait $concern: $info {
                $(
                    $crate::backend_operations! {
                        @method [$($optional)?] $(#[$meta])* fn $name($($arg: $aty),*) -> $ret
                    }
                )*
            }
        )*

        $(#[$union_meta])*
        pub trait $union: $info $(+ $concern)* {}

        impl<T: $info $(+ $concern)* + ?Sized> $union for T {}

        /// One call of a backend operation, serialized: the C ABI's request format.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        #[allow(missing_docs)] // fields are the trait method's arguments, documented there
        pub enum BackendCall {
            $( $(#[$xmeta])* $xvariant { $($xfield: $xty),* }, )*
            $( $(
                $variant { $( $(#[$ameta])* $arg: $wty ),* },
            )* )*
        }

        impl BackendCall {
            /// Whether the call changes the world (see [`Effect`](crate::Effect)).
            pub fn effect(&self) -> $crate::Effect {
                match self {
                    $( BackendCall::$xvariant { .. } => $crate::Effect::Read, )*
                    $( $( BackendCall::$variant { .. } =>
                        $crate::backend_operations!(@effect $effect), )* )*
                }
            }

            /// The operation's name, as the trait method and the wire's `op` field spell it.
            pub fn op(&self) -> &'static str {
                match self {
                    $( BackendCall::$xvariant { .. } => stringify!($xname), )*
                    $( $( BackendCall::$variant { .. } => stringify!($name), )* )*
                }
            }
        }

        /// Performs `call` on `backend` and returns its result as JSON: the one place a
        /// request becomes a trait call, for plugins across the C ABI and in-process
        /// layers alike.
        pub fn dispatch(
            backend: &dyn $union,
            ctx: &$crate::OpContext,
            call: BackendCall,
        ) -> Result<serde_json::Value, $crate::BackendError> {
            match call {
                $( BackendCall::$xvariant { $($xfield),* } => {
                    let $xb = backend;
                    $crate::operations::to_value($xdispatch)
                } )*
                $( $( BackendCall::$variant { $($arg),* } => $crate::operations::to_value(
                    backend.$name(ctx $(, $crate::operations::FromWire::from_wire(&$arg))*)?,
                ), )* )*
            }
        }

        impl<S: $crate::CallService> $info for $crate::CallClient<S> {
            $($client_items)*
        }

        $(
            impl<S: $crate::CallService> $concern for $crate::CallClient<S> {
                $(
                    fn $name(&self, ctx: &$crate::OpContext $(, $arg: $aty)*)
                        -> $crate::backend::BackendResult<$ret> {
                        self.typed(ctx, BackendCall::$variant {
                            $($arg: $crate::operations::IntoWire::into_wire($arg)),*
                        })
                    }
                )*
            }
        )*
    };
    (@method [optional] $(#[$meta:meta])* fn $name:ident($($arg:ident: $aty:ty),*) -> $ret:ty) => {
        $(#[$meta])*
        fn $name(&self, ctx: &$crate::OpContext $(, $arg: $aty)*)
            -> $crate::backend::BackendResult<$ret> {
            let _ = (ctx $(, $arg)*);
            Err(self.unsupported(stringify!($name)))
        }
    };
    (@method [] $(#[$meta:meta])* fn $name:ident($($arg:ident: $aty:ty),*) -> $ret:ty) => {
        $(#[$meta])*
        fn $name(&self, ctx: &$crate::OpContext $(, $arg: $aty)*)
            -> $crate::backend::BackendResult<$ret>;
    };
    (@effect read) => { $crate::Effect::Read };
    (@effect write) => { $crate::Effect::Write };
}

/// Encodes a call's result for the wire.
#[doc(hidden)]
pub fn to_value<T: serde::Serialize>(v: T) -> Result<serde_json::Value, crate::BackendError> {
    serde_json::to_value(v)
        .map_err(|e| crate::BackendError::Plugin(format!("encoding a result: {e}")))
}
