//! Semantic checks: what serde's types cannot say (unique names, backend ↔ table, a URL that
//! parses). Each error is located at the offending value through the [`Locator`], so an
//! operator fixing a config at 3 a.m. is sent to the right line.
//!
//! Checks run table by table (`[daemon]`, `[repository]`, then each `[[node]]` in order) and the
//! first failure is reported: one clear message beats a wall of consequences.

use super::load::{ConfigError, KeyPath, Locator};
use super::schema::{BackendKind, Config, NodeConfig};
use splice_dr_postgres::PostgresConfig;
use std::collections::HashMap;
use std::path::Path;

/// Longest Postgres identifier (NAMEDATALEN - 1), in bytes.
pub const MAX_DB_NAME: usize = 63;
/// Longest node name: it becomes part of file, lock and repository paths.
pub const MAX_NODE_NAME: usize = 63;
/// Longest Unix socket path (`sun_path` is 108 bytes including the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Checks on the config as written (before relative paths are resolved, so that an empty
/// path is still seen as empty).
pub fn check(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    check_daemon(config, loc)?;
    check_repository(config, loc)?;
    super::integrations::check(config, loc)?;
    super::automation::check(config, loc)?;
    if config.nodes.is_empty() {
        return Err(ConfigError::new(loc.file(), "no [[node]] is configured")
            .with_key(&KeyPath::root().key("node"))
            .with_hint("add at least one [[node]] table; see config/minimal.toml"));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, node) in config.nodes.iter().enumerate() {
        let path = KeyPath::root().key("node").index(i);
        check_node(node, &path, loc)?;
        if let Some(first) = seen.insert(node.name.as_str(), i) {
            let first_line = loc
                .value_span(&KeyPath::root().key("node").index(first).key("name"))
                .map(|s| format!(" (line {})", loc.line_col(s.start).0))
                .unwrap_or_default();
            return Err(loc
                .error_at_value(
                    &path.key("name"),
                    format!(
                        "node name \"{}\" is already used by node[{first}]{first_line}",
                        node.name
                    ),
                )
                .with_hint("node names must be unique: the CLI, locks and backups use them"));
        }
    }
    Ok(())
}

/// Checks that need the resolved (absolute) paths.
pub fn check_resolved(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let socket = &config.daemon.socket;
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(loc
            .error_at_value(
                &KeyPath::root().key("daemon").key("socket"),
                format!(
                    "socket path {} is {len} bytes long; Unix sockets allow at most \
                     {MAX_SOCKET_PATH}",
                    socket.display()
                ),
            )
            .with_hint("use a shorter absolute path, e.g. /run/splice-dr/splice-dr.sock"));
    }
    check_health_ca_files(config, loc)?;
    check_signing_key_place(config, loc)
}

/// Every component's `health_ca_file` is read and parsed now: a wrong path or a file that
/// holds no CA would otherwise only show when a restore waits for the component.
fn check_health_ca_files(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    for (i, node) in config.nodes.iter().enumerate() {
        let Some(pg) = &node.postgres else { continue };
        for (name, c) in &pg.components {
            let (Some(url), Some(file)) = (&c.health_url, &c.health_ca_file) else {
                continue;
            };
            let at = KeyPath::root()
                .key("node")
                .index(i)
                .key("postgres")
                .key("components")
                .key(name)
                .key("health_ca_file");
            if let Err(e) = splice_dr_postgres::components::HealthCheck::new(url, Some(file)) {
                return Err(loc.error_at_value(&at, e).with_hint(
                    "name a readable PEM file of the CA(s) that signed the health endpoint's \
                     certificate, with an https:// health_url",
                ));
            }
        }
    }
    Ok(())
}

/// The signing key must live apart from every repository it vouches for: a key stored
/// with the backups lets whoever can write the bucket or directory sign forgeries.
fn check_signing_key_place(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let key = lexical(&super::keys::signing_key_path(config));
    let repo = KeyPath::root().key("repository");
    let mut stores = vec![(config.repository.path.clone(), repo.key("path"))];
    for (i, o) in config.repository.offsite.iter().enumerate() {
        if let Some(p) = &o.path {
            stores.push((p.clone(), repo.key("offsite").index(i).key("path")));
        }
    }
    for (store, at) in stores {
        if key.starts_with(lexical(&store)) {
            let (field, path) = match &config.repository.signing_key {
                Some(_) => (repo.key("signing_key"), "repository.signing_key"),
                None => (at, "the default state_dir/keys/signing.key"),
            };
            return Err(loc
                .error_at_value(
                    &field,
                    format!(
                        "{path} ({}) is inside the backup repository {}: the secret key must \
                         never be stored with the backups it vouches for",
                        key.display(),
                        store.display()
                    ),
                )
                .with_hint("set repository.signing_key to a path outside every repository, e.g. /etc/splice-dr/signing.key"));
        }
    }
    Ok(())
}

/// `p` with `.` and `..` resolved without touching the disk (the key may not exist yet).
fn lexical(p: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn check_non_empty_path(p: &Path, path: KeyPath, loc: &Locator<'_>) -> Result<(), ConfigError> {
    if p.as_os_str().is_empty() {
        return Err(loc
            .error_at_value(&path, "empty path")
            .with_hint("give an absolute path, or one relative to the config file's directory"));
    }
    Ok(())
}

fn check_daemon(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let d = &config.daemon;
    let daemon = KeyPath::root().key("daemon");
    check_non_empty_path(&d.socket, daemon.key("socket"), loc)?;
    check_non_empty_path(&d.state_dir, daemon.key("state_dir"), loc)?;
    if let Some(s) = &d.scripts_dir {
        check_non_empty_path(s, daemon.key("scripts_dir"), loc)?;
    }
    if d.socket_mode & 0o600 != 0o600 {
        return Err(loc
            .error_at_value(
                &daemon.key("socket_mode"),
                format!(
                    "socket_mode {:04o} does not let the owner read and write the socket",
                    d.socket_mode
                ),
            )
            .with_hint("the CLI needs owner read+write: use \"0600\", or \"0660\" for a group"));
    }
    if d.health_interval.is_zero() || d.health_timeout.is_zero() {
        let key = if d.health_interval.is_zero() {
            "health_interval"
        } else {
            "health_timeout"
        };
        return Err(loc
            .error_at_value(&daemon.key(key), format!("{key} must be longer than 0"))
            .with_hint("e.g. health_interval = \"10s\", health_timeout = \"5s\""));
    }
    if d.http_max_connections == 0
        || d.http_header_timeout.is_zero()
        || d.http_exchange_timeout.is_zero()
    {
        return Err(loc
            .error_at_value(
                &daemon.key("http_max_connections"),
                "http_max_connections, http_header_timeout and http_exchange_timeout must be above 0",
            )
            .with_hint("leave them out for the defaults (32, \"5s\", \"30s\")"));
    }
    if config.journal.keep_runs == 0 || config.journal.keep_for.is_some_and(|d| d.is_zero()) {
        let key = if config.journal.keep_runs == 0 {
            "keep_runs"
        } else {
            "keep_for"
        };
        return Err(loc
            .error_at_value(
                &KeyPath::root().key("journal").key(key),
                format!("{key} must be above 0: the journal would forget every finished run"),
            )
            .with_hint(
                "e.g. keep_runs = 1000, keep_for = \"90d\"; leave them out for the defaults",
            ));
    }
    if d.users_interval.is_zero() {
        return Err(loc
            .error_at_value(
                &daemon.key("users_interval"),
                "users_interval must be longer than 0",
            )
            .with_hint("e.g. users_interval = \"5m\""));
    }
    if d.repo_check_interval.is_zero() {
        return Err(loc
            .error_at_value(
                &daemon.key("repo_check_interval"),
                "repo_check_interval must be longer than 0",
            )
            .with_hint("e.g. repo_check_interval = \"15m\""));
    }
    if d.run_timeout.is_zero() {
        return Err(loc
            .error_at_value(
                &daemon.key("run_timeout"),
                "run_timeout must be longer than 0",
            )
            .with_hint("e.g. run_timeout = \"6h\""));
    }
    if let Some(le) = &d.leader_election {
        le.check().map_err(|msg| {
            loc.error_at_value(&daemon.key("leader_election"), msg)
                .with_hint("e.g. lease_duration = \"15s\", renew_interval = \"5s\"")
        })?;
    }
    Ok(())
}

/// `low_runway` must leave room below the horizon: at or past `max_age` every runway,
/// even a fresh backup's, would be low from the start.
fn check_low_runway(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let repo = KeyPath::root().key("repository");
    let Some(low) = config.repository.low_runway else {
        return Ok(());
    };
    let hint = "e.g. low_runway = \"7d\" with max_age = \"30d\"";
    if low.is_zero() {
        return Err(loc
            .error_at_value(&repo.key("low_runway"), "low_runway must be longer than 0")
            .with_hint(hint));
    }
    if low >= config.repository.max_age {
        return Err(loc
            .error_at_value(
                &repo.key("low_runway"),
                format!(
                    "low_runway ({}) must be shorter than max_age ({}): every runway would be \
                     low from the start",
                    super::duration::format(low),
                    super::duration::format(config.repository.max_age)
                ),
            )
            .with_hint(hint));
    }
    Ok(())
}

fn check_repository(config: &Config, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let repo = KeyPath::root().key("repository");
    check_non_empty_path(&config.repository.path, repo.key("path"), loc)?;
    if config.repository.max_age.is_zero() {
        return Err(loc
            .error_at_value(&repo.key("max_age"), "max_age must be longer than 0")
            .with_hint("e.g. max_age = \"30d\" (Splice cannot restore older backups)"));
    }
    check_low_runway(config, loc)?;
    super::offsite::check(&config.repository.offsite, &config.repository.path, loc)?;
    let recipients = &config.repository.identities_recipients;
    for (i, r) in recipients.iter().enumerate() {
        if let Err(e) = super::keys::age_recipient(r) {
            return Err(loc
                .error_at_value(&repo.key("identities_recipients").index(i), e.to_string())
                .with_hint("an age public key looks like age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"));
        }
    }
    for (i, k) in config.repository.trusted_keys.iter().enumerate() {
        if let Err(e) = super::keys::public_key(k) {
            return Err(loc
                .error_at_value(&repo.key("trusted_keys").index(i), e)
                .with_hint(
                "run `splice-dr keys public` on the site whose backups to trust and copy its line",
            ));
        }
    }
    if recipients.is_empty() {
        if let Some((i, _)) = config
            .nodes
            .iter()
            .enumerate()
            .find(|(_, n)| n.validator.is_some())
        {
            return Err(loc
                .error_at_value(&KeyPath::root().key("node").index(i).key("validator"), "backups of this node include its identities dump (private keys), but repository.identities_recipients is empty")
                .with_hint("generate a key pair off the node with `age-keygen -o key.txt` and set identities_recipients = [\"age1…\"] to its public key"));
        }
    }
    Ok(())
}

fn check_node(node: &NodeConfig, path: &KeyPath, loc: &Locator<'_>) -> Result<(), ConfigError> {
    check_node_name(&node.name, &path.key("name"), loc)?;

    // The backend's own table must be there, every other backend's table must not.
    let tables = [
        (BackendKind::Postgres, node.postgres.is_some()),
        (BackendKind::Compose, node.compose.is_some()),
        (BackendKind::K8s, node.k8s.is_some()),
        (BackendKind::Plugin, node.plugin.is_some()),
    ];
    // The missing table first: the `backend` line is where the operator decided.
    if let Some((kind, _)) = tables
        .iter()
        .find(|(kind, present)| *kind == node.backend && !present)
    {
        return Err(loc
            .error_at_value(
                &path.key("backend"),
                format!(
                    "backend \"{kind}\" needs a [node.{kind}] table for node \"{}\"",
                    node.name
                ),
            )
            .with_hint(format!(
                "add [node.{kind}] after this [[node]]; docs/CONFIG.md shows its keys"
            )));
    }
    if let Some((kind, _)) = tables
        .iter()
        .find(|(kind, present)| *kind != node.backend && *present)
    {
        return Err(loc
            .error_at_key(
                &path.key(kind.as_str()),
                format!(
                    "[node.{kind}] is set but node \"{}\" uses backend \"{}\"",
                    node.name, node.backend
                ),
            )
            .with_hint(format!("remove [node.{kind}], or set backend = \"{kind}\"")));
    }

    if let Some(pg) = &node.postgres {
        check_postgres(pg, &path.key("postgres"), loc)?;
    }
    check_backup_kind(node, path, loc)?;
    check_wal_streaming(node, path, loc)?;
    if let Some(plugin) = &node.plugin {
        let pp = path.key("plugin");
        check_non_empty_path(&plugin.path, pp.key("path"), loc)?;
        if !plugin.config.is_object() {
            return Err(loc
                .error_at_value(&pp.key("config"), "plugin config must be a table")
                .with_hint("write it as a [node.plugin.config] table"));
        }
    }
    if let Some(k8s) = &node.k8s {
        check_k8s_releases(k8s, &path.key("k8s"), loc)?;
    }
    if let Some(v) = &node.validator {
        super::validator::check(v, &path.key("validator"), loc)?;
    }
    super::drill::check(&node.drill_checks, path, loc)?;
    Ok(())
}

/// `backup_kind = "physical"` needs a backend that restores one and, on bare Postgres,
/// the keys that let it replace the server's data — with the operator's word that every
/// database of that server is replaced. A plugin answers for itself when it is loaded.
fn check_backup_kind(
    node: &NodeConfig,
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    if node.backup_kind.is_logical() {
        return Ok(());
    }
    let at = path.key("backup_kind");
    match node.backend {
        BackendKind::Compose | BackendKind::K8s => Err(loc
            .error_at_value(
                &at,
                splice_dr_plugin_api::physical_not_built(node.backend.as_str()),
            )
            .with_hint("set backup_kind = \"logical\" (or remove it)")),
        BackendKind::Plugin => Ok(()),
        BackendKind::Postgres => {
            let Some(pg) = &node.postgres else {
                return Ok(());
            };
            let Some(why) = pg.physical_missing() else {
                return Ok(());
            };
            // Written as `false`: that line is the one to change; else the decision's line.
            let ack = path.key("postgres").key("physical_replaces_cluster");
            let field = if loc.value_span(&ack).is_some() {
                ack
            } else {
                at
            };
            Err(loc.error_at_value(&field, why).with_hint(
                "e.g. data_dir = \"/var/lib/postgresql/15/main\", server_stop_command = \
                 \"systemctl stop postgresql@15-main\", server_start_command = \
                 \"systemctl start postgresql@15-main\", physical_replaces_cluster = true \
                 (once the server holds nothing else that must survive a restore)",
            ))
        }
    }
}

/// `wal_streaming = true` streams from a bare server the daemon reaches over the
/// replication protocol, into WAL only a physical restore of that server replays: compose
/// and k8s refuse it (their physical backups are not built), and bare Postgres needs the
/// keys physical backups need.
fn check_wal_streaming(
    node: &NodeConfig,
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    if !node.wal_streaming {
        return Ok(());
    }
    let at = path.key("wal_streaming");
    match node.backend {
        BackendKind::Compose | BackendKind::K8s => Err(loc
            .error_at_value(
                &at,
                format!(
                    "continuous WAL (wal_streaming) is unsupported for the {} backend yet: it \
                     streams a bare Postgres server for its physical backups",
                    node.backend.as_str()
                ),
            )
            .with_hint(
                "remove wal_streaming and take backups on a schedule instead (a \
                 [[schedule]] running `backup`); its restore point is the last backup",
            )),
        BackendKind::Plugin => Ok(()),
        BackendKind::Postgres => match node.postgres.as_ref().and_then(|p| p.physical_missing()) {
            None => Ok(()),
            Some(why) => Err(loc
                .error_at_value(&at, format!("continuous WAL is restored physically: {why}"))
                .with_hint(
                    "set the [node.postgres] keys physical backups need (docs/CONFIG.md), or \
                     remove wal_streaming",
                )),
        },
    }
}

/// A release the flows upgrade (`chart` set) must pin its chart `version`: `helm upgrade`
/// without `--version` installs the newest chart, so a restart or a re-onboard would
/// silently upgrade the node to another Splice release (whose apps may refuse the data,
/// and which the network may not run yet).
fn check_k8s_releases(
    k8s: &splice_dr_k8s::K8sConfig,
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    for (role, release) in [
        ("validator", &k8s.releases.validator),
        ("participant", &k8s.releases.participant),
    ] {
        let rpath = path.key("releases").key(role);
        let hint = format!(
            "set version = \"<the chart version release `{}` runs>\" in \
             [node.k8s.releases.{role}] (`helm list -n {}` shows it, e.g. \
             splice-{role}-0.4.15 is version = \"0.4.15\")",
            release.name, k8s.namespace
        );
        match (&release.chart, release.version.as_deref().map(str::trim)) {
            (Some(_), None) => {
                return Err(loc
                    .error_at_value(
                        &rpath.key("chart"),
                        format!(
                            "release `{}` has a chart but no version: helm upgrade would \
                             install the newest chart, upgrading the node on a restart or \
                             re-onboard",
                            release.name
                        ),
                    )
                    .with_hint(hint))
            }
            (_, Some("")) => {
                return Err(loc
                    .error_at_value(&rpath.key("version"), "version is empty")
                    .with_hint(hint))
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_node_name(name: &str, path: &KeyPath, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let hint = "use lowercase letters, digits, '-' and '_', e.g. name = \"validator-1\"";
    if name.is_empty() {
        return Err(loc
            .error_at_value(path, "node name is empty")
            .with_hint(hint));
    }
    if name.len() > MAX_NODE_NAME {
        return Err(loc
            .error_at_value(
                path,
                format!(
                    "node name is {} bytes long; at most {MAX_NODE_NAME}",
                    name.len()
                ),
            )
            .with_hint(hint));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(loc
            .error_at_value(path, format!("node name \"{name}\" contains {bad:?}"))
            .with_hint(hint));
    }
    Ok(())
}

fn check_postgres(
    pg: &PostgresConfig,
    path: &KeyPath,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let example = "e.g. url = \"postgresql://cnadmin@127.0.0.1:5432/postgres\"";
    let url_path = path.key("url");
    let (tls, parsed) = splice_dr_pg_toolkit::connection::parse_url(&pg.url).map_err(|e| {
        loc.error_at_value(&url_path, e).with_hint(format!(
            "{example}, or \"postgresql:///postgres?host=/var/run/postgresql\" for a Unix \
             socket; TLS: ?sslmode=verify-full&sslrootcert=/etc/splice-dr/pg-ca.pem"
        ))
    })?;
    // The TLS files are read now: a wrong path is a config error, not a failed backup.
    tls.connector().map_err(|e| {
        loc.error_at_value(&url_path, format!("url: {e}"))
            .with_hint(
                "sslrootcert/sslcert/sslkey name absolute paths of readable PEM files; the key \
             mode 0600",
            )
    })?;
    if parsed.get_password().is_some() && pg.password_file.is_some() {
        return Err(loc
            .error_at_value(
                &url_path,
                "url contains a password and password_file is set too",
            )
            .with_hint(
                "remove the password from the URL: password_file is preferred, it is never logged",
            ));
    }
    if let Some(f) = &pg.password_file {
        check_non_empty_path(f, path.key("password_file"), loc)?;
    }
    for key in ["validator_db", "participant_db"] {
        let name = if key == "validator_db" {
            &pg.validator_db
        } else {
            &pg.participant_db
        };
        if name.is_empty() || name.len() > MAX_DB_NAME {
            return Err(loc
                .error_at_value(
                    &path.key(key),
                    format!(
                        "database name must be 1 to {MAX_DB_NAME} bytes long (Postgres' limit), \
                         got {}",
                        name.len()
                    ),
                )
                .with_hint(
                    "e.g. validator_db = \"validator\", participant_db = \"participant-0\"",
                ));
        }
    }
    if let Some(dir) = pg.data_dir.as_deref().filter(|d| !d.is_absolute()) {
        return Err(loc
            .error_at_value(
                &path.key("data_dir"),
                format!(
                    "data_dir must be an absolute path (the server's `SHOW data_directory`), \
                     got \"{}\"",
                    dir.display()
                ),
            )
            .with_hint("e.g. data_dir = \"/var/lib/postgresql/15/main\""));
    }
    for (key, cmd) in [
        ("server_stop_command", &pg.server_stop_command),
        ("server_start_command", &pg.server_start_command),
    ] {
        if cmd.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(loc
                .error_at_value(&path.key(key), format!("{key} is empty"))
                .with_hint("give a shell command that returns once the server is stopped/started, or remove the key"));
        }
    }
    if pg.jobs == 0 {
        return Err(loc
            .error_at_value(&path.key("jobs"), "jobs must be at least 1")
            .with_hint("e.g. jobs = 2 (parallel pg_dump / pg_restore workers)"));
    }
    for (name, component) in &pg.components {
        let cpath = path.key("components").key(name);
        if component.health_ca_file.is_some() && component.health_url.is_none() {
            return Err(loc
                .error_at_value(
                    &cpath.key("health_ca_file"),
                    "health_ca_file is set without a health_url",
                )
                .with_hint("set health_url to the component's https:// readiness URL, or remove health_ca_file"));
        }
        if let Some(f) = &component.health_ca_file {
            check_non_empty_path(f, cpath.key("health_ca_file"), loc)?;
        }
        if let Some(url) = &component.health_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(loc
                    .error_at_value(
                        &cpath.key("health_url"),
                        format!("health_url \"{url}\" is not an http(s) URL"),
                    )
                    .with_hint(
                        "e.g. health_url = \"http://127.0.0.1:5003/api/validator/readyz\"",
                    ));
            }
        }
        for (key, cmd) in [
            ("stop_command", &component.stop_command),
            ("start_command", &component.start_command),
        ] {
            if cmd.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return Err(loc
                    .error_at_value(&cpath.key(key), format!("{key} is empty"))
                    .with_hint("give a shell command, or remove the key"));
            }
        }
    }
    Ok(())
}
