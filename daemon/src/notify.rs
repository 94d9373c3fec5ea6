//! Run notifications to a Slack-compatible incoming webhook (`[notify]`).
//!
//! A notification is a courtesy, never a dependency: [`Notifier::notify`] spawns the POST
//! and returns at once. One network blip must not lose a "restore failed" message, so a
//! webhook that is down, slow, rate-limiting (429) or failing (5xx) is tried again
//! (`[notify] retries`, backoff 1, 2, 4, 8 s… with jitter); one that refuses the message
//! (another 4xx) or is still failing after the last retry is logged at `warn` and
//! forgotten. The webhook URL is a secret (it is the credential): only its host is ever
//! logged, and reqwest's errors are stripped of the URL before they are printed.

use crate::config::{webhook_host, NotifyConfig, NotifyKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What a notification says about one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub run: String,
    /// Flow name (`backup`, `restore`, …).
    pub flow: String,
    /// The node it runs on, when it has one.
    pub node: Option<String>,
    /// The error of a failed run, or why a run waits for approval.
    pub error: Option<String>,
}

impl RunSummary {
    /// A summary without an error.
    pub fn new(run: impl Into<String>, flow: impl Into<String>, node: Option<String>) -> Self {
        RunSummary {
            run: run.into(),
            flow: flow.into(),
            node,
            error: None,
        }
    }

    /// Adds the error (or approval reason) text.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }
}

/// Why a [`Notifier`] could not be built (reading `webhook_url_file`, building the client).
#[derive(Debug, thiserror::Error)]
#[error("[notify]: {0}")]
pub struct NotifyError(String);

/// The message for one run transition, as posted: Slack's `text` plus a `splice_dr` object
/// with the same facts for receivers that parse JSON (Slack ignores it).
///
/// `text` reads e.g. `splice-dr: restore on validator-1 failed: <error> (run <id>)`.
pub fn message(kind: NotifyKind, summary: &RunSummary) -> Value {
    let subject = match &summary.node {
        Some(node) => format!("{} on {node}", summary.flow),
        None => summary.flow.clone(),
    };
    let what = match kind {
        NotifyKind::Started => "started".to_string(),
        NotifyKind::Succeeded => "succeeded".to_string(),
        NotifyKind::Failed => match &summary.error {
            Some(e) => format!("failed: {e}"),
            None => "failed".to_string(),
        },
        NotifyKind::PendingApproval => match &summary.error {
            Some(reason) => format!("is waiting for approval: {reason}"),
            None => "is waiting for approval".to_string(),
        },
    };
    json!({
        "text": format!("splice-dr: {subject} {what} (run {})", summary.run),
        "splice_dr": {
            "kind": kind.as_str(),
            "run": summary.run,
            "flow": summary.flow,
            "node": summary.node,
            "error": summary.error,
        },
    })
}

/// Sends run notifications to the configured webhook. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
    /// The secret URL; never logged.
    url: String,
    /// What may be logged instead of the URL.
    host: String,
    on: Vec<NotifyKind>,
    timeout: Duration,
    retries: u32,
}

/// Why one POST failed, and whether another attempt can help.
struct Failure {
    why: String,
    retry: bool,
}

/// First pause between attempts; doubled each time, capped at [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("host", &self.host)
            .field("on", &self.on)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Reads the webhook URL (`webhook_url` or `webhook_url_file`) and builds the HTTP
    /// client. Fails only on configuration problems (unreadable or empty URL file).
    pub fn new(config: &NotifyConfig) -> Result<Notifier, NotifyError> {
        let url = config.webhook_url().map_err(NotifyError)?;
        // reqwest is built without a rustls provider (shared/RUST-NOTES.md trap 1).
        crate::tls::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("splice-dr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                NotifyError(format!("cannot build the HTTP client: {}", e.without_url()))
            })?;
        Ok(Notifier {
            client,
            host: webhook_host(&url),
            url,
            on: config.on.clone(),
            timeout: config.timeout,
            retries: config.retries,
        })
    }

    /// The webhook's host, the loggable part of its URL.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether `kind` is in `[notify] on`.
    pub fn wants(&self, kind: NotifyKind) -> bool {
        self.on.contains(&kind)
    }

    /// Posts [`message`] in the background when `kind` is wanted; never fails and never
    /// blocks. Returns the task (await it to know the POST is over, e.g. in tests), or
    /// `None` when `kind` is filtered out or no Tokio runtime is running (logged).
    pub fn notify(&self, kind: NotifyKind, summary: &RunSummary) -> Option<JoinHandle<()>> {
        if !self.wants(kind) {
            return None;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                webhook_host = %self.host,
                run = %summary.run,
                "notification not sent: no async runtime"
            );
            return None;
        };
        let this = self.clone();
        let summary = summary.clone();
        Some(handle.spawn(async move {
            if let Err(why) = this.deliver(kind, &summary).await {
                tracing::warn!(
                    webhook_host = %this.host,
                    run = %summary.run,
                    kind = kind.as_str(),
                    "notification not delivered: {why}"
                );
            }
        }))
    }

    /// Posts [`message`], trying again after a retryable failure up to `retries` times.
    /// Returns the number of attempts it took, or the last failure.
    pub async fn deliver(&self, kind: NotifyKind, summary: &RunSummary) -> Result<u32, String> {
        let mut pause = FIRST_PAUSE;
        for attempt in 1.. {
            match self.attempt(kind, summary).await {
                Ok(()) => return Ok(attempt),
                Err(f) if f.retry && attempt <= self.retries => {
                    tracing::info!(
                        webhook_host = %self.host,
                        run = %summary.run,
                        "notification attempt {attempt} failed ({}); trying again",
                        f.why
                    );
                    tokio::time::sleep(jittered(pause)).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(f) => {
                    return Err(format!(
                        "{} (after {attempt} attempt{})",
                        f.why,
                        if attempt == 1 { "" } else { "s" }
                    ))
                }
            }
        }
        unreachable!("the attempts loop only ends by returning")
    }

    /// Posts [`message`] now and reports the outcome (regardless of `on`). The error text
    /// never contains the webhook URL.
    pub async fn send(&self, kind: NotifyKind, summary: &RunSummary) -> Result<(), String> {
        self.attempt(kind, summary).await.map_err(|f| f.why)
    }

    /// One POST. Connection errors, timeouts, 429 and 5xx are worth another attempt.
    async fn attempt(&self, kind: NotifyKind, summary: &RunSummary) -> Result<(), Failure> {
        let body = message(kind, summary);
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| Failure {
                why: describe(e, self.timeout),
                retry: true,
            })?;
        let status = response.status();
        if status.is_success() {
            tracing::debug!(webhook_host = %self.host, run = %summary.run, kind = kind.as_str(), "notification sent");
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        Err(Failure {
            why: format!("webhook answered {status}: {}", text.trim()),
            retry: status.as_u16() == 429 || status.is_server_error(),
        })
    }
}

/// `pause` scaled by a factor in [0.5, 1.5), so daemons that lost the webhook together do
/// not all retry in the same second.
fn jittered(pause: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.5 + f64::from(nanos % 1000) / 1000.0;
    pause.mul_f64(factor)
}

/// A reqwest error as text without the (secret) URL.
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!(
            "no answer within {}",
            crate::config::duration::format(timeout)
        );
    }
    let e = e.without_url();
    // The chain holds the useful part ("Connection refused").
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> RunSummary {
        RunSummary::new("r-42", "restore", Some("validator-1".into()))
    }

    #[test]
    fn failed_message_names_flow_node_error_and_run() {
        let m = message(NotifyKind::Failed, &summary().with_error("dump corrupt"));
        assert_eq!(
            m["text"],
            "splice-dr: restore on validator-1 failed: dump corrupt (run r-42)"
        );
        assert_eq!(m["splice_dr"]["kind"], "failed");
        assert_eq!(m["splice_dr"]["node"], "validator-1");
        assert_eq!(m["splice_dr"]["error"], "dump corrupt");
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            message(NotifyKind::Started, &summary())["text"],
            "splice-dr: restore on validator-1 started (run r-42)"
        );
        assert_eq!(
            message(
                NotifyKind::Succeeded,
                &RunSummary::new("r-1", "backup", None)
            )["text"],
            "splice-dr: backup succeeded (run r-1)"
        );
        assert_eq!(
            message(
                NotifyKind::PendingApproval,
                &summary().with_error("rule validator-down")
            )["text"],
            "splice-dr: restore on validator-1 is waiting for approval: rule validator-down (run r-42)"
        );
        assert_eq!(
            message(NotifyKind::Failed, &summary())["text"],
            "splice-dr: restore on validator-1 failed (run r-42)"
        );
    }

    #[test]
    fn debug_and_errors_hide_the_url() {
        let cfg = NotifyConfig {
            webhook_url: Some("http://127.0.0.1:9/services/SECRETPATH".into()),
            webhook_url_file: None,
            on: vec![NotifyKind::Failed],
            timeout: Duration::from_secs(2),
            retries: 0,
        };
        let n = Notifier::new(&cfg).expect("builds");
        assert_eq!(n.host(), "127.0.0.1");
        assert!(!format!("{n:?}").contains("SECRETPATH"));
        assert!(n.wants(NotifyKind::Failed) && !n.wants(NotifyKind::Started));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(n.send(NotifyKind::Failed, &summary()))
            .expect_err("nothing listens on port 9");
        assert!(!err.contains("SECRETPATH"), "{err}");
        // Filtered out: nothing spawned.
        assert!(rt
            .block_on(async { n.notify(NotifyKind::Started, &summary()) })
            .is_none());
        // No runtime: logged, not spawned, no panic.
        assert!(n.notify(NotifyKind::Failed, &summary()).is_none());
    }

    #[test]
    fn a_missing_url_file_is_a_config_error() {
        let cfg = NotifyConfig {
            webhook_url: None,
            webhook_url_file: Some("/nonexistent/splice-dr-hook".into()),
            on: NotifyKind::ALL.to_vec(),
            timeout: Duration::from_secs(2),
            retries: 0,
        };
        let e = Notifier::new(&cfg).expect_err("no file");
        assert!(e.to_string().contains("/nonexistent/splice-dr-hook"), "{e}");
    }
}
