//! The socket protocol's wire types, from the protocol crate (`splice-dr-protocol`): the
//! daemon, the CLI and the demo all speak it from there.

pub use splice_dr_protocol::wire::*;
