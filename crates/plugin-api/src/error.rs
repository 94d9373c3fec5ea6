//! The one error type backends return.
//!
//! It is serializable because a site plugin returns it as JSON through the C ABI; it
//! therefore carries messages, not source errors. Each message says what failed and,
//! where the backend knows, what the operator should do.

use serde::{Deserialize, Serialize};

/// Why a backend operation failed, in words an operator can act on.
///
/// Serialized adjacently tagged (`{"kind": "config", "detail": "..."}`): an internally
/// tagged enum cannot serialize the newtype variants holding a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum BackendError {
    /// The backend cannot do this operation at all (e.g. `put_file` on bare Postgres).
    #[error("the {backend} backend does not support `{op}`")]
    Unsupported {
        /// The operation that was asked for.
        op: String,
        /// The backend's kind.
        backend: String,
    },
    /// The run was cancelled while the operation was in progress.
    #[error("cancelled during {what}")]
    Cancelled {
        /// What was interrupted.
        what: String,
    },
    /// The backend's configuration is wrong.
    #[error("backend configuration: {0}")]
    Config(String),
    /// An external command (pg_dump, a stop command, ...) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, without secrets.
        command: String,
        /// Exit status as text.
        status: String,
        /// The last lines the command wrote to stderr.
        stderr: String,
    },
    /// A database statement failed.
    #[error("database: {context}: {message}")]
    Database {
        /// What the backend was doing.
        context: String,
        /// The server's message.
        message: String,
    },
    /// Something did not become ready in time.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the backend waited.
        seconds: u64,
    },
    /// Restored or dumped data did not match what was expected.
    #[error("verification failed: {0}")]
    Verification(String),
    /// A named component or database does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A local file operation failed.
    #[error("{context}: {message}")]
    Io {
        /// The file or directory and what was being done to it.
        context: String,
        /// The OS error.
        message: String,
    },
    /// The plugin boundary itself failed (bad JSON, ABI mismatch, panic in a plugin).
    #[error("plugin: {0}")]
    Plugin(String),
}

impl BackendError {
    /// The variant's name as the wire spells it (`unsupported`, `timeout`, …): a bounded
    /// label for metrics and logs, where the message itself would be unbounded.
    pub fn kind_name(&self) -> &'static str {
        match self {
            BackendError::Unsupported { .. } => "unsupported",
            BackendError::Cancelled { .. } => "cancelled",
            BackendError::Config(_) => "config",
            BackendError::Command { .. } => "command",
            BackendError::Database { .. } => "database",
            BackendError::Timeout { .. } => "timeout",
            BackendError::Verification(_) => "verification",
            BackendError::NotFound(_) => "not_found",
            BackendError::Io { .. } => "io",
            BackendError::Plugin(_) => "plugin",
        }
    }

    /// Wraps an I/O error with the path or action it concerns.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        BackendError::Io {
            context: context.into(),
            message: err.to_string(),
        }
    }

    /// Shorthand for a database error.
    pub fn db(context: impl Into<String>, message: impl ToString) -> Self {
        BackendError::Database {
            context: context.into(),
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_json() {
        let all = [
            BackendError::Unsupported {
                op: "wipe".into(),
                backend: "postgres".into(),
            },
            BackendError::Cancelled {
                what: "dump".into(),
            },
            BackendError::Config("bad".into()),
            BackendError::Command {
                command: "pg_dump".into(),
                status: "1".into(),
                stderr: "e".into(),
            },
            BackendError::db("ctx", "msg"),
            BackendError::Timeout {
                what: "x".into(),
                seconds: 3,
            },
            BackendError::Verification("rows".into()),
            BackendError::NotFound("role".into()),
            BackendError::Io {
                context: "f".into(),
                message: "m".into(),
            },
            BackendError::Plugin("p".into()),
        ];
        for e in all {
            let json = serde_json::to_string(&e).expect("serializes");
            let back: BackendError = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, e, "{json}");
            let kind = format!(r#""kind":"{}""#, e.kind_name());
            assert!(json.contains(&kind), "{json} names its kind as {kind}");
        }
    }
}
