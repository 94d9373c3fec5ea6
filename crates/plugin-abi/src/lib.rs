//! Site backends loaded at run time: the versioned C ABI ([`abi`]), the host's side of
//! it ([`dynamic`]: [`load`] gives a [`DynamicBackend`], the typed `Backend` over a
//! library) and the plugin's side ([`export_backend!`]).
//!
//! Apart from the contract crate on purpose: a backend compiled into splice-dr, a test or
//! a client needs the contract, not `dlopen`, and every `unsafe` block of the project is
//! in this one crate, where a reviewer finds it.

pub mod abi;
pub mod dynamic;

pub use dynamic::{load, DynamicBackend, Plugin};
