//! The participant stand-in: the gRPC health service a Canton participant serves on its
//! health port (5061), and nothing else.
//!
//! The real compose bundle gives `validator` and `participant` no healthcheck, so "ready"
//! has to be asked of the applications themselves: `readyz` for the validator (served by
//! [`crate::Sim`]), `grpc.health.v1.Health/Check` for the participant (served here). A
//! participant is healthy when its database answers, so this one answers SERVING exactly
//! while `SELECT 1` succeeds on its database (the `CANTON_PARTICIPANT_POSTGRES_*` settings
//! the real `compose.yaml` gives the container), and NOT_SERVING otherwise.
//!
//! gRPC here is HTTP/2 cleartext (axum's server detects the prior-knowledge preface) with
//! the two health messages encoded by hand: each has one scalar field, which is less code
//! than a protobuf toolchain.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::SimError;

/// The method path of the health check.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// The service name a participant's health server knows besides the server as a whole
/// (`""`): its liveness, SERVING while the process runs.
pub const LIVENESS_SERVICE: &str = "liveness";
/// How long a database check may take before the answer is NOT_SERVING.
const DB_CHECK_LIMIT: Duration = Duration::from_secs(3);

/// `HealthCheckResponse.ServingStatus` values used here.
const SERVING: u64 = 1;
const NOT_SERVING: u64 = 2;

/// gRPC status codes used here.
const GRPC_OK: u32 = 0;
const GRPC_INVALID_ARGUMENT: u32 = 3;
const GRPC_NOT_FOUND: u32 = 5;
const GRPC_UNIMPLEMENTED: u32 = 12;

/// Where the participant's database is: the settings the real compose file passes as
/// `CANTON_PARTICIPANT_POSTGRES_*`.
#[derive(Clone)]
pub struct ParticipantConfig {
    /// Address of the health server (port 0 picks one).
    pub listen: SocketAddr,
    /// Postgres host.
    pub db_server: String,
    /// Postgres port.
    pub db_port: u16,
    /// Postgres user.
    pub db_user: String,
    /// Postgres password.
    pub db_password: String,
    /// The participant database (`participant-<migration id>` in the bundle).
    pub db_name: String,
}

impl std::fmt::Debug for ParticipantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParticipantConfig")
            .field("listen", &self.listen)
            .field("db_server", &self.db_server)
            .field("db_port", &self.db_port)
            .field("db_user", &self.db_user)
            .field("db_name", &self.db_name)
            .finish_non_exhaustive()
    }
}

impl ParticipantConfig {
    fn pg(&self) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.db_server)
            .port(self.db_port)
            .user(&self.db_user)
            .password(&self.db_password)
            .dbname(&self.db_name)
            .connect_timeout(DB_CHECK_LIMIT);
        cfg
    }
}

/// Entry point of the participant stand-in.
pub struct Participant;

impl Participant {
    /// Binds and serves the health service; the database is asked on every check, so the
    /// server starts (and answers NOT_SERVING) while Postgres is still down, as a real
    /// participant's health port does.
    pub async fn start(cfg: ParticipantConfig) -> Result<RunningParticipant, SimError> {
        let pg = cfg.pg();
        let router = Router::new()
            .route(CHECK_PATH, post(move |body: Body| check(pg.clone(), body)))
            .fallback(|| async { grpc_error(GRPC_UNIMPLEMENTED, "unknown method") });
        let token = CancellationToken::new();
        let (addr, task) = crate::http::serve(cfg.listen, router, token.clone()).await?;
        tracing::info!(%addr, database = %cfg.db_name, "participant gRPC health listening");
        Ok(RunningParticipant { addr, token, task })
    }
}

/// A running participant stand-in.
pub struct RunningParticipant {
    addr: SocketAddr,
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningParticipant {
    /// The bound address of the health service.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token that stops the server (e.g. for a signal handler).
    pub fn cancel_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Stops serving and waits for the server to end.
    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server ends (after the cancel token was cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// `Health/Check`: the request's service name decides what is checked.
async fn check(pg: tokio_postgres::Config, body: Body) -> Response {
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return grpc_error(GRPC_INVALID_ARGUMENT, &format!("reading the request: {e}")),
    };
    let service = match decode_request(&bytes) {
        Ok(s) => s,
        Err(e) => return grpc_error(GRPC_INVALID_ARGUMENT, &e),
    };
    let status = match service.as_str() {
        "" => match database_answers(&pg).await {
            Ok(()) => SERVING,
            Err(why) => {
                tracing::info!(%why, "health: NOT_SERVING");
                NOT_SERVING
            }
        },
        LIVENESS_SERVICE => SERVING,
        other => return grpc_error(GRPC_NOT_FOUND, &format!("unknown service {other}")),
    };
    grpc_ok(encode_response(status))
}

/// `SELECT 1` on the participant database, within [`DB_CHECK_LIMIT`].
async fn database_answers(pg: &tokio_postgres::Config) -> Result<(), String> {
    let attempt = async {
        let (client, conn) = pg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let r = client.simple_query("SELECT 1").await.map(|_| ());
        drop(client);
        let _ = driver.await;
        r.map_err(|e| e.to_string())
    };
    tokio::time::timeout(DB_CHECK_LIMIT, attempt)
        .await
        .unwrap_or_else(|_| Err("the database did not answer in time".into()))
}

/// The service name of a gRPC-framed `HealthCheckRequest { string service = 1; }`.
fn decode_request(frame: &[u8]) -> Result<String, String> {
    let message = unframe(frame)?;
    let mut fields = Fields { buf: message };
    let mut service = String::new();
    while let Some((tag, value)) = fields.next_field()? {
        if let (1, Value::Bytes(b)) = (tag, value) {
            service = String::from_utf8(b.to_vec())
                .map_err(|_| "the service name is not UTF-8".to_string())?;
        }
    }
    Ok(service)
}

/// One length-prefixed message (flag byte 0 = uncompressed, 4-byte big-endian length).
fn unframe(frame: &[u8]) -> Result<&[u8], String> {
    let (head, rest) = frame
        .split_at_checked(5)
        .ok_or("the request is shorter than a gRPC frame header")?;
    if head[0] != 0 {
        return Err("compressed requests are not supported".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    rest.get(..len)
        .filter(|m| m.len() == rest.len())
        .ok_or_else(|| "the request's length prefix does not match its body".to_string())
}

/// A decoded protobuf field value (only what the health messages can hold).
enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// A cursor over protobuf fields.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (taken, rest) = self.buf.split_at_checked(n).ok_or("truncated field")?;
        self.buf = rest;
        Ok(taken)
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => self.varint().map(|_| Value::Varint)?,
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "field too long")?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// A gRPC-framed `HealthCheckResponse { ServingStatus status = 1; }`.
fn encode_response(status: u64) -> Bytes {
    // Field 1, wire type 0 (key 0x08), then the status as a one-byte varint (1 or 2).
    let message = [0x08, status as u8];
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

/// 200, `application/grpc`, the message, then the `grpc-status: 0` trailer.
fn grpc_ok(message: Bytes) -> Response {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(GRPC_OK));
    let body =
        http_body_util::Full::new(message).with_trailers(std::future::ready(Some(Ok(trailers))));
    grpc_response(Body::new(body))
}

/// A trailers-only answer: the status in the headers, no message (as gRPC servers send
/// errors).
fn grpc_error(code: u32, message: &str) -> Response {
    let mut response = grpc_response(Body::empty());
    let headers = response.headers_mut();
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", v);
    }
    response
}

fn grpc_response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// `grpc-message` is percent-encoded outside printable ASCII (and `%` itself).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b' '..=b'~' if b != b'%' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_with_and_without_a_service_name() {
        // An empty message: the server as a whole.
        assert_eq!(decode_request(&[0, 0, 0, 0, 0]).unwrap(), "");
        // service = "liveness", then an unknown varint field 2 that is skipped.
        let mut msg = vec![0x0a, 8];
        msg.extend_from_slice(b"liveness");
        msg.extend_from_slice(&[0x10, 0x96, 0x01]);
        let mut frame = vec![0];
        frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        frame.extend_from_slice(&msg);
        assert_eq!(decode_request(&frame).unwrap(), "liveness");
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        for (frame, needle) in [
            (&[0u8, 0, 0][..], "shorter"),
            (&[1, 0, 0, 0, 0][..], "compressed"),
            (&[0, 0, 0, 0, 5, 0x0a][..], "length prefix"),
            (&[0, 0, 0, 0, 2, 0x0a, 9][..], "truncated"),
            (&[0, 0, 0, 0, 1, 0x0b][..], "wire type"),
        ] {
            let e = decode_request(frame).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn responses_are_framed_protobuf() {
        assert_eq!(&encode_response(SERVING)[..], &[0, 0, 0, 0, 2, 0x08, 1]);
        assert_eq!(&encode_response(NOT_SERVING)[..], &[0, 0, 0, 0, 2, 0x08, 2]);
        assert_eq!(percent_encode("a b%é"), "a b%25%C3%A9");
    }
}
