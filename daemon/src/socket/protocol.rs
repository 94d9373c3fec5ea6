//! The socket protocol: newline-delimited JSON, one request per line, replies as lines.
//!
//! A request is one JSON object with a `cmd` field. The daemon answers with zero or more
//! `{"type":"event",...}` lines (live progress of a run) and exactly one final line,
//! `{"type":"ok","result":...}` or `{"type":"error","code":...,"message":...}`. The
//! connection stays open for further requests. The same types are used by the CLI, so
//! the CLI is just a client of this protocol.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run_context::RunEvent;

/// Largest request line accepted, in bytes; longer lines get an error reply.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Parses one request line, as the socket server does for every line it reads. The error is
/// the reply text and says where the line is wrong: serde's line and column for broken
/// JSON, the field for a well-formed object that is not a request.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let malformed = |what: String| {
        format!(
            "malformed request: {what}; send one JSON object per line with a \"cmd\" field \
             (ping, status, runs, show, backups, run, cancel)"
        )
    };
    let value: Value = serde_json::from_str(line).map_err(|e| malformed(e.to_string()))?;
    let Some(fields) = value.as_object() else {
        return Err(malformed(format!(
            "the line is not a JSON object: {}",
            kind(&value)
        )));
    };
    let fields = fields.clone();
    let request: Request = serde_json::from_value(value).map_err(|e| {
        let e = e.to_string();
        match field_of(&fields, &e) {
            Some(field) => malformed(format!("field `{}`: {e}", field.escape_debug())),
            None => malformed(e),
        }
    })?;
    // serde's deny_unknown_fields does not reach the field-less variants of an internally
    // tagged enum: `{"cmd":"pause","node":"n1"}` paused every node (found while writing
    // tests/fuzz_parsers.rs).
    let fieldless = matches!(
        request,
        Request::Ping | Request::Status | Request::RepoCheck | Request::Pause | Request::Resume
    );
    if let Some(extra) = fields.keys().find(|k| fieldless && k.as_str() != "cmd") {
        return Err(malformed(format!(
            "unknown field `{}`: this command takes no other field",
            extra.escape_debug()
        )));
    }
    Ok(request)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The field a request's data error is about, when serde's message does not name it.
///
/// `Request` is internally tagged, so serde buffers the object and its errors lose their
/// position: "invalid type: string \"x\", expected a boolean" alone does not say which
/// field (found by tests/fuzz_parsers.rs). Each field is tried alone with `cmd`: the first
/// that reproduces the error is the culprit; none means `cmd` itself. Linear in the line.
fn field_of(fields: &serde_json::Map<String, Value>, error: &str) -> Option<String> {
    if error.starts_with("missing field") || error.starts_with("unknown field") {
        return None;
    }
    let cmd = fields.get("cmd")?;
    let culprit = fields
        .iter()
        .filter(|(k, _)| k.as_str() != "cmd")
        .find(|(k, v)| {
            let probe = serde_json::Map::from_iter([
                ("cmd".to_string(), cmd.clone()),
                (k.to_string(), (*v).clone()),
            ]);
            serde_json::from_value::<Request>(Value::Object(probe))
                .is_err_and(|e| e.to_string() == error)
        })
        .map(|(k, _)| k.clone());
    Some(culprit.unwrap_or_else(|| "cmd".into()))
}

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness check.
    Ping,
    /// Nodes, components, flows, active runs, config state.
    Status,
    /// Recent runs, newest first.
    Runs {
        /// At most this many.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// One run with its steps.
    Show {
        /// Run id.
        run: String,
    },
    /// Backups in the repository.
    Backups {
        /// Only this node's.
        #[serde(default)]
        node: Option<String>,
    },
    /// What retention deletes in every repository; deletes it unless `dry_run`.
    Prune {
        /// Only this node's backups.
        #[serde(default)]
        node: Option<String>,
        /// Show the plan, delete nothing.
        #[serde(default)]
        dry_run: bool,
    },
    /// Checks every repository: listable, writable, readable, free space.
    RepoCheck,
    /// Starts a flow; streams its events when `follow` is set, then answers with the
    /// final run record (or, without `follow`, at once with the run id).
    Run {
        /// Flow name.
        flow: String,
        /// Node (optional with one node configured).
        #[serde(default)]
        node: Option<String>,
        /// Parameters for the script.
        #[serde(default)]
        params: serde_json::Map<String, Value>,
        /// Record the plan, change nothing.
        #[serde(default)]
        dry_run: bool,
        /// Stream events until the run ends.
        #[serde(default)]
        follow: bool,
        /// The operator confirmed a destructive flow.
        #[serde(default)]
        confirmed: bool,
    },
    /// Streams a running run's events until it ends, then answers with its record
    /// (at once when it has already ended). Without `run`, follows the newest active run.
    Follow {
        /// Run id.
        #[serde(default)]
        run: Option<String>,
    },
    /// Publishes an operator event for the rules (`splice-dr trigger`).
    Trigger {
        /// Event name, e.g. `operator.restore-now` or `health.validator.down`.
        event: String,
        /// Node the event concerns.
        #[serde(default)]
        node: Option<String>,
        /// Free text for logs.
        #[serde(default)]
        message: String,
    },
    /// Stops every automatic trigger (manual runs still allowed).
    Pause,
    /// Re-arms automatic triggers.
    Resume,
    /// Clears a rule's tripped circuit breaker.
    Reset {
        /// Rule name.
        rule: String,
    },
    /// Approves a run waiting for approval, which then starts.
    Approve {
        /// Run id.
        run: String,
    },
    /// Asks a run to stop.
    Cancel {
        /// Run id.
        run: String,
    },
}

/// Why a request failed, so the CLI can pick its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request itself is wrong (unknown flow/node, bad JSON): exit 2.
    Usage,
    /// A destructive flow needs confirmation (`--yes`): exit 2 when none can be given.
    Confirm,
    /// The peer is not allowed to talk to the daemon: exit 1.
    Denied,
    /// The node is locked by another run: exit 1.
    Busy,
    /// The operation ran and failed: exit 1.
    Failed,
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// A live event of a followed run.
    Event {
        /// The event.
        event: RunEvent,
    },
    /// Final success.
    Ok {
        /// The answer.
        result: Value,
    },
    /// Final failure.
    Error {
        /// Category.
        code: ErrorCode,
        /// What is wrong and what to do.
        message: String,
    },
}

impl Reply {
    /// Shorthand for an error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Reply::Error {
            code,
            message: message.into(),
        }
    }

    /// Whether this line ends the answer to a request.
    pub fn is_final(&self) -> bool {
        !matches!(self, Reply::Event { .. })
    }
}
