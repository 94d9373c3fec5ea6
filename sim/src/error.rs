//! The library's error type. Startup refusals carry the operator-facing message the real
//! validator would print, so tests and demos can assert on them.

use std::path::PathBuf;

/// Everything that can go wrong while starting or running the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The Postgres URL could not be parsed.
    #[error("invalid Postgres URL: {0}")]
    PgUrl(#[source] tokio_postgres::Error),
    /// A Postgres call failed (connect, DDL, query).
    #[error("postgres ({context}): {source}")]
    Db {
        /// What the simulator was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A file the simulator needed could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A dump file (identities or migration) is not valid JSON of the expected shape.
    #[error("invalid {what} at {path}: {message}")]
    InvalidDump {
        /// "identities dump" or "migration dump".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it was rejected.
        message: String,
    },
    /// The node refuses to start because of its migration state (missing or mismatching dump,
    /// migration id going backwards). The message mirrors the real validator's.
    #[error("{0}")]
    Migration(String),
    /// The node's stored state contradicts its configuration (other participant id, party).
    #[error("{0}")]
    StateMismatch(String),
    /// The SV refused to register the participant id (it was used before by another node).
    #[error("the SV refused participant id '{participant_id}': {message}")]
    ParticipantIdRefused {
        /// The refused id.
        participant_id: String,
        /// The SV's explanation.
        message: String,
    },
    /// The SV could not be reached or answered something unexpected.
    #[error("SV at {url}: {message}")]
    Sv {
        /// The SV base URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl SimError {
    /// Wraps a driver error with what the simulator was doing.
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| SimError::Db { context, source }
    }
}
