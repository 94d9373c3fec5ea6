//! Bounded HTTP serving for the listeners anyone on the network may reach (the
//! Alertmanager webhook and `/metrics`): a connection cap, a deadline for the request
//! head and one for the whole exchange. Without them, idle or slow sockets (slowloris)
//! pile up until the daemon — root, next to the keys — runs out of file descriptors.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Largest request body a listener reads (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The bounds of one listener (`[daemon] http_*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; further ones are closed at once.
    pub max_connections: usize,
    /// Time a client has to send its complete request head.
    pub header_timeout: Duration,
    /// Time one request/response exchange may take in all.
    pub exchange_timeout: Duration,
}

impl HttpLimits {
    /// From the `[daemon]` table.
    pub fn from_config(d: &crate::config::DaemonConfig) -> Self {
        HttpLimits {
            max_connections: d.http_max_connections,
            header_timeout: d.http_header_timeout,
            exchange_timeout: d.http_exchange_timeout,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 32,
            header_timeout: Duration::from_secs(5),
            exchange_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(exchange(stream, router.clone(), limits, permit));
            }
            Err(_) => {
                tracing::debug!(
                    "refused an HTTP connection: {} already open",
                    limits.max_connections
                );
                drop(stream);
            }
        }
    }
}

/// One connection, one exchange (no keep-alive), bounded in time; the permit is given
/// back when it ends.
async fn exchange(
    stream: TcpStream,
    router: Router,
    limits: HttpLimits,
    _permit: OwnedSemaphorePermit,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    match tokio::time::timeout(limits.exchange_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("HTTP connection ended: {e}"),
        Err(_) => tracing::debug!("HTTP exchange closed after {:?}", limits.exchange_timeout),
    }
}
