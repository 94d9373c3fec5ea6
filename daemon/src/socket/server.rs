//! Serves the protocol on a Unix socket, checking each peer's uid (SO_PEERCRED).
//!
//! Bad input never takes the daemon down: a malformed or oversized line gets an error
//! reply and the connection keeps working; a denied peer gets one error line and is
//! disconnected.

use futures_util::StreamExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

use super::protocol::{read_request, ErrorCode, Reply, MAX_REQUEST_BYTES};
use crate::access::{role_of, Caller};
use crate::service::Service;

/// Why the socket could not be opened.
#[derive(Debug, Error)]
pub enum SocketError {
    /// Another daemon already answers on the path.
    #[error("another splice-dr daemon is already serving {0}; stop it first (or use another daemon.socket)")]
    InUse(String),
    /// The path cannot be created or bound.
    #[error("cannot listen on {path}: {source}")]
    Io {
        /// Socket path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// Binds the socket with `mode`, replacing a stale socket file nobody answers on.
pub async fn bind(path: &Path, mode: u32) -> Result<UnixListener, SocketError> {
    let shown = path.display().to_string();
    let io = |source| SocketError::Io {
        path: shown.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(SocketError::InUse(shown));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    Ok(listener)
}

/// Who may connect: operator and viewer uids (root and the daemon's own uid are always
/// operators).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `operator_uids` plus the deprecated `allowed_uids`.
    pub operators: Vec<u32>,
    /// `viewer_uids`.
    pub viewers: Vec<u32>,
}

impl Access {
    /// From the `[daemon]` table.
    pub fn from_config(d: &crate::config::DaemonConfig) -> Self {
        Access {
            operators: d
                .operator_uids
                .iter()
                .chain(&d.allowed_uids)
                .copied()
                .collect(),
            viewers: d.viewer_uids.clone(),
        }
    }
}

/// Accepts connections until `shutdown` fires.
pub async fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    access: Access,
    shutdown: CancellationToken,
) {
    let allowed = Arc::new(access);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, service.clone(), allowed.clone()));
                }
                Err(e) => {
                    tracing::warn!("socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn connection(stream: UnixStream, service: Arc<Service>, allowed: Arc<Access>) {
    let cred = stream.peer_cred().ok();
    let peer_uid = cred.map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let mut line = serde_json::to_vec(&reply).unwrap_or_default();
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let me = crate::access::own_uid();
    let role = peer_uid.and_then(|uid| role_of(uid, me, &allowed.operators, &allowed.viewers));
    match (peer_uid, role) {
        (Some(uid), Some(role)) => {
            let caller = Caller {
                uid,
                pid: cred.and_then(|c| c.pid()),
                role,
                remote: true,
            };
            serve_lines(read, &service, &caller, &tx).await
        }
        (other, _) => {
            let who = other
                .map(|u| format!("uid {u}"))
                .unwrap_or_else(|| "an unidentified peer".into());
            tracing::warn!("refused socket connection from {who}");
            let _ = tx.send(Reply::error(
                ErrorCode::Denied,
                format!("{who} may not control this daemon (it runs as uid {me}); add the uid to daemon.operator_uids (or daemon.viewer_uids to let it read only)"),
            ));
        }
    }
    drop(tx);
    let _ = writer.await;
}

async fn serve_lines(
    read: tokio::net::unix::OwnedReadHalf,
    service: &Arc<Service>,
    caller: &Caller,
    tx: &mpsc::UnboundedSender<Reply>,
) {
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_REQUEST_BYTES));
    while let Some(line) = lines.next().await {
        let reply = match line {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => match read_request(&line) {
                Ok(req) => service.handle_from(caller, req, tx).await,
                Err(e) => Reply::error(e.code(), e.to_string()),
            },
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                // The rest of the line is never read: answer, then close this connection.
                let _ = tx.send(Reply::error(
                    ErrorCode::Usage,
                    format!(
                        "request longer than {MAX_REQUEST_BYTES} bytes refused; connection closed"
                    ),
                ));
                return;
            }
            Err(LinesCodecError::Io(e)) => {
                tracing::debug!("socket read failed: {e}");
                return;
            }
        };
        if tx.send(reply).is_err() {
            return;
        }
    }
}
