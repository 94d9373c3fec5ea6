//! The Alertmanager webhook receiver (`[alertmanager]`): Prometheus alerts become events.
//!
//! Alertmanager POSTs its standard webhook JSON to `/api/v1/alerts` or `/`. Each alert is
//! published on the [`EventBus`] as `alert.<alertname>` while firing and
//! `alert.<alertname>.resolved` once resolved, with the alert's labels, the node from the
//! `node` (or else `instance`) label, and the `summary` (or else `description`) annotation
//! as message. Every request must carry `Authorization: Bearer <token>`; the token is
//! compared in constant time, and a refused request publishes nothing.
//!
//! Endpoints: `POST /api/v1/alerts`, `POST /` (alerts), `GET /healthz` (liveness, no token).

use super::{Event, EventBus};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http_limits::{HttpLimits, MAX_BODY_BYTES};

/// Alertmanager's webhook body (version 4). Only `alerts` is required; unknown fields are
/// ignored so newer Alertmanagers keep working.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Payload version (`"4"`).
    #[serde(default)]
    pub version: String,
    /// Key of the alert group.
    #[serde(default)]
    pub group_key: String,
    /// `firing` or `resolved` (of the group).
    #[serde(default)]
    pub status: String,
    /// The receiver's name in Alertmanager's config.
    #[serde(default)]
    pub receiver: String,
    /// Labels the group is formed by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels all alerts share.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations all alerts share.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Link back to Alertmanager.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a [`WebhookPayload`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`; empty means the group's status.
    #[serde(default)]
    pub status: String,
    /// Alert labels (`alertname`, `node`, `instance`, `severity`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Alert annotations (`summary`, `description`, …).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 start time, as sent.
    #[serde(default)]
    pub starts_at: String,
    /// RFC 3339 end time, as sent (`0001-01-01T00:00:00Z` while firing).
    #[serde(default)]
    pub ends_at: String,
    /// Link to the alert's expression.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's identity of the alert.
    #[serde(default)]
    pub fingerprint: String,
}

/// The events a payload becomes, in alert order (pure; used by the server).
pub fn events_from(payload: &WebhookPayload) -> Vec<Event> {
    payload
        .alerts
        .iter()
        .map(|alert| {
            let status = if alert.status.is_empty() {
                payload.status.as_str()
            } else {
                alert.status.as_str()
            };
            let name = event_name(alert.labels.get("alertname").map(String::as_str), status);
            let node = ["node", "instance"]
                .iter()
                .filter_map(|k| alert.labels.get(*k))
                .find(|v| !v.is_empty())
                .cloned();
            let message = ["summary", "description"]
                .iter()
                .filter_map(|k| alert.annotations.get(*k))
                .find(|v| !v.is_empty())
                .cloned()
                .unwrap_or_default();
            let mut ev = Event::new(name, node, message);
            ev.labels = alert.labels.clone();
            ev
        })
        .collect()
}

/// `alert.<alertname>` or `alert.<alertname>.resolved`. Dots in the name become `_` so the
/// name stays one segment for rule patterns; a missing name is `unnamed`.
fn event_name(alertname: Option<&str>, status: &str) -> String {
    let base: String = match alertname.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n
            .chars()
            .map(|c| {
                if c == '.' || c.is_whitespace() {
                    '_'
                } else {
                    c
                }
            })
            .collect(),
        None => "unnamed".into(),
    };
    if status.eq_ignore_ascii_case("resolved") {
        format!("alert.{base}.resolved")
    } else {
        format!("alert.{base}")
    }
}

/// Whether a name is a configured node; the daemon builds it from the config in force.
pub type NodeFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Clears the node of every event whose `node`/`instance` label names no configured node:
/// labels come from whoever can reach the webhook, so they may select a configured node
/// but never introduce a name of their own (which would reach paths and metrics).
pub fn select_configured(events: &mut [Event], is_node: &dyn Fn(&str) -> bool) {
    for ev in events {
        if ev.node.as_deref().is_some_and(|n| !is_node(n)) {
            tracing::debug!(node = ?ev.node, "alert names no configured node; published without one");
            ev.node = None;
        }
    }
}

struct AppState {
    /// SHA-256 of the token: comparing digests takes the same time whatever the length.
    token_digest: [u8; 32],
    bus: EventBus,
    /// `None` accepts any node name (embedding and tests); the daemon always sets it.
    nodes: Option<NodeFilter>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Constant-time equality of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The receiver's routes, for embedding in another server or testing with `tower`.
pub fn router(token: impl AsRef<str>, bus: EventBus) -> Router {
    router_for(token, bus, None)
}

/// [`router`] whose alerts may only select nodes `nodes` accepts.
pub fn router_for(token: impl AsRef<str>, bus: EventBus, nodes: Option<NodeFilter>) -> Router {
    let state = Arc::new(AppState {
        token_digest: digest(token.as_ref().as_bytes()),
        bus,
        nodes,
    });
    Router::new()
        .route("/api/v1/alerts", post(receive))
        .route("/", post(receive))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(state)
}

/// Binds the receiver's address. The daemon binds before its socket answers, so a taken
/// port stops the start-up with the address in the message, and a daemon seen up is
/// already receiving alerts.
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for Alertmanager webhooks on {listen}: {e}"),
        )
    })
}

/// Serves [`router_for`] on the listener [`bind`] returned (alerts select only nodes
/// `nodes` accepts) until `shutdown` is cancelled.
///
/// An empty token is refused (it would let anyone in). Errors are server I/O errors.
pub async fn serve(
    listener: TcpListener,
    token: String,
    bus: EventBus,
    nodes: NodeFilter,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, token, bus, Some(nodes), limits, shutdown).await
}

/// Serves [`router`] on an already bound listener (tests bind port 0 and read the port)
/// until `shutdown` is cancelled.
pub async fn serve_on(
    listener: TcpListener,
    token: String,
    bus: EventBus,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, token, bus, None, HttpLimits::default(), shutdown).await
}

async fn serve_with(
    listener: TcpListener,
    token: String,
    bus: EventBus,
    nodes: Option<NodeFilter>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if token.trim().is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the Alertmanager bearer token is empty",
        ));
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "receiving Alertmanager webhooks on http://{addr}/api/v1/alerts");
    }
    crate::http_limits::serve(listener, router_for(token, bus, nodes), limits, shutdown).await;
    Ok(())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Checks the token on the head alone, then reads at most [`MAX_BODY_BYTES`]: an
/// unauthenticated or oversized request costs no body read.
async fn receive(State(state): State<Arc<AppState>>, request: Request) -> Response {
    if let Some(refused) = refuse_unauthorized(&state, request.headers()) {
        return refused;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    accept(&state, &body)
}

fn too_large() -> Response {
    tracing::warn!("refused an Alertmanager webhook: body over {MAX_BODY_BYTES} bytes");
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("webhook body over {MAX_BODY_BYTES} bytes refused"),
    )
}

fn refuse_unauthorized(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
    let authorized = presented.is_some_and(|t| same(&digest(t.as_bytes()), &state.token_digest));
    if !authorized {
        tracing::warn!(
            "refused an Alertmanager webhook: {} bearer token",
            if presented.is_some() {
                "wrong"
            } else {
                "missing"
            }
        );
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Some(response);
    }
    None
}

fn accept(state: &AppState, body: &Bytes) -> Response {
    let payload: WebhookPayload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("refused an Alertmanager webhook: malformed body: {e}");
            return error(
                StatusCode::BAD_REQUEST,
                format!("malformed Alertmanager webhook payload: {e}"),
            );
        }
    };
    let mut events = events_from(&payload);
    if let Some(is_node) = &state.nodes {
        select_configured(&mut events, is_node.as_ref());
    }
    let published = events.len();
    for ev in events {
        state.bus.publish(ev);
    }
    (
        StatusCode::OK,
        Json(json!({"status": "ok", "published": published})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Alert {
        Alert {
            status: status.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Alert::default()
        }
    }

    #[test]
    fn alerts_become_events() {
        let payload = WebhookPayload {
            status: "firing".into(),
            alerts: vec![
                alert(
                    "firing",
                    &[
                        ("alertname", "ValidatorDown"),
                        ("node", "validator-1"),
                        ("instance", "h:1"),
                    ],
                    &[("summary", "validator down"), ("description", "long")],
                ),
                alert(
                    "resolved",
                    &[("alertname", "Disk.Full"), ("instance", "h:2")],
                    &[("description", "disk ok")],
                ),
                alert("", &[], &[]),
            ],
            ..WebhookPayload::default()
        };
        let evs = events_from(&payload);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].name, "alert.ValidatorDown");
        assert_eq!(evs[0].node.as_deref(), Some("validator-1"));
        assert_eq!(evs[0].message, "validator down");
        assert_eq!(evs[0].labels["instance"], "h:1");
        assert_eq!(evs[1].name, "alert.Disk_Full.resolved");
        assert_eq!(evs[1].node.as_deref(), Some("h:2"));
        assert_eq!(evs[1].message, "disk ok");
        assert_eq!(evs[2].name, "alert.unnamed");
        assert_eq!(evs[2].node, None);
        assert!(super::super::matches("alert.*.resolved", &evs[1].name));
    }

    #[test]
    fn parses_the_standard_payload() {
        let body = r#"{"version":"4","groupKey":"{}:{alertname=\"X\"}","truncatedAlerts":0,
            "status":"firing","receiver":"splice-dr","groupLabels":{"alertname":"X"},
            "commonLabels":{"alertname":"X"},"commonAnnotations":{},
            "externalURL":"http://am:9093","alerts":[{"status":"firing",
            "labels":{"alertname":"X","node":"n1"},"annotations":{"summary":"s"},
            "startsAt":"2026-11-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "generatorURL":"http://prom/graph","fingerprint":"abc"}]}"#;
        let p: WebhookPayload = serde_json::from_str(body).unwrap();
        assert_eq!(p.external_url, "http://am:9093");
        assert_eq!(p.alerts[0].generator_url, "http://prom/graph");
        assert_eq!(p.alerts[0].fingerprint, "abc");
        assert_eq!(events_from(&p)[0].name, "alert.X");
    }

    #[test]
    fn labels_only_select_configured_nodes() {
        let payload = WebhookPayload {
            alerts: vec![
                alert(
                    "firing",
                    &[("alertname", "A"), ("node", "validator-1")],
                    &[],
                ),
                alert("firing", &[("alertname", "B"), ("node", "../../x")], &[]),
            ],
            ..WebhookPayload::default()
        };
        let mut evs = events_from(&payload);
        select_configured(&mut evs, &|n| n == "validator-1");
        assert_eq!(evs[0].node.as_deref(), Some("validator-1"));
        assert_eq!(evs[1].node, None);
        assert_eq!(evs[1].labels["node"], "../../x");
    }

    #[test]
    fn token_comparison() {
        let d = digest(b"secret");
        assert!(same(&digest(b"secret"), &d));
        assert!(!same(&digest(b"secreT"), &d));
        assert!(!same(&digest(b""), &d));
    }
}
