//! The Unix socket: the daemon's control interface and the CLI's way in.

pub mod client;
pub mod protocol;
pub mod server;
