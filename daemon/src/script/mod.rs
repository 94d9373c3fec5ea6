//! The Rhai host: a hardened engine, the flow catalog, and the objects scripts see.

mod catalog;
mod engine;
mod host;
mod host_drill;
mod host_elsewhere;
mod host_offsite;
mod host_physical;
mod host_recovery;
mod host_users;

pub use catalog::{Flow, FlowCatalog, ScriptError};
pub use engine::Limits;
pub use host::{execute, FlowEnv, NodeFacts};
