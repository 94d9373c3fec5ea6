//! The CLI: turns a command into a socket request, sends it to the daemon (or runs it
//! in-process when no daemon answers), and renders the answer.

pub mod args;
mod generate;
pub mod render;
mod report;

pub use args::{Cli, Command, LogFormatArg};
pub use generate::{completions, man};

use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::service::Service;
use crate::socket::client;
use crate::socket::protocol::{ErrorCode, Reply, Request};
use render::EventPrinter;
use splice_dr_protocol::{Approved, RunDetail, RunState, RunSummary};

/// Process exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The operation failed.
    pub const FAILED: u8 = 1;
    /// Usage or configuration error.
    pub const USAGE: u8 = 2;
}

fn params(pairs: &[(&str, Value)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Builds the socket request for a client command (not `check` or `daemon`).
pub fn request_for(cmd: &Command) -> Option<Request> {
    let run = |flow: &str, node: &Option<String>, params, dry_run, confirmed| Request::Run {
        flow: flow.into(),
        node: node.clone(),
        params,
        dry_run,
        follow: true,
        confirmed,
    };
    Some(match cmd {
        Command::Check
        | Command::Daemon
        | Command::Identities(_)
        | Command::Keys(_)
        | Command::Demo { .. }
        | Command::Completions { .. }
        | Command::Man => return None,
        Command::Ping => Request::Ping,
        Command::Status => Request::Status,
        Command::Prune(a) => Request::Prune {
            node: a.node.node.clone(),
            dry_run: a.dry_run,
        },
        Command::Repo(args::RepoCommand::Check) => Request::RepoCheck,
        Command::Runs(a) if a.follow => Request::Follow {
            run: a.run_id.clone(),
        },
        Command::Runs(a) => Request::Runs {
            limit: Some(a.limit),
        },
        Command::Show { run_id } => Request::Show {
            run: run_id.clone(),
        },
        Command::Report(a) => Request::Show {
            run: a.run_id.clone(),
        },
        Command::Cancel { run_id } => Request::Cancel {
            run: run_id.clone(),
        },
        Command::Trigger {
            event,
            node,
            message,
        } => Request::Trigger {
            event: event.clone(),
            node: node.node.clone(),
            message: message.clone(),
        },
        Command::Pause => Request::Pause,
        Command::Resume => Request::Resume,
        Command::Reset { rule } => Request::Reset { rule: rule.clone() },
        Command::Approve { run_id } => Request::Approve {
            run: run_id.clone(),
        },
        Command::Backups(n) => Request::Backups {
            node: n.node.clone(),
        },
        Command::Backup(a) => {
            let mut p = serde_json::Map::new();
            if let Some(kind) = &a.kind {
                p.insert("kind".into(), json!(kind));
            }
            run("backup", &a.node.node, p, a.dry_run, false)
        }
        Command::Verify(a) => run(
            "verify",
            &a.node.node,
            params(&[("backup", json!(a.backup))]),
            false,
            false,
        ),
        Command::Drill(a) => {
            let mut p = params(&[("backup", json!(a.backup))]);
            insert_force(&mut p, a.force, &a.reason);
            run("drill", &a.node.node, p, false, false)
        }
        Command::Restore(a) => {
            let mut p = params(&[
                ("backup", json!(a.backup)),
                ("ready_timeout", json!(a.ready_timeout)),
            ]);
            insert_force(&mut p, a.force, &a.reason);
            if a.old_node_stopped {
                p.insert("old_node_stopped".into(), json!(true));
            }
            if let Some(url) = &a.old_node_url {
                p.insert("old_node_url".into(), json!(url));
            }
            if let Some(to) = &a.to {
                p.insert("to".into(), json!(to));
            }
            run("restore", &a.node.node, p, a.dry_run, a.yes)
        }
        Command::Run(a) => run(
            &a.flow,
            &a.node.node,
            a.params.iter().cloned().collect(),
            a.dry_run,
            a.yes,
        ),
    })
}

/// Adds `force` and `reason` to a run's parameters when `--force` was given.
fn insert_force(p: &mut serde_json::Map<String, Value>, force: bool, reason: &Option<String>) {
    if force {
        p.insert("force".into(), json!(true));
        p.insert("reason".into(), json!(reason.clone().unwrap_or_default()));
    }
}

/// `keys generate` and `keys public`: local, no daemon (the secret key stays on the host).
pub fn keys(cli: &Cli, config: &Config) -> u8 {
    use splice_dr_repo::trust;
    let Command::Keys(cmd) = &cli.command else {
        return exit::USAGE;
    };
    let result = match cmd {
        args::KeysCommand::Generate { out } => {
            let path = out
                .clone()
                .unwrap_or_else(|| crate::config::keys::signing_key_path(config));
            trust::generate(&path)
                .map_err(|e| e.to_string())
                .map(|public| {
                    eprintln!(
                        "signing key written to {} (mode 0600); its public key (for other sites' \
                     repository.trusted_keys):",
                        path.display()
                    );
                    trust::public_line(&public)
                })
        }
        args::KeysCommand::Public => {
            trust::read_key(&crate::config::keys::signing_key_path(config))
                .map(|k| trust::public_line(&k.verifying_key()))
                .map_err(|e| e.to_string())
        }
        args::KeysCommand::Sign { backup } => crate::prepare::open_repository(config)
            .and_then(|repo| repo.sign_backup(backup))
            .map(|places| format!("backup {backup} signed in: {}", places.join(", ")))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
    }
}

/// Sends requests to the daemon, or to an in-process service when none answers.
enum Target {
    Daemon(client::Client),
    InProcess(std::sync::Arc<Service>),
}

impl Target {
    /// Connects to the daemon; without one, runs in-process when `in_process` allows.
    async fn open(config: &Config, in_process: bool) -> Result<Target, String> {
        match client::connect(&config.daemon.socket).await {
            Ok(Some(c)) => Ok(Target::Daemon(c)),
            Ok(None) if !in_process => Err(format!(
                "no daemon answers on {}",
                config.daemon.socket.display()
            )),
            Ok(None) => {
                eprintln!(
                    "no daemon answers on {}: running in-process (same journal and node locks)",
                    config.daemon.socket.display()
                );
                let prepared =
                    crate::prepare::prepare(config.clone(), crate::prepare::Purpose::Start)
                        .map_err(|e| e.to_string())?;
                let service =
                    Service::new(prepared.core, "in-process").map_err(|e| e.to_string())?;
                for note in service.recover().await {
                    eprintln!("recovery: {note}");
                }
                watch_interrupts(service.clone())?;
                Ok(Target::InProcess(service))
            }
            Err(e) => Err(format!(
                "cannot connect to the daemon on {}: {e} (is this user allowed to use it?)",
                config.daemon.socket.display()
            )),
        }
    }

    async fn send(&mut self, req: &Request, printer: &mut EventPrinter) -> Result<Reply, String> {
        match self {
            Target::Daemon(c) => c
                .request(req, &mut |ev| printer.print(&ev))
                .await
                .map_err(|e| format!("daemon connection failed: {e}")),
            Target::InProcess(service) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let handle = {
                    let service = service.clone();
                    let req = req.clone();
                    tokio::spawn(async move { service.handle(req, &tx).await })
                };
                while let Some(reply) = rx.recv().await {
                    if let Reply::Event { event } = reply {
                        printer.print(&event);
                    }
                }
                handle
                    .await
                    .map_err(|e| format!("in-process run panicked: {e}"))
            }
        }
    }
}

/// Ctrl-C while this process runs a flow itself. The tools a flow starts (`pg_restore`,
/// `pg_dump`, helm) run in their own process groups, so a terminal's SIGINT reaches only
/// this process, and its default action would kill it and leave `pg_restore` writing into
/// a half-staged node. Instead the first Ctrl-C cancels this process's runs: each rolls
/// back (its `catch` steps run, its tools' groups are killed) and the command then ends
/// as usual with the run's state. A Ctrl-C while no run is active (a listing, the
/// confirmation prompt) ends the process at once, as a terminal user expects.
fn watch_interrupts(service: std::sync::Arc<Service>) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupts = signal(SignalKind::interrupt())
        .map_err(|e| format!("installing the Ctrl-C handler: {e}"))?;
    tokio::spawn(async move {
        let mut cancelled: Vec<String> = Vec::new();
        while interrupts.recv().await.is_some() {
            let runner = service.runner();
            let active = runner.active_runs();
            if active.is_empty() {
                eprintln!("\ninterrupted");
                std::process::exit(i32::from(exit::FAILED));
            }
            if active.iter().all(|id| cancelled.contains(id)) {
                eprintln!(
                    "\ninterrupt: still rolling back {}; the rollback has its own deadline",
                    active.join(", ")
                );
                continue;
            }
            eprintln!(
                "\ninterrupt: cancelling {}: rolling back before exiting",
                active.join(", ")
            );
            let by = format!("Ctrl-C on the in-process CLI (pid {})", std::process::id());
            for id in active {
                if let Err(e) = runner.cancel_by(&id, &by) {
                    eprintln!("interrupt: cannot cancel {id}: {e}");
                }
                cancelled.push(id);
            }
        }
    });
    Ok(())
}

fn confirm_on_tty(message: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{message}\nType `yes` to continue: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim() == "yes"
}

/// `identities export`: decrypts locally (no daemon involved; the secret key never
/// travels over the socket).
pub fn export_identities(cli: &Cli, config: &Config) -> u8 {
    let Command::Identities(args::IdentitiesCommand::Export {
        backup,
        identity,
        out,
        node,
    }) = &cli.command
    else {
        return exit::USAGE;
    };
    let run = || -> Result<std::path::PathBuf, String> {
        let repo = crate::prepare::open_repository(config).map_err(|e| e.to_string())?;
        let node = match node.node.clone() {
            Some(n) => n,
            None if config.nodes.len() == 1 => config.nodes[0].name.clone(),
            None => return Err("several nodes are configured: name one with --node".into()),
        };
        let m = repo.resolve(backup, &node).map_err(|e| e.to_string())?;
        // After losing the machine the backup may be off-site only: fetch it (checked).
        if let Some(from) = repo.fetch(&m.id, &mut |_| {}).map_err(|e| e.to_string())? {
            eprintln!("downloaded backup {} from off-site repository {from}", m.id);
        }
        let entry = m.identities.as_ref().ok_or_else(|| {
            format!("backup {} has no identities dump (no [node.validator] was configured when it was taken)", m.id)
        })?;
        let plain =
            crate::identities::decrypt_file(&repo.backup_dir(&m.id).join(&entry.file), identity)
                .map_err(|e| e.to_string())?;
        crate::identities::validate_dump(&plain).map_err(|e| e.to_string())?;
        let out = out
            .clone()
            .unwrap_or_else(|| format!("{}-identities.json", m.id).into());
        crate::identities::write_private(&out, &plain).map_err(|e| e.to_string())?;
        Ok(out)
    };
    match run() {
        Ok(path) => {
            println!("{}", path.display());
            eprintln!("identities written to {} (mode 0600): it holds private keys; delete it after the re-onboard", path.display());
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
    }
}

/// Runs a client command and returns the exit code.
pub async fn run_client(cli: &Cli, config: &Config) -> u8 {
    let Some(mut req) = request_for(&cli.command) else {
        return exit::USAGE;
    };
    let in_process = !matches!(cli.command, Command::Ping);
    let mut target = match Target::open(config, in_process).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    let json_lines = cli.json && matches!(&cli.command, Command::Runs(a) if a.follow);
    let mut printer = if json_lines {
        EventPrinter::json_lines()
    } else {
        EventPrinter::default()
    };
    let mut reply = target.send(&req, &mut printer).await;
    if let Ok(Reply::Error {
        code: ErrorCode::Confirm,
        message,
    }) = &reply
    {
        if confirm_on_tty(message) {
            if let Request::Run { confirmed, .. } = &mut req {
                *confirmed = true;
            }
            reply = target.send(&req, &mut printer).await;
        } else {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    }
    if json_lines {
        return end_json_lines(reply);
    }
    match reply {
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
        Ok(Reply::Error { code, message }) => {
            eprintln!("error: {message}");
            exit_for(code)
        }
        Ok(Reply::Ok { result }) => {
            if let Some(warning) = render::protocol_warning(&result) {
                eprintln!("warning: {warning}");
            }
            print_result(cli, &result)
        }
        Ok(Reply::Event { .. }) => exit::FAILED,
    }
}

/// The last line of a `--json runs --follow` stream: the daemon's final reply as it was
/// sent (`ok` with the run record, or `error`), and the exit code a text follow gives.
fn end_json_lines(reply: Result<Reply, String>) -> u8 {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => Reply::error(ErrorCode::Failed, e),
    };
    render::print_json_line(&reply);
    match &reply {
        Reply::Ok { result } => {
            let run: Option<RunDetail> = serde_json::from_value(result.clone()).ok();
            match run {
                Some(r) if r.state != RunState::Succeeded => exit::FAILED,
                _ => exit::OK,
            }
        }
        Reply::Error { code, .. } => exit_for(*code),
        Reply::Event { .. } => exit::FAILED,
    }
}

/// The exit code of an error reply: 2 when the request must change (or the CLI must
/// match the daemon's version), 1 when the operation itself failed.
fn exit_for(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Usage | ErrorCode::Confirm | ErrorCode::VersionSkew => exit::USAGE,
        ErrorCode::Denied | ErrorCode::Busy | ErrorCode::Failed | ErrorCode::Unknown => {
            exit::FAILED
        }
    }
}

fn print_result(cli: &Cli, result: &Value) -> u8 {
    if let Command::Report(a) = &cli.command {
        return report::print(a, cli.json, result);
    }
    // A run record (it has steps) decides the exit code by its state.
    let run: Option<RunDetail> = result
        .get("steps")
        .and_then(|_| serde_json::from_value(result.clone()).ok());
    let run_state = run.as_ref().map(|r| r.state);
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        );
    } else if let Err(e) = print_text(&cli.command, result, run.as_ref()) {
        eprintln!(
            "warning: the daemon's answer is not in the shape this CLI reads ({e}); \
             printed as sent (a CLI of the daemon's version reads it)"
        );
        println!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        );
    }
    // `prune` and `repo check` answer ok with `ok: false` when something failed.
    if run_state.is_none() && result.get("ok") == Some(&Value::Bool(false)) {
        return exit::FAILED;
    }
    match run {
        None => exit::OK,
        Some(r) if r.state == RunState::Succeeded => exit::OK,
        Some(r) => {
            if !cli.json {
                eprintln!(
                    "run {} {}: {}",
                    r.id,
                    r.state.as_str(),
                    r.error.as_deref().unwrap_or("")
                );
            }
            exit::FAILED
        }
    }
}

/// An answer as text, read as the typed view of the command that asked for it.
fn print_text(
    command: &Command,
    result: &Value,
    run: Option<&RunDetail>,
) -> Result<(), serde_json::Error> {
    let succeeded = run.is_some_and(|r| r.state == RunState::Succeeded);
    match (command, run) {
        (Command::Ping, _) => println!("{}", render::ping_text(&decode(result)?)),
        (Command::Status, _) => print!("{}", render::status_text(&decode(result)?)),
        (Command::Runs(a), _) if !a.follow => {
            print!("{}", render::runs_table(&decode::<Vec<RunSummary>>(result)?))
        }
        (Command::Backups(_), _) => print!("{}", render::backups_table(&decode(result)?)),
        (Command::Prune(_), _) => print!("{}", render::prune_text(&decode(result)?)),
        (Command::Repo(_), _) => print!("{}", render::repo_check_text(&decode(result)?)),
        (Command::Cancel { run_id }, _) => println!("cancel requested for run {run_id}"),
        (Command::Trigger { event, .. }, _) => println!("published {event}"),
        (Command::Pause, _) => println!("automatic triggers paused (manual commands still work; `splice-dr resume` re-arms them)"),
        (Command::Resume, _) => println!("automatic triggers resumed"),
        (Command::Reset { rule }, _) => println!("breaker of rule {rule} reset: the rule is armed again"),
        (Command::Approve { .. }, _) => {
            println!("approved: run {} started", decode::<Approved>(result)?.started)
        }
        (Command::Backup(a), Some(r)) if succeeded && !a.dry_run => {
            println!("{}", flow_result(r, "id").as_str().unwrap_or("?"))
        }
        (Command::Verify(_), Some(r)) if succeeded => println!(
            "backup {} verified: {} files, {} checked, every dump readable",
            flow_result(r, "id").as_str().unwrap_or("?"),
            flow_result(r, "files_checked"),
            crate::run_context::progress::human_bytes(
                flow_result(r, "bytes_checked").as_u64().unwrap_or(0)
            )
        ),
        (_, Some(r)) => print!("{}", render::run_details(r)),
        _ => println!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        ),
    }
    Ok(())
}

/// An answer read as the view `T` of the protocol.
fn decode<T: serde::de::DeserializeOwned>(result: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(result)
}

/// A field of a run's result: what a flow returns is the flow's own (site scripts
/// return what they like), so it stays JSON.
fn flow_result<'a>(r: &'a RunDetail, key: &str) -> &'a Value {
    r.result
        .as_ref()
        .and_then(|v| v.get(key))
        .unwrap_or(&Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_skew_exits_2() {
        assert_eq!(exit_for(ErrorCode::VersionSkew), exit::USAGE);
        assert_eq!(exit_for(ErrorCode::Usage), exit::USAGE);
        assert_eq!(exit_for(ErrorCode::Unknown), exit::FAILED);
        assert_eq!(exit_for(ErrorCode::Busy), exit::FAILED);
    }

    #[test]
    fn ping_asks_the_daemon() {
        assert_eq!(request_for(&Command::Ping), Some(Request::Ping));
    }
}
