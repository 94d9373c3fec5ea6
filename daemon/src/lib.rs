//! splice-dr: keeps Splice validator nodes alive.
//!
//! The library behind the `splice-dr` binary. Data flows one way: a request (CLI,
//! socket) → the service → the runner → a Rhai flow (the script host) → host objects → a
//! backend plugin → the world; results come back through the [`journal`] and run events.
//! See `docs/ARCHITECTURE.md` for the map and `layering.rs` for the layers a test holds
//! every module to.
//!
//! Modules are private unless the binary's `main` or the end-to-end tests (which drive the
//! real binary and read its files) need them: the automation, the runner, the script
//! host and the service are reached only through the CLI and the socket.

mod access;
mod autopilot;
mod backends;
pub mod build_info;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
mod drill_scratch;
mod drills;
pub mod events;
mod flows;
mod host_identity;
mod http_limits;
pub mod identities;
mod interrupted;
pub mod journal;
#[cfg(test)]
mod layering;
pub mod leader;
mod lock;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod orphans;
pub mod participants;
mod prepare;
mod private_tmp;
mod prune;
mod repo_check;
pub mod report;
mod run_context;
mod runway;
mod script;
mod service;
mod snapshot_store;
pub mod socket;
mod status_state;
pub mod tls;
mod users;
mod util;
pub mod validator;
mod wal;
