//! The validator's side of the SV: registering its participant id at start, reading balances.

use std::time::Duration;

use reqwest::StatusCode;

use super::{RegisterRequest, SvBalance};
use crate::error::SimError;

/// A plain-HTTP client of a simulated SV.
#[derive(Clone, Debug)]
pub struct SvClient {
    base: String,
    http: reqwest::Client,
}

impl SvClient {
    /// A client for the SV at `base` (e.g. `http://127.0.0.1:5014`).
    pub fn new(base: &str) -> Result<Self, SimError> {
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SimError::Sv {
                url: base.to_string(),
                message: e.to_string(),
            })?;
        Ok(SvClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The SV base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn err(&self, message: impl Into<String>) -> SimError {
        SimError::Sv {
            url: self.base.clone(),
            message: message.into(),
        }
    }

    /// Registers a participant id; retries connection failures for up to `patience`.
    /// A 409 (id used before by another node) becomes [`SimError::ParticipantIdRefused`].
    pub async fn register(
        &self,
        req: &RegisterRequest,
        patience: Duration,
    ) -> Result<(), SimError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let sent = self
                .http
                .post(format!("{}/sv/participants", self.base))
                .json(req)
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(());
                    }
                    let message = error_text(resp).await;
                    if status == StatusCode::CONFLICT {
                        return Err(SimError::ParticipantIdRefused {
                            participant_id: req.participant_id.clone(),
                            message,
                        });
                    }
                    return Err(self.err(format!("registration answered {status}: {message}")));
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "SV not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(self.err(format!("unreachable: {e}"))),
            }
        }
    }

    /// The party's balance as the SV holds it.
    pub async fn balance(&self, party: &str) -> Result<SvBalance, SimError> {
        let resp = self
            .http
            .get(format!(
                "{}/sv/parties/{}/balance",
                self.base,
                encode_path(party)
            ))
            .send()
            .await
            .map_err(|e| self.err(format!("unreachable: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.err(format!(
                "balance answered {status}: {}",
                error_text(resp).await
            )));
        }
        resp.json()
            .await
            .map_err(|e| self.err(format!("invalid balance: {e}")))
    }
}

async fn error_text(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or(text)
}

/// Percent-encodes a path segment (party ids contain `:`; keep it simple and safe).
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
