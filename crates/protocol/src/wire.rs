//! The socket protocol: newline-delimited JSON, one request per line, replies as lines.
//!
//! A request is one JSON object with a `cmd` field. The daemon answers with zero or more
//! `{"type":"event",...}` lines (live progress of a run) and exactly one final line,
//! `{"type":"ok","result":...}` or `{"type":"error","code":...,"message":...}`. The
//! connection stays open for further requests. The same types are used by the CLI, so
//! the CLI is just a client of this protocol.
//!
//! Versions: a request may carry `"protocol": N` (the CLI always does); `ping` and
//! `status` answer with the daemon's `protocol` and `daemon_version`. The two directions
//! are not symmetric, on purpose. A client reads what a newer daemon sends leniently
//! ([`parse_reply`]): unknown fields are ignored, an event or line type it does not know
//! is skipped (every answer still ends with `ok` or `error`), an unknown error code is
//! [`ErrorCode::Unknown`]. The daemon never ignores an unknown request field, since
//! ignoring one can widen a destructive command (`{"cmd":"pause","node":"n1"}` paused
//! every node): it refuses the request, as `version_skew` naming both versions when the
//! request says it speaks a newer protocol, else as a malformed request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::event::RunEvent;

/// Largest request line accepted, in bytes; longer lines get an error reply.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The protocol this build speaks. Bump it when a request gains a field or a command, so
/// an older daemon can tell a newer client from a broken one (`version_skew`).
pub const PROTOCOL_VERSION: u64 = 1;

/// This build's version, reported by `ping` and `status` so operators see which daemon
/// answers (it may be older than the CLI after an upgrade).
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a request line was refused; [`BadRequest::code`] is the reply's error code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadRequest {
    /// Not a request of any protocol this daemon knows of: says where the line is wrong.
    #[error(
        "malformed request: {0}; send one JSON object per line with a \"cmd\" field \
         (ping, status, runs, show, backups, run, cancel)"
    )]
    Malformed(String),
    /// A client speaking a newer protocol sent what this daemon does not know.
    #[error(
        "this daemon speaks protocol {} (splice-dr {}); the client speaks {client} and sent \
         {what}: upgrade the daemon, or use a client of the daemon's version",
        PROTOCOL_VERSION,
        CRATE_VERSION
    )]
    VersionSkew {
        /// The protocol the request says it speaks.
        client: u64,
        /// What the daemon did not understand, e.g. "field `foo` it does not know".
        what: String,
    },
}

impl BadRequest {
    /// The reply's error code: both are usage errors (exit 2), told apart for scripts.
    pub fn code(&self) -> ErrorCode {
        match self {
            BadRequest::Malformed(_) => ErrorCode::Usage,
            BadRequest::VersionSkew { .. } => ErrorCode::VersionSkew,
        }
    }
}

/// Parses one request line and returns the reply text of a refusal; see [`read_request`].
pub fn parse_request(line: &str) -> Result<Request, String> {
    read_request(line).map_err(|e| e.to_string())
}

/// Parses one request line, as the socket server does for every line it reads. A refusal
/// says where the line is wrong: serde's line and column for broken JSON, the field for
/// a well-formed object that is not a request, and both protocol versions when the
/// request comes from a newer client.
pub fn read_request(line: &str) -> Result<Request, BadRequest> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| BadRequest::Malformed(e.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(BadRequest::Malformed(format!(
            "the line is not a JSON object: {}",
            kind(&value)
        )));
    };
    let client = take_protocol(&mut fields)?;
    decode(fields).map_err(|e| match client {
        Some(client) if client > PROTOCOL_VERSION => BadRequest::VersionSkew {
            client,
            what: e
                .unknown
                .map(|u| format!("{u} it does not know"))
                .unwrap_or_else(|| format!("a request it cannot read ({})", e.detail)),
        },
        _ => BadRequest::Malformed(e.detail),
    })
}

/// Removes and checks the optional `protocol` field: absent means "as old as this daemon
/// or older" (clients before versioning sent none).
fn take_protocol(fields: &mut Map<String, Value>) -> Result<Option<u64>, BadRequest> {
    match fields.remove("protocol") {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            BadRequest::Malformed(format!(
                "field `protocol`: expected a protocol version (a non-negative integer), got {}",
                kind(&v)
            ))
        }),
    }
}

/// Why a request object does not decode.
struct Unreadable {
    /// The located reason, as a malformed request reports it.
    detail: String,
    /// The unknown command or field (e.g. "field `foo`"), when that is the reason.
    unknown: Option<String>,
}

fn decode(fields: Map<String, Value>) -> Result<Request, Unreadable> {
    let request: Request = serde_json::from_value(Value::Object(fields.clone())).map_err(|e| {
        let e = e.to_string();
        let detail = match field_of(&fields, &e) {
            Some(field) => format!("field `{}`: {e}", field.escape_debug()),
            None => e.clone(),
        };
        let unknown = unknown_command(&fields).or_else(|| {
            e.starts_with("unknown field")
                .then(|| unknown_field(&fields))
                .flatten()
        });
        Unreadable { detail, unknown }
    })?;
    // serde's deny_unknown_fields does not reach the field-less variants of an internally
    // tagged enum: `{"cmd":"pause","node":"n1"}` paused every node (found while writing
    // tests/fuzz_parsers.rs).
    let fieldless = matches!(
        request,
        Request::Ping | Request::Status | Request::RepoCheck | Request::Pause | Request::Resume
    );
    if let Some(extra) = fields.keys().find(|k| fieldless && k.as_str() != "cmd") {
        let extra = extra.escape_debug();
        return Err(Unreadable {
            detail: format!("unknown field `{extra}`: this command takes no other field"),
            unknown: Some(format!("field `{extra}`")),
        });
    }
    Ok(request)
}

/// "command `x`" when `cmd` is a string naming no command.
fn unknown_command(fields: &Map<String, Value>) -> Option<String> {
    let cmd = fields.get("cmd")?.as_str()?;
    let probe = Value::Object(Map::from_iter([("cmd".to_string(), cmd.into())]));
    serde_json::from_value::<Request>(probe)
        .is_err_and(|e| e.to_string().starts_with("unknown variant"))
        .then(|| format!("command `{}`", cmd.escape_debug()))
}

/// "field `x`" for the first field the command does not take.
fn unknown_field(fields: &Map<String, Value>) -> Option<String> {
    first_field(fields, |e| e.starts_with("unknown field"))
        .map(|k| format!("field `{}`", k.escape_debug()))
}

/// The request as one line to send, newline included, saying which protocol it speaks.
pub fn request_line(req: &Request) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(req)?;
    if let Value::Object(fields) = &mut value {
        fields.insert("protocol".into(), PROTOCOL_VERSION.into());
    }
    let mut line = serde_json::to_vec(&value)?;
    line.push(b'\n');
    Ok(line)
}

/// Parses one reply line as a client, leniently (a newer daemon may say more):
/// `Ok(None)` for a line to skip, an event or line type this client does not know.
pub fn parse_reply(line: &str) -> Result<Option<Reply>, serde_json::Error> {
    let value: Value = serde_json::from_str(line)?;
    match value.get("type").and_then(Value::as_str) {
        // Final lines must be read: the answer depends on them.
        Some("ok" | "error") | None => serde_json::from_value(value).map(Some),
        // Events are progress for the eye; a newer daemon's kinds are not this client's.
        Some(_) => Ok(serde_json::from_value(value).ok()),
    }
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
fn field_of(fields: &Map<String, Value>, error: &str) -> Option<String> {
    if error.starts_with("missing field") || error.starts_with("unknown field") {
        return None;
    }
    fields.get("cmd")?;
    let culprit = first_field(fields, |e| e == error);
    Some(culprit.unwrap_or_else(|| "cmd".into()))
}

/// The first field other than `cmd` that, alone with `cmd`, fails with an error `is`.
fn first_field(fields: &Map<String, Value>, is: impl Fn(&str) -> bool) -> Option<String> {
    let cmd = fields.get("cmd").cloned().unwrap_or(Value::Null);
    fields
        .iter()
        .filter(|(k, _)| k.as_str() != "cmd")
        .find(|(k, v)| {
            let probe = Map::from_iter([
                ("cmd".to_string(), cmd.clone()),
                (k.to_string(), (*v).clone()),
            ]);
            serde_json::from_value::<Request>(Value::Object(probe))
                .is_err_and(|e| is(&e.to_string()))
        })
        .map(|(k, _)| k.clone())
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
    /// The request comes from a client speaking a newer protocol and uses what this daemon
    /// does not know: exit 2.
    VersionSkew,
    /// A code of a newer daemon this client does not know: exit 1. Never sent.
    #[serde(other)]
    Unknown,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn skew(line: &str) -> String {
        match read_request(line) {
            Err(e @ BadRequest::VersionSkew { .. }) => {
                assert_eq!(e.code(), ErrorCode::VersionSkew);
                e.to_string()
            }
            other => panic!("{line}: expected a version skew, got {other:?}"),
        }
    }

    #[test]
    fn a_request_may_say_its_protocol() {
        assert_eq!(
            read_request(r#"{"cmd":"ping","protocol":1}"#),
            Ok(Request::Ping)
        );
        assert_eq!(
            read_request(r#"{"protocol":0,"cmd":"pause"}"#),
            Ok(Request::Pause)
        );
        // A newer client asking what this daemon knows is served.
        assert_eq!(
            read_request(r#"{"cmd":"status","protocol":99}"#),
            Ok(Request::Status)
        );
        for bad in [r#""1""#, "-1", "1.5", "null"] {
            let e = read_request(&format!(r#"{{"cmd":"ping","protocol":{bad}}}"#)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Usage, "{e}");
            assert!(e.to_string().contains("field `protocol`"), "{e}");
        }
    }

    #[test]
    fn the_request_line_carries_the_protocol() {
        let line = request_line(&Request::Cancel { run: "r1".into() }).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["protocol"], PROTOCOL_VERSION);
        assert_eq!(v["cmd"], "cancel");
        let back = std::str::from_utf8(&line).unwrap().trim_end();
        assert_eq!(read_request(back), Ok(Request::Cancel { run: "r1".into() }));
    }

    #[test]
    fn an_unknown_field_from_a_newer_client_is_a_version_skew() {
        let ours = format!("protocol {PROTOCOL_VERSION} (splice-dr {CRATE_VERSION})");
        for line in [
            r#"{"cmd":"show","run":"r","protocol":99,"verbose":true}"#,
            r#"{"cmd":"ping","protocol":99,"verbose":true}"#,
        ] {
            let e = skew(line);
            assert!(e.contains(&ours), "{e}");
            assert!(e.contains("speaks 99"), "{e}");
            assert!(e.contains("field `verbose` it does not know"), "{e}");
            assert!(e.contains("upgrade the daemon"), "{e}");
        }
    }

    #[test]
    fn an_unknown_command_from_a_newer_client_is_a_version_skew() {
        let e = skew(r#"{"cmd":"teleport","node":"n1","protocol":99}"#);
        assert!(e.contains("command `teleport` it does not know"), "{e}");
        assert!(e.contains("speaks 99"), "{e}");
        let e = skew(r#"{"cmd":"show","run":7,"protocol":2}"#);
        assert!(e.contains("cannot read (field `run`"), "{e}");
    }

    #[test]
    fn same_or_older_protocol_unknown_fields_stay_malformed() {
        for line in [
            r#"{"cmd":"pause","node":"n1"}"#,
            r#"{"cmd":"pause","node":"n1","protocol":1}"#,
            r#"{"cmd":"pause","node":"n1","protocol":0}"#,
        ] {
            let e = read_request(line).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Usage, "{e}");
            let e = e.to_string();
            assert!(
                e.starts_with("malformed request: unknown field `node`"),
                "{e}"
            );
        }
        // A newer client cannot widen `pause` either: it is refused, as a skew.
        assert!(skew(r#"{"cmd":"pause","node":"n1","protocol":99}"#).contains("field `node`"));
        let e = read_request(r#"{"cmd":"teleport","protocol":1}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("field `cmd`: unknown variant `teleport`"),
            "{e}"
        );
    }

    #[test]
    fn a_client_reads_a_newer_daemon_leniently() {
        let ok = parse_reply(r#"{"type":"ok","result":{"pong":true},"took_ms":3}"#).unwrap();
        assert_eq!(
            ok,
            Some(Reply::Ok {
                result: serde_json::json!({"pong": true})
            })
        );
        let unknown_event =
            r#"{"type":"event","event":{"event":"teleported","run":"r1","to":"mars"}}"#;
        assert_eq!(parse_reply(unknown_event).unwrap(), None);
        assert_eq!(parse_reply(r#"{"type":"hint","text":"x"}"#).unwrap(), None);
        let known = r#"{"type":"event","event":{"event":"log","run":"r","level":"info","message":"m","pid":1},"seq":4}"#;
        assert!(matches!(
            parse_reply(known).unwrap(),
            Some(Reply::Event {
                event: RunEvent::Log { .. }
            })
        ));
        let err = parse_reply(r#"{"type":"error","code":"quota","message":"m","hint":"h"}"#);
        assert_eq!(
            err.unwrap(),
            Some(Reply::error(ErrorCode::Unknown, "m")),
            "an unknown code is still an error"
        );
        assert!(
            parse_reply(r#"{"type":"ok"}"#).is_err(),
            "a final line must be read"
        );
        assert!(parse_reply("[1]").is_err());
    }

    #[test]
    fn version_skew_is_its_own_error_code() {
        let reply = Reply::error(ErrorCode::VersionSkew, "m");
        let v = serde_json::to_value(&reply).unwrap();
        assert_eq!(v["code"], "version_skew");
    }
}
