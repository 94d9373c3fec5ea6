//! The contract between splice-dr and the systems it drives.
//!
//! Every backend (bare Postgres, docker-compose, Kubernetes, or a site plugin loaded at
//! run time) is a [`Backend`]: it implements [`BackendInfo`] and the three concerns,
//! [`Workloads`], [`Databases`] and [`Storage`]. The traits are deliberately synchronous
//! and speak in plain serde types: flows run on a blocking thread, and the same calls must
//! cross the C ABI of `splice-dr-plugin-abi` as JSON without any Rust trait object crossing
//! the boundary. A contract crate, like kube-core: no I/O, no loader, no unsafe code.

pub mod backend;
pub mod capabilities;
pub mod client;
pub mod context;
pub mod drill;
pub mod error;
pub mod operations;
pub mod types;

pub use backend::{dispatch, Backend, BackendCall, BackendInfo, Databases, Storage, Workloads};
pub use capabilities::{
    physical_drill_not_built, physical_not_built, Capabilities, DatabaseCapabilities,
    DatabaseStorage, RestoreShape, StorageCapabilities, WorkloadCapabilities,
};
pub use client::{CallClient, CallService, Dispatch};
pub use context::{OpContext, OpEvent};
pub use drill::{QueryOutcome, ScratchChecks, StagedCheck, StagedQuery};
pub use error::BackendError;
pub use operations::Effect;
pub use types::*;
