//! A client of the gRPC health service (`grpc.health.v1.Health/Check`), the readiness a
//! Canton participant gives: it has no HTTP health endpoint, and the real compose bundle
//! gives its container no healthcheck.
//!
//! One call over HTTP/2 cleartext with prior knowledge (what gRPC clients do on a plain
//! port), the two tiny messages encoded by hand, the whole call bounded by a deadline.
//! Errors name the component and its address, as an operator reads them:
//! "participant at 172.18.0.3:5061: gRPC health NOT_SERVING".

use std::fmt;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;

/// The method path of the health check.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// Largest answer accepted (a health answer is 7 bytes).
const MAX_ANSWER: usize = 64 * 1024;

/// `HealthCheckResponse.ServingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingStatus {
    /// 0: the server does not know yet.
    Unknown,
    /// 1: ready.
    Serving,
    /// 2: up, not ready.
    NotServing,
    /// 3: (Watch only) the service is not known.
    ServiceUnknown,
    /// A value this client does not know.
    Other(u64),
}

impl fmt::Display for ServingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServingStatus::Unknown => f.write_str("UNKNOWN"),
            ServingStatus::Serving => f.write_str("SERVING"),
            ServingStatus::NotServing => f.write_str("NOT_SERVING"),
            ServingStatus::ServiceUnknown => f.write_str("SERVICE_UNKNOWN"),
            ServingStatus::Other(n) => write!(f, "status {n}"),
        }
    }
}

/// Why a health check gave no status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthError {
    /// The TCP connection failed (refused, unreachable).
    Connect(String),
    /// No answer within the deadline.
    Timeout(Duration),
    /// HTTP/2 failed, or the answer was not a gRPC health answer.
    Protocol(String),
    /// The server answered with a gRPC error status (e.g. 5 NOT_FOUND: unknown service).
    Status {
        /// The `grpc-status` code.
        code: u32,
        /// The `grpc-message`, if any.
        message: String,
    },
}

/// The outcome of one check, with who was asked, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The component, e.g. `participant`.
    pub who: String,
    /// `host:port` asked.
    pub addr: String,
    /// The status, or why there is none.
    pub result: Result<ServingStatus, HealthError>,
}

impl Checked {
    /// Whether the answer was SERVING.
    pub fn serving(&self) -> bool {
        self.result == Ok(ServingStatus::Serving)
    }
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: ", self.who, self.addr)?;
        match &self.result {
            Ok(s) => write!(f, "gRPC health {s}"),
            Err(HealthError::Connect(e)) => write!(
                f,
                "gRPC health not reachable ({e}): is the container running, and is this its health port?"
            ),
            Err(HealthError::Timeout(d)) => {
                write!(f, "gRPC health did not answer within {}s", d.as_secs_f64())
            }
            Err(HealthError::Protocol(e)) => write!(
                f,
                "not a gRPC health answer ({e}): is this the gRPC health port?"
            ),
            Err(HealthError::Status { code, message }) => {
                write!(f, "gRPC health answered {} {message}", code_name(*code))
            }
        }
    }
}

/// The name of a gRPC status code, as operators see them in gRPC tools.
fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    match NAMES.get(code as usize) {
        Some(n) => format!("{code} {n}"),
        None => format!("status {code}"),
    }
}

/// Asks `addr` (`host:port`) for the health of `service` (`""`: the server as a whole),
/// giving up after `limit`. Cancel it by dropping the future (the compose backend runs it
/// through its engine runtime, which does so when the run is cancelled).
pub async fn check(who: &str, addr: &str, service: &str, limit: Duration) -> Checked {
    let result = match tokio::time::timeout(limit, ask(addr, service)).await {
        Ok(r) => r,
        Err(_) => Err(HealthError::Timeout(limit)),
    };
    Checked {
        who: who.into(),
        addr: addr.into(),
        result,
    }
}

async fn ask(addr: &str, service: &str) -> Result<ServingStatus, HealthError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| HealthError::Connect(e.to_string()))?;
    let proto =
        |what: &'static str| move |e: h2::Error| HealthError::Protocol(format!("{what}: {e}"));
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .map_err(proto("HTTP/2 handshake"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let answer = exchange(client, addr, service).await;
    driver.abort();
    answer
}

async fn exchange(
    client: h2::client::SendRequest<Bytes>,
    addr: &str,
    service: &str,
) -> Result<ServingStatus, HealthError> {
    let proto =
        |what: &'static str| move |e: h2::Error| HealthError::Protocol(format!("{what}: {e}"));
    let mut client = client.ready().await.map_err(proto("HTTP/2 connection"))?;
    let request = http::Request::post(format!("http://{addr}{CHECK_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| HealthError::Protocol(format!("building the request: {e}")))?;
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(proto("sending the request"))?;
    send.send_data(encode_request(service), true)
        .map_err(proto("sending the request"))?;
    let response = response.await.map_err(proto("reading the answer"))?;
    let (head, mut body) = response.into_parts();
    if head.status != http::StatusCode::OK {
        return Err(HealthError::Protocol(format!(
            "HTTP status {}",
            head.status
        )));
    }
    if let Some(status) = grpc_status(&head.headers) {
        // A trailers-only answer: an error status without a message.
        return Err(status);
    }
    let mut message = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(proto("reading the answer"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if message.len() + chunk.len() > MAX_ANSWER {
            return Err(HealthError::Protocol("the answer is too large".into()));
        }
        message.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .map_err(proto("reading the trailers"))?
        .unwrap_or_default();
    match grpc_status(&trailers) {
        Some(error) => Err(error),
        None if trailers.contains_key("grpc-status") => decode_response(message.freeze()),
        None => Err(HealthError::Protocol("no grpc-status in the answer".into())),
    }
}

/// The error in a `grpc-status` header or trailer; `None` when absent or 0 (OK).
fn grpc_status(headers: &http::HeaderMap) -> Option<HealthError> {
    let code = headers.get("grpc-status")?;
    let code = match code.to_str().ok().and_then(|c| c.parse::<u32>().ok()) {
        Some(0) => return None,
        Some(c) => c,
        None => return Some(HealthError::Protocol(format!("grpc-status {code:?}"))),
    };
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some(HealthError::Status { code, message })
}

/// `grpc-message` is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A gRPC-framed `HealthCheckRequest { string service = 1; }`.
fn encode_request(service: &str) -> Bytes {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        push_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The status of a gRPC-framed `HealthCheckResponse { ServingStatus status = 1; }`; other
/// fields are skipped, a missing status is 0 (UNKNOWN) as protobuf defaults say.
fn decode_response(mut frame: Bytes) -> Result<ServingStatus, HealthError> {
    let bad = |what: &str| HealthError::Protocol(format!("malformed HealthCheckResponse: {what}"));
    if frame.len() < 5 {
        return Err(bad("no message"));
    }
    if frame.get_u8() != 0 {
        return Err(bad("compressed message"));
    }
    let len = frame.get_u32() as usize;
    if len != frame.len() {
        return Err(bad("length prefix does not match"));
    }
    let mut status = 0;
    while frame.has_remaining() {
        let key = read_varint(&mut frame).ok_or_else(|| bad("truncated field"))?;
        match key & 7 {
            0 => {
                let v = read_varint(&mut frame).ok_or_else(|| bad("truncated varint"))?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let n = read_varint(&mut frame).ok_or_else(|| bad("truncated length"))?;
                let n = usize::try_from(n).ok().filter(|n| *n <= frame.len());
                frame.advance(n.ok_or_else(|| bad("truncated field"))?);
            }
            w @ (1 | 5) => {
                let n = if w == 1 { 8 } else { 4 };
                if frame.len() < n {
                    return Err(bad("truncated field"));
                }
                frame.advance(n);
            }
            w => return Err(bad(&format!("wire type {w}"))),
        }
    }
    Ok(match status {
        0 => ServingStatus::Unknown,
        1 => ServingStatus::Serving,
        2 => ServingStatus::NotServing,
        3 => ServingStatus::ServiceUnknown,
        n => ServingStatus::Other(n),
    })
}

fn read_varint(buf: &mut Bytes) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let b = buf.get_u8();
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_the_wire_format() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &encode_request("liveness")[..],
            &[0, 0, 0, 0, 10, 0x0a, 8, b'l', b'i', b'v', b'e', b'n', b'e', b's', b's']
        );
        let ok = Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 1]);
        assert_eq!(decode_response(ok), Ok(ServingStatus::Serving));
        // An unknown length-delimited field before the status is skipped.
        let two = Bytes::from_static(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 2]);
        assert_eq!(decode_response(two), Ok(ServingStatus::NotServing));
        let empty = Bytes::from_static(&[0, 0, 0, 0, 0]);
        assert_eq!(decode_response(empty), Ok(ServingStatus::Unknown));
        for bad in [
            &[0u8, 0, 0][..],
            &[1, 0, 0, 0, 0],
            &[0, 0, 0, 0, 3, 0x08, 1],
            &[0, 0, 0, 0, 2, 0x12, 5],
        ] {
            assert!(
                decode_response(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn outcomes_read_as_operator_messages() {
        let c = |result| Checked {
            who: "participant".into(),
            addr: "172.18.0.3:5061".into(),
            result,
        };
        assert_eq!(
            c(Ok(ServingStatus::NotServing)).to_string(),
            "participant at 172.18.0.3:5061: gRPC health NOT_SERVING"
        );
        let e = c(Err(HealthError::Status {
            code: 5,
            message: percent_decode("unknown service x%C3%A9"),
        }))
        .to_string();
        assert!(
            e.ends_with("gRPC health answered 5 NOT_FOUND unknown service xé"),
            "{e}"
        );
        assert!(c(Ok(ServingStatus::Serving)).serving());
    }
}
