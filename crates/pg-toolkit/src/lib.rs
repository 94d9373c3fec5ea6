//! The Postgres toolkit of splice-dr's backends.
//!
//! Every backend holds a node's databases on a Postgres server; they differ only in how
//! they reach it: the bare backend runs the libpq tools as local processes, compose and
//! k8s run them inside the postgres container or pod through an exec [`toolkit::Transport`].
//! What a dump, a staged restore, its verification by row counts, an `amcheck` drill and
//! the names of staged and kept databases mean is written here once, so the three restore
//! paths cannot drift apart. No backend plugin depends on another.

pub mod certs;
pub mod check;
pub mod child_env;
pub mod connection;
pub mod dump;
pub mod handshake;
pub mod names;
pub mod physical;
pub mod process;
pub mod sql;
pub mod staging;
pub mod tls;
pub mod toolkit;
pub mod verify;
pub mod wal;

pub use connection::ConnSettings;
