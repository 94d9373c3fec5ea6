//! splice-dr: keeps Splice validator nodes alive.
//!
//! The library behind the `splice-dr` binary. Data flows one way: a request (CLI,
//! socket) → [`flows::Runner`] → a Rhai flow ([`script`]) → host objects → a backend
//! plugin → the world; results come back through the [`journal`] and run events.
//! See `docs/ARCHITECTURE.md` for the map.

pub mod flows;
pub mod journal;
pub mod lock;
pub mod repo;
pub mod script;
pub mod util;
