//! Commands run inside a pod over the exec websocket (`kubectl exec -i`), with stdin
//! streamed from a file or any reader and stdout streamed into a file: dumps never sit in
//! memory. Stdin is shut down (not dropped) at its end so the pod sees EOF.

use std::path::Path;
use std::pin::Pin;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use kube::Api;
use splice_dr_plugin_api::{BackendError, OpContext};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::cluster::kube_err;
pub use splice_dr_pg_toolkit::toolkit::ExecResult;

/// Most bytes of stdout (when not written to a file) and stderr kept for the caller.
const KEEP_BYTES: usize = 1 << 20;
/// How long the outputs may still drain once the websocket loop ended.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the outputs may still drain once the websocket loop failed: what it wrote
/// before failing is buffered, nothing more can come.
const BROKEN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// Read buffer size.
const CHUNK: usize = 64 * 1024;

/// What a command reads on stdin.
pub enum Input {
    /// Nothing: stdin is not attached.
    None,
    /// A local file's bytes.
    File(std::path::PathBuf),
    /// Any byte stream (e.g. a tar header, a file, and the tar trailer chained).
    Reader(Pin<Box<dyn AsyncRead + Send>>),
}

/// Where a command's output goes and how its progress is reported.
pub struct Streams<'a> {
    /// Stdin source.
    pub input: Input,
    /// File that receives stdout; `None` keeps it (bounded) in the result.
    pub stdout: Option<&'a Path>,
    /// Progress label for the bytes streamed, e.g. `dump participant_0`.
    pub progress: Option<&'a str>,
}

/// Runs `argv` in `pod` (container `container`, or the pod's default one).
pub async fn run(
    pods: &Api<Pod>,
    ctx: &OpContext,
    pod: &str,
    container: Option<&str>,
    argv: &[String],
    streams: Streams<'_>,
) -> Result<ExecResult, BackendError> {
    let has_stdin = !matches!(streams.input, Input::None);
    let mut ap = AttachParams::default()
        .stdin(has_stdin)
        .stdout(true)
        .stderr(true);
    if let Some(c) = container {
        ap = ap.container(c);
    }
    let what = format!("exec `{}` in pod {pod}", argv.join(" "));
    let mut proc = pods
        .exec(pod, argv.to_vec(), &ap)
        .await
        .map_err(kube_err(what.clone()))?;
    let status = proc.take_status();
    let stdin = proc.stdin();
    let stdout = proc.stdout();
    let stderr = proc.stderr();

    let feed = async {
        let Some(mut w) = stdin else { return Ok(0) };
        let mut reader: Pin<Box<dyn AsyncRead + Send>> = match streams.input {
            Input::None => return Ok(0),
            Input::File(p) => Box::pin(
                tokio::fs::File::open(&p)
                    .await
                    .map_err(|e| BackendError::io(format!("opening {}", p.display()), e))?,
            ),
            Input::Reader(r) => r,
        };
        // A command that exits without reading everything closes the pipe: not an error
        // here, its exit code tells.
        let n = tokio::io::copy(&mut reader, &mut w).await.unwrap_or(0);
        let _ = w.shutdown().await;
        Ok::<u64, BackendError>(n)
    };
    let drain_out = async {
        let Some(mut r) = stdout else {
            return Ok((Vec::new(), 0));
        };
        match streams.stdout {
            Some(path) => {
                let mut f = tokio::fs::File::create(path)
                    .await
                    .map_err(|e| BackendError::io(format!("creating {}", path.display()), e))?;
                let n = copy_counting(&mut r, &mut f, ctx, streams.progress).await?;
                f.sync_all()
                    .await
                    .map_err(|e| BackendError::io(format!("syncing {}", path.display()), e))?;
                Ok((Vec::new(), n))
            }
            None => read_bounded(&mut r, false).await,
        }
    };
    let drain_err = async {
        match stderr {
            Some(mut r) => read_bounded(&mut r, true).await.map(|(b, _)| b),
            None => Ok(Vec::new()),
        }
    };
    // The outputs end when the command does. A command that exits without reading all
    // its input leaves the stdin pipe full and the feeder blocked: it is abandoned then.
    // A connection that breaks ends the websocket loop without closing the outputs: once
    // the loop is over they get a grace period, then the call fails instead of hanging.
    let outputs = async { tokio::join!(drain_out, drain_err) };
    let join = proc.join();
    tokio::pin!(feed, outputs, join);
    let mut fed: Option<u64> = None;
    let mut joined = false;
    let (out, err) = loop {
        tokio::select! {
            r = &mut feed, if fed.is_none() => fed = Some(r?),
            o = &mut outputs => break o,
            j = &mut join, if !joined => {
                joined = true;
                // A loop that ended cleanly closed the outputs; one that failed leaves
                // them open with nothing more to come, so a long wait only delays the error.
                let grace = if j.is_ok() { OUTPUT_GRACE } else { BROKEN_GRACE };
                match tokio::time::timeout(grace, &mut outputs).await {
                    Ok(o) => break o,
                    Err(_) => {
                        // Input still being sent when the stream broke: the reset may show
                        // on the sending or on the receiving side, whichever saw it first.
                        let feeding = has_stdin && fed.is_none();
                        return Err(connection_lost(what, j.err().map(|e| e.to_string()), feeding));
                    }
                }
            }
        }
    };
    let (bytes_in, (out, bytes_out), err) = (fed.unwrap_or(0), out?, err?);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    if !joined {
        let _ = join.await;
    }
    Ok(ExecResult {
        code: exit_code(status.as_ref()).into(),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        bytes_in,
        bytes_out,
    })
}

/// The error for an exec stream that ended without its outputs closing or its exit code.
/// A stream that breaks while stdin is still being sent (`feeding`, or a failure sending
/// it) is what the API server's close looks like when the command exits before reading all
/// its input (the exit code it sent is lost with the connection), so the message says that
/// instead of only "connection reset". Which side sees the reset first is a race.
fn connection_lost(what: String, loop_error: Option<String>, feeding: bool) -> BackendError {
    let hint = "the command most likely exited before reading all its input, and its exit \
                code was lost with the connection";
    let stderr = match loop_error {
        Some(e) if feeding || e.contains("stdin") => format!("{e} ({hint})"),
        Some(e) => e,
        None => format!("the exec stream ended without closing its output ({hint})"),
    };
    BackendError::Command {
        command: what,
        status: "connection lost".into(),
        stderr,
    }
}

/// The exit code carried by the exec status (`Success`, or a `NonZeroExitCode` failure
/// whose cause `ExitCode` holds the number).
pub fn exit_code(status: Option<&Status>) -> i32 {
    let Some(s) = status else { return -1 };
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
                .and_then(|c| c.message.as_deref())
                .and_then(|m| m.parse().ok())
        })
        .unwrap_or(-1)
}

async fn copy_counting(
    r: &mut (impl AsyncRead + Unpin),
    f: &mut tokio::fs::File,
    ctx: &OpContext,
    progress: Option<&str>,
) -> Result<u64, BackendError> {
    let mut buf = vec![0u8; CHUNK];
    let (mut total, mut reported) = (0u64, 0u64);
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| BackendError::io("reading the command's output", e))?;
        if n == 0 {
            return Ok(total);
        }
        f.write_all(&buf[..n])
            .await
            .map_err(|e| BackendError::io("writing the command's output", e))?;
        total += n as u64;
        if let Some(what) = progress {
            if total - reported >= 8 << 20 {
                ctx.progress(what, total, None, "bytes");
                reported = total;
            }
        }
    }
}

/// Reads everything, keeping the first (or, with `tail`, the last) [`KEEP_BYTES`].
async fn read_bounded(
    r: &mut (impl AsyncRead + Unpin),
    tail: bool,
) -> Result<(Vec<u8>, u64), BackendError> {
    let mut buf = vec![0u8; CHUNK];
    let mut kept = Vec::new();
    let mut total = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| BackendError::io("reading the command's output", e))?;
        if n == 0 {
            return Ok((kept, total));
        }
        total += n as u64;
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > KEEP_BYTES {
            if tail {
                let cut = kept.len() - KEEP_BYTES;
                kept.drain(..cut);
            } else {
                kept.truncate(KEEP_BYTES);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    #[test]
    fn exit_codes_come_from_the_status() {
        assert_eq!(exit_code(None), -1);
        let ok = Status {
            status: Some("Success".into()),
            ..Status::default()
        };
        assert_eq!(exit_code(Some(&ok)), 0);
        let failed = Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("3".into()),
                    ..StatusCause::default()
                }]),
                ..StatusDetails::default()
            }),
            ..Status::default()
        };
        assert_eq!(exit_code(Some(&failed)), 3);
    }

    #[test]
    fn a_stdin_send_failure_says_the_command_stopped_reading() {
        let e = connection_lost(
            "exec `true` in pod postgres-0".into(),
            Some("failed to send a stdin data: IO error: Connection reset by peer".into()),
            false,
        );
        let shown = e.to_string();
        assert!(shown.contains("Connection reset by peer"), "{shown}");
        assert!(shown.contains("before reading all its input"), "{shown}");
        // The same close seen first by the receiving side, while input was still going out.
        let read_side = "failed to read from WebSocket: IO error: Connection reset by peer";
        let e = connection_lost("x".into(), Some(read_side.into()), true);
        assert!(
            e.to_string().contains("before reading all its input"),
            "{e}"
        );
        // A break with no input in flight says only what broke.
        let other = connection_lost("x".into(), Some(read_side.into()), false);
        assert!(!other.to_string().contains("before reading"), "{other}");
    }
}
