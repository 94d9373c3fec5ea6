//! The command line, as clap types. `--help` on every command says what it does and when
//! an operator would use it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// splice-dr keeps a Splice validator node recoverable: it takes verified backups,
/// restores them without ever losing the current data, and journals every step.
///
/// Commands talk to the daemon over its Unix socket when one answers; otherwise they run
/// the same flow in-process, with the same journal and the same per-node lock.
///
/// Exit codes: 0 ok, 1 the operation failed, 2 usage or configuration error.
#[derive(Debug, Parser)]
#[command(
    name = "splice-dr",
    version = crate::build_info::LONG_VERSION,
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (TOML; reference: docs/CONFIG.md).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "SPLICE_DR_CONFIG",
        default_value = "/etc/splice-dr/splice-dr.toml"
    )]
    pub config: PathBuf,
    /// Log format for the daemon and in-process runs.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and compile every flow script; says which flows are in force.
    ///
    /// Exit 2 with FILE:LINE:COL and the offending key on any error. Run it after every
    /// edit: the daemon reloads the file on change and rejects a bad edit the same way.
    Check,
    /// Run the daemon in the foreground until SIGTERM/SIGINT (for systemd or a container).
    ///
    /// On SIGTERM, running flows are cancelled: they stop moving forward and run their
    /// rollback, then the daemon exits.
    Daemon,
    /// Take a backup now: validator DB, then participant DB, checksummed and verified.
    /// Prints the new backup id.
    Backup(BackupArgs),
    /// List backups in the repository, newest first.
    Backups(NodeArg),
    /// Re-check a backup: every checksum, and each dump readable by pg_restore.
    Verify(VerifyArgs),
    /// Prove a backup restores: restore it into scratch databases next to the live ones,
    /// read every table and check its row count, check indexes (amcheck) and the site's
    /// `[[node.drill_check]]` queries, drop them, and record the result in the backup
    /// (shown by `backups` and `status`). Never touches the live databases.
    Drill(DrillArgs),
    /// Restore a node from a backup. The current databases are kept until the restored
    /// ones are verified and the node is healthy; any failure puts them back.
    Restore(RestoreArgs),
    /// Ask the running daemon whether it answers, and which version and protocol it
    /// speaks (warns on stderr when its protocol differs from this CLI's). Exit 1 when
    /// no daemon answers: unlike other commands, `ping` never runs in-process.
    Ping,
    /// Show nodes, component health, leftovers of interrupted runs, flows and active runs.
    Status,
    /// List recent runs, newest first.
    Runs(RunsArgs),
    /// Show one run with each step's result, timing, log and error.
    Show {
        /// Run id (from `splice-dr runs`).
        run_id: String,
    },
    /// The incident report of a run: detection, decision, each step, healthy again on a
    /// timeline, and RPO, RTO, rows verified, users re-onboarded, kept and dropped, who
    /// approved. Text by default; `--json` the typed report; `--html FILE` a
    /// self-contained page (no external resource), written mode 0600.
    Report(ReportArgs),
    /// Run any flow by name (built-in or from daemon.scripts_dir).
    Run(RunArgs),
    /// Cancel a running flow: it stops moving forward and runs its rollback.
    Cancel {
        /// Run id.
        run_id: String,
    },
    /// Publish an event for the rules, e.g. `operator.restore-now` (daemon only).
    Trigger {
        /// Event name (dotted words).
        event: String,
        #[command(flatten)]
        /// Node the event concerns.
        node: NodeArg,
        /// Text for logs and notifications.
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Stop every automatic trigger (rules and schedules); manual commands still work.
    Pause,
    /// Re-arm automatic triggers after `pause`.
    Resume,
    /// Clear a rule's tripped circuit breaker (after a human looked at why it tripped).
    Reset {
        /// Rule name (see `status`).
        rule: String,
    },
    /// Approve a run that a rule with `approval = "required"` left pending; it starts now.
    Approve {
        /// Run id (see `status`, "pending approvals").
        run_id: String,
    },
    /// Node identities dumps kept (age-encrypted) in backups.
    #[command(subcommand)]
    Identities(IdentitiesCommand),
    /// Apply retention now in every repository: the local one by `[retention]`, each
    /// off-site one by its own `retention`. The newest backup that did not fail a drill is
    /// always kept, and a node busy with a run keeps its backups until it ends.
    ///
    /// Use `--dry-run` first: it lists what would go, repository by repository.
    Prune(PruneArgs),
    /// Backup repositories (the local directory and `[[repository.offsite]]`).
    #[command(subcommand)]
    Repo(RepoCommand),
    /// This site's backup signing key: every manifest it writes is signed, and only
    /// backups signed by it or by a key in `repository.trusted_keys` are trusted.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show the whole story on this machine: a throwaway Postgres, a simulated validator,
    /// a real daemon; back up, break the node, watch the automatic restore, verify.
    ///
    /// Needs no config file. Takes about a minute; prints a report (detection time,
    /// restore time, total RTO, rows verified) and cleans up after itself.
    Demo {
        /// Keep the temp directory (config, journal, backups, logs) for inspection.
        #[arg(long)]
        keep: bool,
    },
    /// Print the shell completion script for SHELL (generated from this binary's own
    /// command definitions, so it always matches it). Needs no config file and no daemon.
    ///
    /// Install it where the shell looks for completions, e.g.:
    ///
    ///   splice-dr completions bash > /etc/bash_completion.d/splice-dr
    ///   splice-dr completions zsh > /usr/local/share/zsh/site-functions/_splice-dr
    ///   splice-dr completions fish > /etc/fish/completions/splice-dr.fish
    ///
    /// A new shell picks it up.
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell to complete for.
        shell: ShellArg,
    },
    /// Print the man page (roff), generated from this binary's own command definitions.
    /// Needs no config file and no daemon.
    ///
    /// Install it, then read it with `man splice-dr`:
    ///
    ///   splice-dr man > /usr/share/man/man1/splice-dr.1
    ///
    /// Or read it without installing: splice-dr man | man -l -
    #[command(verbatim_doc_comment)]
    Man,
}

/// `completions` shells.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ShellArg {
    /// Bash (with the bash-completion package).
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// `identities` subcommands.
#[derive(Debug, Subcommand)]
pub enum IdentitiesCommand {
    /// Decrypt a backup's identities dump to a new file (mode 0600) for the re-onboard
    /// procedure. Needs the age secret key whose public key is in
    /// `repository.identities_recipients`.
    Export {
        /// Backup id, or `latest`.
        backup: String,
        /// age identity file (`age-keygen` output) holding the secret key.
        #[arg(long)]
        identity: PathBuf,
        /// Where to write the dump (must not exist); default `./<backup>-identities.json`.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        /// Node (for `latest`).
        node: NodeArg,
    },
}

/// `keys` subcommands (run locally; the secret key never travels over the socket).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new signing key (mode 0600). Refuses to overwrite an existing file:
    /// backups signed by the old key would become untrusted here.
    Generate {
        /// Where to write it; default `repository.signing_key` (else
        /// `state_dir/keys/signing.key`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print this site's public key line, to add to another site's (or a rebuilt host's)
    /// `repository.trusted_keys = ["ed25519:…"]`.
    Public,
    /// Vouch for a backup with this site's key (its local and off-site copies): for
    /// backups made before splice-dr signed them. Check it first (`splice-dr verify ID`,
    /// `splice-dr backups` for its origin): a signed backup is trusted by `latest`.
    Sign {
        /// Backup id.
        backup: String,
    },
}

/// `prune` options.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    /// Only this node's backups.
    pub node: NodeArg,
    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `repo` subcommands.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Check every repository: listable, writable and readable (a probe object is written,
    /// read back and deleted), free space where the storage reports it, and uploads that
    /// never finished. Exit 1 when any repository fails. The daemon runs the same check
    /// every `daemon.repo_check_interval`.
    Check,
}

/// `--node`.
#[derive(Debug, Args)]
pub struct NodeArg {
    /// Node name from the config (optional when only one node is configured).
    #[arg(long)]
    pub node: Option<String>,
}

/// `backup` options.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    /// Node.
    pub node: NodeArg,
    /// Take this kind of backup this once, whatever the node's `backup_kind`: `logical`
    /// (pg_dump of each database) or `physical` (pg_basebackup of the whole server).
    #[arg(long, value_name = "KIND", value_parser = ["logical", "physical"])]
    pub kind: Option<String>,
    /// Print the steps it would take, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Backup id, or `latest`.
    pub backup: String,
    #[command(flatten)]
    /// Node (for `latest`).
    pub node: NodeArg,
}

/// `drill` options.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Backup id, or `latest` (the newest trusted backup).
    #[arg(long, default_value = "latest")]
    pub backup: String,
    #[command(flatten)]
    /// Node (for `latest`).
    pub node: NodeArg,
    /// Drill even an untrusted backup (unsigned, signed by an unknown key, future-dated).
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// Why; journaled with the run.
    #[arg(long, requires = "force")]
    pub reason: Option<String>,
}

/// `restore` options.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup id, or `latest` (the default): the newest backup whose last drill passed,
    /// else the newest that did not fail one; the run's log says which and why.
    #[arg(long, default_value = "latest")]
    pub backup: String,
    #[command(flatten)]
    /// Node.
    pub node: NodeArg,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the steps it would take, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Restore even a backup that is too old, from another migration id, or untrusted
    /// (unsigned, signed by an unknown key, dated in the future).
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// Why the safety checks are overridden; journaled with the run.
    #[arg(long, requires = "force")]
    pub reason: Option<String>,
    /// Seconds to wait for each component to become ready.
    #[arg(long, default_value_t = 600)]
    pub ready_timeout: u64,
    /// The point to restore to: `backup-end` (the backup's own end, the default); for a
    /// physical backup of a node with continuous WAL (`wal_streaming`), `latest` (every
    /// commit the stored WAL holds) or a time such as `2026-12-04T10:00:00Z` (every commit
    /// up to it). A target the stored WAL cannot reach is refused before anything changes,
    /// naming the last reachable time.
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,
    /// Confirm that the node which took the backup is stopped for good: required to
    /// restore a backup taken on another host (or one that does not record its host), as
    /// two live copies of one participant make Canton lose data. Journaled with the run.
    #[arg(long)]
    pub old_node_stopped: bool,
    /// The old node's validator base URL as this host reaches it, checked not to answer
    /// instead of the address the backup recorded.
    #[arg(long, value_name = "URL")]
    pub old_node_url: Option<String>,
}

/// `runs` options.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Show at most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Stream a run's steps live until it ends (the newest active run, or RUN_ID).
    #[arg(long)]
    pub follow: bool,
    /// The run to follow.
    #[arg(requires = "follow")]
    pub run_id: Option<String>,
}

/// `report` options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run id (from `splice-dr runs`).
    pub run_id: String,
    /// Write the report as a self-contained HTML page to FILE (replaced atomically,
    /// mode 0600; a symlink at FILE is replaced, not followed).
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Flow name, e.g. `backup`, `restore`, `verify`, or a site flow.
    pub flow: String,
    #[command(flatten)]
    /// Node.
    pub node: NodeArg,
    /// A parameter for the script, `key=value` (repeatable). `true`/`false` and
    /// integers are passed as such, everything else as text.
    #[arg(long = "param", short = 'p', value_parser = parse_param)]
    pub params: Vec<(String, serde_json::Value)>,
    /// Print the steps it would take, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation of a destructive flow.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

fn parse_param(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not key=value"))?;
    if k.is_empty() {
        return Err(format!("`{s}` has an empty key"));
    }
    let value = match v {
        "true" => serde_json::Value::Bool(true),
        "false" => serde_json::Value::Bool(false),
        _ => v
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::String(v.into())),
    };
    Ok((k.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn params_are_typed() {
        assert_eq!(
            parse_param("force=true").unwrap().1,
            serde_json::json!(true)
        );
        assert_eq!(parse_param("n=3").unwrap().1, serde_json::json!(3));
        assert_eq!(
            parse_param("b=latest").unwrap().1,
            serde_json::json!("latest")
        );
        assert!(parse_param("novalue").is_err());
    }

    #[test]
    fn force_needs_a_reason() {
        let r = Cli::try_parse_from(["splice-dr", "restore", "--backup", "x", "--force"]);
        assert!(r.is_err());
    }
}
