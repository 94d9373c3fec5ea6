//! The CLI's side of the socket.

use futures_util::StreamExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::protocol::{parse_reply, request_line, Reply, Request};
use crate::run_context::RunEvent;

/// A connection to a running daemon.
pub struct Client {
    lines: FramedRead<tokio::net::unix::OwnedReadHalf, LinesCodec>,
    write: tokio::net::unix::OwnedWriteHalf,
}

/// Connects to the daemon; `Ok(None)` when no daemon answers (no socket file, or nobody
/// listening on it), so the caller can fall back to running in-process.
pub async fn connect(path: &Path) -> std::io::Result<Option<Client>> {
    match UnixStream::connect(path).await {
        Ok(stream) => {
            let (read, write) = stream.into_split();
            Ok(Some(Client {
                lines: FramedRead::new(read, LinesCodec::new()),
                write,
            }))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl Client {
    /// Sends one request and returns the final reply, passing live events to `on_event`.
    /// Lines of a newer daemon this client does not know are skipped (see
    /// [`parse_reply`]); the request says which protocol it speaks.
    pub async fn request(
        &mut self,
        req: &Request,
        on_event: &mut dyn FnMut(RunEvent),
    ) -> std::io::Result<Reply> {
        let line = request_line(req).map_err(std::io::Error::other)?;
        // A daemon that refuses this peer answers and closes without reading: the write
        // may fail, but its one-line answer is still there to read.
        let written = self.write.write_all(&line).await;
        while let Some(line) = self.lines.next().await {
            let line = line.map_err(std::io::Error::other)?;
            let reply = parse_reply(&line).map_err(|e| {
                std::io::Error::other(format!("daemon sent an unreadable reply: {e}"))
            })?;
            match reply {
                Some(Reply::Event { event }) => on_event(event),
                Some(other) => return Ok(other),
                None => tracing::debug!("skipped a reply line of a newer daemon: {line}"),
            }
        }
        written?;
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection",
        ))
    }
}
