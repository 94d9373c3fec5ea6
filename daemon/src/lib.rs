//! splice-dr: keeps Splice validator nodes alive.
//!
//! The library behind the `splice-dr` binary. Data flows one way: a request (CLI,
//! socket) → [`service::Service`] → [`flows::Runner`] → a Rhai flow ([`script`]) → host
//! objects → a backend plugin ([`backends`]) → the world; results come back through the
//! [`journal`] and run events. See `docs/ARCHITECTURE.md` for the map.

pub mod access;
pub mod autopilot;
pub mod backends;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod drills;
pub mod events;
pub mod flows;
pub mod http_limits;
pub mod identities;
pub mod interrupted;
pub mod journal;
#[cfg(test)]
mod layering;
pub mod leader;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod orphans;
pub mod participants;
pub mod prepare;
pub mod private_tmp;
pub mod prune;
pub mod repo;
pub mod repo_check;
pub mod rules;
pub mod run_context;
pub mod schedule;
pub mod script;
pub mod service;
pub mod socket;
pub mod status_state;
pub mod tls;
pub mod users;
pub mod util;
pub mod validator;
