//! Opening a session with a deadline on the whole handshake.
//!
//! The driver's `connect_timeout` bounds only the TCP connect. A server that accepts the
//! connection and then never answers (a host stuck on a dead disk, a proxy whose backend
//! is gone) would hang the caller for ever — and with it `splice-dr status`, the health
//! probes and the daemon's start-up recovery, at the moment the operator needs them.
//!
//! So the driver's connect runs on a helper thread and the caller waits at most the
//! deadline. A hung attempt cannot be aborted from outside; it is left to finish on its
//! own, and while it hangs, further connects to the same server fail at once naming it,
//! instead of piling up one stuck thread per attempt.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};
use splice_dr_plugin_api::BackendError;

use crate::sql::pg_message;
use crate::tls::RustlsConnect;

/// Servers with a connect attempt still hanging → since when.
fn hanging() -> &'static Mutex<HashMap<String, Instant>> {
    static HANGING: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    HANGING.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Instant>> {
    hanging().lock().unwrap_or_else(|p| p.into_inner())
}

/// Connects with `cfg` (over TLS through `tls` when the config's mode asks for it),
/// giving up after `deadline`. `server` names the target in errors
/// (`host:port`) and keys the one-hanging-attempt-per-server rule; `what` says what the
/// session was for (`connecting to database x`).
pub fn connect(
    cfg: Config,
    tls: Option<RustlsConnect>,
    server: &str,
    deadline: Duration,
    what: &str,
) -> Result<Client, BackendError> {
    if let Some(since) = lock().get(server) {
        return Err(BackendError::db(
            what,
            format!(
                "{server} accepted a connection {}s ago and has not answered it yet; the \
                 server (or a proxy in front of it) is hung — check it before anything else",
                since.elapsed().as_secs()
            ),
        ));
    }
    let (tx, rx) = mpsc::channel();
    let key = server.to_string();
    let spawned = std::thread::Builder::new()
        .name("sdr-pg-connect".into())
        .spawn(move || {
            let result = match tls {
                Some(tls) => cfg.connect(tls),
                None => cfg.connect(NoTls),
            };
            // Once it answers (or gives up), the server is no longer known to hang.
            lock().remove(&key);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(BackendError::io(format!("{what}: starting a thread"), e));
    }
    match rx.recv_timeout(deadline) {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(BackendError::db(what, pg_message(&e))),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            lock()
                .entry(server.to_string())
                .or_insert_with(Instant::now);
            Err(BackendError::Timeout {
                what: format!(
                    "{what}: {server} accepted the connection but did not complete the \
                     startup handshake"
                ),
                seconds: deadline.as_secs(),
            })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(BackendError::db(
            what,
            "the connection attempt ended without a result",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::str::FromStr;

    #[test]
    fn a_server_that_never_answers_fails_in_time_and_later_attempts_fail_at_once() {
        // Accepts connections and never says a word.
        let tarpit = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tarpit.local_addr().unwrap().port();
        let held = std::thread::spawn(move || {
            let mut kept = Vec::new();
            for c in tarpit.incoming().take(1) {
                kept.push(c);
            }
            std::thread::sleep(Duration::from_secs(4));
        });
        let cfg = Config::from_str(&format!("postgresql://u@127.0.0.1:{port}/db")).unwrap();
        let server = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let e = connect(
            cfg.clone(),
            None,
            &server,
            Duration::from_millis(700),
            "probing",
        )
        .err()
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        let shown = e.to_string();
        assert!(
            shown.contains("did not complete the startup handshake"),
            "{shown}"
        );
        assert!(shown.contains(&server), "{shown}");

        let started = Instant::now();
        let again = connect(cfg, None, &server, Duration::from_secs(10), "probing")
            .err()
            .unwrap()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "no second hung thread"
        );
        assert!(again.contains("has not answered it yet"), "{again}");

        // When the hung attempt ends (the tarpit closes), the server is tried again.
        held.join().unwrap();
        wait_until(|| !lock().contains_key(&server));
    }

    fn wait_until(mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
