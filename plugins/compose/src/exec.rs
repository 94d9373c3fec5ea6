//! Commands inside a running container with streamed stdin and stdout: the runbook's
//! `docker exec -i … psql < dump` and `docker exec … pg_dump > file`, through the engine API.
//!
//! Each command runs under a tiny shell wrapper that records its PID in the container, so a
//! cancelled run can kill it there (dropping the API stream alone would leave `pg_restore`
//! running inside the container).

use std::path::Path;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use splice_dr_plugin_api::{BackendError, OpContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::engine::{engine_err, Engine};
pub use splice_dr_pg_toolkit::toolkit::{ExecResult, Streams};

/// Size of the chunks a dump is streamed in.
const CHUNK: usize = 1 << 20;
/// Bytes of stderr kept for error messages (the end of it).
const STDERR_KEEP: usize = 16 << 10;
/// Bytes of stdout kept when it is not written to a file.
const STDOUT_KEEP: usize = 1 << 20;

/// A unique file in the container holding the PID of one exec, for cancellation.
fn pid_file() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "/tmp/.splice-dr-exec-{}-{}.pid",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `argv` in `container` as `user` with `env`, streaming as `streams` says.
/// Cancellation kills the command inside the container and returns `Cancelled`.
pub fn run(
    engine: &Engine,
    ctx: &OpContext,
    container: &str,
    user: Option<&str>,
    argv: &[String],
    env: &[String],
    streams: Streams<'_>,
) -> Result<ExecResult, BackendError> {
    let pid_file = pid_file();
    let mut wrapped = vec![
        "sh".to_string(),
        "-c".into(),
        format!("echo $$ > {pid_file}; exec \"$@\""),
        "splice-dr-exec".into(),
    ];
    wrapped.extend(argv.iter().cloned());
    let what = streams.progress.unwrap_or("exec").to_string();
    let result = engine.block(
        ctx,
        &what,
        stream_exec(engine, ctx, container, user, &wrapped, env, &streams),
    );
    if matches!(result, Err(BackendError::Cancelled { .. })) {
        // Best effort: the command must not go on writing after the flow moved on.
        let kill = vec![
            "sh".to_string(),
            "-c".into(),
            format!("kill -TERM $(cat {pid_file}) 2>/dev/null; rm -f {pid_file}"),
        ];
        let _ = engine.block_uncancellable(
            "killing a cancelled command",
            simple_exec(engine, container, &kill),
        );
    } else {
        let rm = vec!["rm".to_string(), "-f".into(), pid_file];
        let _ = engine.block_uncancellable("cleaning up", simple_exec(engine, container, &rm));
    }
    result
}

/// Runs a short command as root with no streams and returns its exit code.
async fn simple_exec(
    engine: &Engine,
    container: &str,
    argv: &[String],
) -> Result<i64, BackendError> {
    let streams = Streams::default();
    let ctx = OpContext::detached(Default::default());
    stream_exec(engine, &ctx, container, Some("0"), argv, &[], &streams)
        .await
        .map(|r| r.code)
}

async fn stream_exec(
    engine: &Engine,
    ctx: &OpContext,
    container: &str,
    user: Option<&str>,
    argv: &[String],
    env: &[String],
    streams: &Streams<'_>,
) -> Result<ExecResult, BackendError> {
    let docker = engine.docker();
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions::<String> {
                attach_stdin: Some(streams.stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(argv.to_vec()),
                env: Some(env.to_vec()),
                user: user.map(str::to_string),
                ..Default::default()
            },
        )
        .await
        .map_err(engine_err(format!(
            "creating an exec in container {container}"
        )))?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .map_err(engine_err("starting an exec"))?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(BackendError::Plugin("exec started detached".into()));
    };

    let total_in = match streams.stdin {
        Some(p) => Some(file_len(p)?),
        None => None,
    };
    let sent_total = std::sync::atomic::AtomicU64::new(0);
    let feed = async {
        let Some(path) = streams.stdin else {
            return Ok::<u64, BackendError>(0);
        };
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| BackendError::io(format!("opening {}", path.display()), e))?;
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| BackendError::io(format!("reading {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            if input.write_all(&buf[..n]).await.is_err() {
                // The command stopped reading (it failed or finished early); its exit
                // code and stderr say why.
                return Ok(sent);
            }
            sent += n as u64;
            sent_total.store(sent, std::sync::atomic::Ordering::Relaxed);
            if let Some(label) = streams.progress {
                ctx.progress(label, sent, total_in, "bytes");
            }
        }
        let _ = input.shutdown().await;
        Ok(sent)
    };
    let drain = async {
        let mut out_file = match streams.stdout {
            Some(p) => Some(
                tokio::fs::File::create(p)
                    .await
                    .map_err(|e| BackendError::io(format!("creating {}", p.display()), e))?,
            ),
            None => None,
        };
        let mut kept_out = Vec::new();
        let mut kept_err = Vec::new();
        let mut received = 0u64;
        while let Some(item) = output.next().await {
            let item = match item {
                Ok(item) => item,
                Err(e) if ends_output(&e, streams.stdin.is_some()) => break,
                Err(e) => return Err(engine_err("reading an exec's output")(e)),
            };
            match item {
                bollard::container::LogOutput::StdOut { message } => {
                    received += message.len() as u64;
                    match out_file.as_mut() {
                        Some(f) => f
                            .write_all(&message)
                            .await
                            .map_err(|e| BackendError::io("writing the command's output", e))?,
                        None => keep_head(&mut kept_out, &message, STDOUT_KEEP),
                    }
                    if streams.stdin.is_none() {
                        if let Some(label) = streams.progress {
                            ctx.progress(label, received, None, "bytes");
                        }
                    }
                }
                bollard::container::LogOutput::StdErr { message } => {
                    keep_tail(&mut kept_err, &message, STDERR_KEEP)
                }
                _ => {}
            }
        }
        if let Some(mut f) = out_file {
            f.flush()
                .await
                .map_err(|e| BackendError::io("writing the command's output", e))?;
            f.sync_all()
                .await
                .map_err(|e| BackendError::io("syncing the command's output", e))?;
        }
        Ok::<_, BackendError>((kept_out, kept_err, received))
    };
    // The output ends when the command exits. A command may exit without reading all its
    // input (`pg_restore --list` reads only the table of contents, a failing psql stops):
    // then the engine stops reading stdin and a pending write would block forever, so the
    // feed is abandoned as soon as the output has ended.
    tokio::pin!(feed);
    tokio::pin!(drain);
    let (sent, (out, err, received)) = tokio::select! {
        fed = &mut feed => {
            let fed = fed?;
            (fed, drain.await?)
        }
        drained = &mut drain => {
            (sent_total.load(std::sync::atomic::Ordering::Relaxed), drained?)
        }
    };
    let code = exit_code(engine, &exec.id).await?;
    Ok(ExecResult {
        code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        bytes_in: sent,
        bytes_out: received,
    })
}

/// Whether a read error on an exec's output is its normal end. A command may exit without
/// reading all its input (`pg_restore --list` reads only a dump's table of contents); the
/// engine then closes the exec's connection with our input unread in its buffer, and on a
/// Unix socket the close reads on our side as "connection reset" instead of end of file
/// once the output already sent is consumed (seen in CI under load). The output received
/// is whole and the exit code, read from the engine afterwards, decides: a connection that
/// really broke leaves the exec running and reads as failed (exit code -1).
fn ends_output(e: &bollard::errors::Error, input_attached: bool) -> bool {
    let bollard::errors::Error::IOError { err } = e else {
        return false;
    };
    input_attached && err.kind() == std::io::ErrorKind::ConnectionReset
}

/// The exit code once the engine reports the exec finished (its output closing can come
/// a moment before).
async fn exit_code(engine: &Engine, id: &str) -> Result<i64, BackendError> {
    for _ in 0..100 {
        let info = engine
            .docker()
            .inspect_exec(id)
            .await
            .map_err(engine_err("reading an exec's exit code"))?;
        if info.running != Some(true) {
            return Ok(info.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(-1)
}

fn file_len(p: &Path) -> Result<u64, BackendError> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| BackendError::io(format!("reading {}", p.display()), e))
}

fn keep_head(buf: &mut Vec<u8>, more: &[u8], cap: usize) {
    let room = cap.saturating_sub(buf.len());
    buf.extend_from_slice(&more[..more.len().min(room)]);
}

fn keep_tail(buf: &mut Vec<u8>, more: &[u8], cap: usize) {
    buf.extend_from_slice(more);
    if buf.len() > cap {
        let cut = buf.len() - cap;
        buf.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> bollard::errors::Error {
        bollard::errors::Error::IOError {
            err: std::io::Error::from(kind),
        }
    }

    /// A reset after feeding input ends the output (the command left input unread); the
    /// same reset with no input, or any other error, is a real failure.
    #[test]
    fn only_a_reset_of_an_exec_fed_input_ends_its_output() {
        use std::io::ErrorKind::*;
        assert!(ends_output(&io(ConnectionReset), true));
        assert!(!ends_output(&io(ConnectionReset), false));
        assert!(!ends_output(&io(BrokenPipe), true));
        assert!(!ends_output(&io(UnexpectedEof), true));
        let server = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        };
        assert!(!ends_output(&server, true));
    }
}
