//! Tests of the whole module through its public API: parsing, error locations, validation,
//! path resolution, redaction and hot reload.

use super::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const POSTGRES_EXAMPLE: &str = include_str!("../../../config/postgres.toml");
const MINIMAL_EXAMPLE: &str = include_str!("../../../config/minimal.toml");
const COMPOSE_EXAMPLE: &str = include_str!("../../../config/compose.toml");

fn origin() -> PathBuf {
    PathBuf::from("/etc/splice-dr/splice-dr.toml")
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text, &origin()) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

/// Asserts line, col and key of an error, printing it on failure.
fn assert_at(e: &ConfigError, line: usize, col: usize, key: &str) {
    assert_eq!(
        (e.line, e.col, e.key.as_deref()),
        (Some(line), Some(col), Some(key)),
        "{e}"
    );
}

const HEAD: &str = r#"[repository]
path = "/var/backups/splice-dr"
"#;

fn pg_node(name: &str) -> String {
    format!(
        r#"
[[node]]
name = "{name}"
backend = "postgres"
migration_id = 0

[node.postgres]
url = "postgresql://cnadmin@127.0.0.1:5432/postgres"
"#
    )
}

#[test]
fn compose_example_parses_with_the_bundle_names_as_defaults() {
    let c = parse(COMPOSE_EXAMPLE, &origin()).expect("example parses");
    let n = &c.nodes[0];
    assert_eq!(n.backend, BackendKind::Compose);
    let compose = n.compose.as_ref().expect("[node.compose]");
    assert_eq!(compose.project, "splice-validator");
    assert_eq!(compose.services.postgres, "postgres-splice");
    assert_eq!(compose.db_user, "cnadmin");
    let bundle = compose.bundle.as_ref().expect("bundle");
    assert_eq!(bundle.party_hint, "acme-validator-1");
    assert_eq!(c.daemon.users_interval, Duration::from_secs(300));
    // A compose node with a [node.postgres] table is refused, pointing at that table.
    let text = COMPOSE_EXAMPLE.replace(
        "[node.compose]\n",
        "[node.postgres]\nurl = \"postgresql://u@h/postgres\"\n\n[node.compose]\n",
    );
    let e = parse_err(&text);
    assert!(
        e.to_string()
            .contains("[node.postgres] is set but node \"validator-1\" uses backend \"compose\""),
        "{e}"
    );
    // Unknown keys in [node.compose] are errors.
    let e = parse_err(&COMPOSE_EXAMPLE.replace("project = ", "projet = "));
    assert!(e.to_string().contains("projet"), "{e}");
    // Readiness goes to the container addresses unless the commented table is used.
    assert_eq!(
        compose.readiness,
        splice_dr_compose::ReadinessConfig::default()
    );
    let text = COMPOSE_EXAMPLE
        .replace("# [node.compose.readiness]", "[node.compose.readiness]")
        .replace("# validator_url", "validator_url");
    let c = parse(&text, &origin()).expect("example with readiness parses");
    let readiness = &c.nodes[0].compose.as_ref().expect("compose").readiness;
    assert_eq!(
        readiness.validator_url.as_deref(),
        Some("http://wallet.localhost/api/validator/readyz")
    );
}

#[test]
fn postgres_example_parses_with_defaults() {
    let c = parse(POSTGRES_EXAMPLE, &origin()).expect("example parses");
    assert_eq!(c.source, origin());
    assert_eq!(c.daemon.socket, Path::new("/run/splice-dr/splice-dr.sock"));
    assert_eq!(c.daemon.socket_mode, 0o600);
    assert!(c.daemon.allowed_uids.is_empty());
    assert_eq!(c.daemon.state_dir, Path::new("/var/lib/splice-dr"));
    assert_eq!(c.daemon.scripts_dir, None);
    assert_eq!(c.daemon.run_timeout, Duration::from_secs(6 * 3600));
    assert_eq!(c.daemon.log_format, None);
    assert_eq!(c.repository.path, Path::new("/var/backups/splice-dr"));
    assert_eq!(c.repository.max_age, Duration::from_secs(30 * 86_400));
    assert_eq!(c.nodes.len(), 1);
    let n = &c.nodes[0];
    assert_eq!(n.name, "validator-1");
    assert_eq!(n.backend, BackendKind::Postgres);
    assert_eq!(n.migration_id, 0);
    assert!(n.plugin.is_none());
    let pg = n.postgres.as_ref().expect("postgres table");
    assert_eq!(pg.url, "postgresql://cnadmin@127.0.0.1:5432/postgres");
    assert_eq!(
        pg.password_file.as_deref(),
        Some(Path::new("/etc/splice-dr/pg-password"))
    );
    assert_eq!(pg.validator_db, "validator");
    assert_eq!(pg.participant_db, "participant-0");
    assert_eq!(pg.jobs, 2);
    assert!(pg.components.is_empty());
    assert!(c.node("validator-1").is_some());
}

#[test]
fn minimal_example_parses() {
    let c = parse(MINIMAL_EXAMPLE, &origin()).expect("minimal parses");
    assert_eq!(c.daemon, DaemonConfig::default());
    assert_eq!(c.repository.max_age, DEFAULT_MAX_AGE);
    assert_eq!(c.repository.low_runway, None);
    assert_eq!(
        c.repository.runway_threshold(),
        Duration::from_secs(7 * 86_400),
        "a week below the 30-day horizon by default"
    );
}

#[test]
fn low_runway_defaults_below_a_short_horizon_and_is_checked_against_it() {
    let with = |repo: &str| format!("[repository]\npath = \"/r\"\n{repo}\n{}", pg_node("a"));
    let c = parse(&with("max_age = \"1h\""), &origin()).expect("parses");
    assert_eq!(c.repository.runway_threshold(), Duration::from_secs(900));
    let c = parse(&with("max_age = \"1h\"\nlow_runway = \"50m\""), &origin()).expect("parses");
    assert_eq!(c.repository.runway_threshold(), Duration::from_secs(3000));

    let e = parse_err(&with("max_age = \"1h\"\nlow_runway = \"2h\""));
    assert_at(&e, 4, 14, "repository.low_runway");
    assert!(e.message.contains("shorter than max_age"), "{e}");
    let e = parse_err(&with("low_runway = \"0s\""));
    assert_at(&e, 3, 14, "repository.low_runway");
    let e = parse_err(&with("low_runway = 7"));
    assert_at(&e, 3, 14, "repository.low_runway");
    assert!(e.message.contains("no unit"), "{e}");
}

#[test]
fn every_key_documented_in_full_table_parses() {
    let text = r#"
[daemon]
socket = "/run/splice-dr/s.sock"
socket_mode = "0660"
allowed_uids = [1001, 1002]
state_dir = "/var/lib/splice-dr"
scripts_dir = "/etc/splice-dr/flows"
run_timeout = "2h 30m"
log_format = "json"

[repository]
path = "/var/backups/splice-dr"
max_age = "7d"

[[node]]
name = "validator-1"
backend = "postgres"
migration_id = 3

[node.postgres]
url = "postgresql://cnadmin@127.0.0.1:5432/postgres"
validator_db = "validator"
participant_db = "participant-3"
jobs = 4
bin_dir = "/usr/lib/postgresql/15/bin"
restore_maintenance_work_mem = "1GB"

[node.postgres.components.validator]
stop_command = "systemctl stop splice-validator"
start_command = "systemctl start splice-validator"
health_url = "http://127.0.0.1:5003/api/validator/readyz"

[[node]]
name = "site_b"
backend = "plugin"
migration_id = 3

[node.plugin]
path = "/usr/lib/splice-dr/libsite.so"

[node.plugin.config]
namespace = "validator"
api_token = "do-not-print-me"
replicas = { validator = 1 }
"#;
    let c = parse(text, &origin()).expect("parses");
    assert_eq!(c.daemon.socket_mode, 0o660);
    assert_eq!(c.daemon.allowed_uids, vec![1001, 1002]);
    assert_eq!(c.daemon.run_timeout, Duration::from_secs(9000));
    assert_eq!(c.daemon.log_format, Some(LogFormat::Json));
    let plugin = c.nodes[1].plugin.as_ref().expect("plugin");
    assert_eq!(plugin.config["replicas"]["validator"], 1);
    assert_eq!(plugin.config["api_token"], "do-not-print-me");
    let debug = format!("{c:?}");
    assert!(!debug.contains("do-not-print-me"), "{debug}");
    assert!(debug.contains("namespace"), "{debug}");
}

#[test]
fn reference_complete_example_parses() {
    let doc = include_str!("../../../docs/CONFIG.md");
    let section = doc
        .split("## Complete example")
        .nth(1)
        .expect("docs/CONFIG.md has a complete example");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let c = parse(block, &origin()).expect("the documented example parses");
    assert_eq!(c.daemon.socket_mode, 0o660);
    assert_eq!(c.nodes[0].postgres.as_ref().map(|p| p.jobs), Some(4));
}

#[test]
fn unknown_key_at_top_level() {
    // Top-level keys must come before the first table header.
    let text = format!("# comment\n  verbose = true\n{HEAD}{}", pg_node("a"));
    let e = parse_err(&text);
    assert_at(&e, 2, 3, "verbose");
    assert!(e.message.contains("unknown field `verbose`"), "{e}");
    assert!(e.message.contains("`repository`"), "lists valid keys: {e}");
}

#[test]
fn unknown_key_in_daemon() {
    let text = format!(
        "[daemon]\nstate_dir = \"/x\"\n  sokcet = \"/y\"\n{HEAD}{}",
        pg_node("a")
    );
    let e = parse_err(&text);
    assert_at(&e, 3, 3, "daemon.sokcet");
    assert!(e.message.contains("`socket`"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with("/etc/splice-dr/splice-dr.toml:3:3: unknown field `sokcet`"),
        "{shown}"
    );
    assert!(shown.contains("(key `daemon.sokcet`)\n  hint: "), "{shown}");
}

#[test]
fn unknown_key_in_second_node() {
    let text = format!("{HEAD}{}{}", pg_node("a"), pg_node("b"))
        .replace("name = \"b\"\n", "name = \"b\"\nmigration = 1\n");
    let e = parse_err(&text);
    assert_at(&e, 14, 1, "node[1].migration");
    assert!(e.message.contains("`migration_id`"), "{e}");
}

#[test]
fn unknown_key_in_node_postgres() {
    let text = format!("{HEAD}{}", pg_node("a")) + "pasword_file = \"/p\"\n";
    let e = parse_err(&text);
    assert_at(&e, 11, 1, "node[0].postgres.pasword_file");
    assert!(e.message.contains("`password_file`"), "{e}");
}

#[test]
fn unknown_key_in_component() {
    let text = format!("{HEAD}{}", pg_node("a"))
        + "\n[node.postgres.components.validator]\nstop_command = \"x\"\nhealthurl = \"http://h\"\n";
    let e = parse_err(&text);
    assert_at(&e, 14, 1, "node[0].postgres.components.validator.healthurl");
    assert!(e.message.contains("`health_url`"), "{e}");
}

#[test]
fn missing_required_key_names_it() {
    let text = format!("[repository]\nmax_age = \"3d\"\n{}", pg_node("a"));
    let e = parse_err(&text);
    assert_eq!(e.line, Some(1), "{e}");
    assert_eq!(e.key.as_deref(), Some("repository.path"), "{e}");

    let e = parse_err(&pg_node("a"));
    assert_eq!(e.key.as_deref(), Some("repository"), "{e}");
}

#[test]
fn syntax_error_is_located() {
    let e = parse_err("[repository]\npath = /no/quotes\n");
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse_err(
        &format!("{HEAD}{}", pg_node("a"))
            .replace("migration_id = 0\n", "migration_id = 0\nmigration_id = 1\n"),
    );
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("duplicate"), "{e}");
}

#[test]
fn bad_duration() {
    let text = format!(
        "[repository]\npath = \"/r\"\nmax_age = \"30 dayz\"\n{}",
        pg_node("a")
    );
    let e = parse_err(&text);
    assert_at(&e, 3, 11, "repository.max_age");
    assert!(e.message.contains("\"30d\""), "shows an example: {e}");

    let text = format!("[daemon]\nrun_timeout = 3600\n{HEAD}{}", pg_node("a"));
    let e = parse_err(&text);
    assert_at(&e, 2, 15, "daemon.run_timeout");
    assert!(e.message.contains("no unit"), "{e}");

    let text = format!("[daemon]\nrun_timeout = \"0s\"\n{HEAD}{}", pg_node("a"));
    let e = parse_err(&text);
    assert_at(&e, 2, 15, "daemon.run_timeout");
}

#[test]
fn socket_mode_checks() {
    for (mode, ok) in [
        ("\"0600\"", true),
        ("\"0666\"", true),
        ("\"0660\"", true),
        ("\"0800\"", false),
        ("\"1777\"", false),
        ("\"0060\"", false),
        ("600", false),
    ] {
        let text = format!("[daemon]\nsocket_mode = {mode}\n{HEAD}{}", pg_node("a"));
        match parse(&text, &origin()) {
            Ok(_) => assert!(ok, "{mode} accepted"),
            Err(e) => {
                assert!(!ok, "{mode} refused: {e}");
                assert_at(&e, 2, 15, "daemon.socket_mode");
            }
        }
    }
}

#[test]
fn duplicate_node_names_point_at_the_second() {
    let text = format!("{HEAD}{}{}", pg_node("a"), pg_node("a"));
    let e = parse_err(&text);
    assert_at(&e, 13, 8, "node[1].name");
    assert!(e.message.contains("node[0] (line 5)"), "{e}");
}

#[test]
fn node_name_rules() {
    for bad in ["", "Validator", "a b", "a.b"] {
        let text = format!("{HEAD}{}", pg_node(bad));
        let e = parse_err(&text);
        assert_at(&e, 5, 8, "node[0].name");
    }
    let long = "a".repeat(64);
    assert!(parse(&format!("{HEAD}{}", pg_node(&long)), &origin()).is_err());
    assert!(parse(&format!("{HEAD}{}", pg_node("ok_name-2")), &origin()).is_ok());
}

#[test]
fn no_node_is_an_error() {
    let e = parse_err(HEAD);
    assert_eq!(e.key.as_deref(), Some("node"), "{e}");
}

#[test]
fn backend_table_mismatch() {
    // backend = "postgres" without [node.postgres]: points at the backend value.
    let text =
        format!("{HEAD}\n[[node]]\nname = \"a\"\nbackend = \"postgres\"\nmigration_id = 0\n");
    let e = parse_err(&text);
    assert_at(&e, 6, 11, "node[0].backend");
    assert!(e.message.contains("[node.postgres]"), "{e}");

    // backend = "postgres" with a [node.plugin] too: points at the plugin table's header.
    let text = format!("{HEAD}{}\n[node.plugin]\npath = \"/x.so\"\n", pg_node("a"));
    let e = parse_err(&text);
    assert_at(&e, 12, 7, "node[0].plugin");

    // backend = "plugin" with only [node.postgres].
    let text = format!("{HEAD}{}", pg_node("a")).replace("\"postgres\"\n", "\"plugin\"\n");
    let e = parse_err(&text);
    assert_at(&e, 6, 11, "node[0].backend");

    // An unknown backend lists the valid ones.
    let text = format!("{HEAD}{}", pg_node("a")).replace("\"postgres\"\n", "\"nomad\"\n");
    let e = parse_err(&text);
    assert_at(&e, 6, 11, "node[0].backend");
    assert!(e.message.contains("`postgres`"), "{e}");
}

#[test]
fn postgres_url_checks() {
    let with_url = |url: &str, extra: &str| {
        format!("{HEAD}{}", pg_node("a")).replace(
            "url = \"postgresql://cnadmin@127.0.0.1:5432/postgres\"\n",
            &format!("url = \"{url}\"\n{extra}"),
        )
    };
    let e = parse_err(&with_url("postgresql://h:notaport/db", ""));
    assert_at(&e, 10, 7, "node[0].postgres.url");

    // A password in the URL is allowed on its own…
    let c = parse(&with_url("postgresql://u:pw@h/db", ""), &origin()).expect("allowed");
    let debug = format!("{c:?}");
    assert!(!debug.contains(":pw@"), "{debug}");
    assert!(debug.contains("u:<redacted>@h/db"), "{debug}");

    // …but not together with password_file.
    let e = parse_err(&with_url(
        "postgresql://u:pw@h/db",
        "password_file = \"/p\"\n",
    ));
    assert_at(&e, 10, 7, "node[0].postgres.url");
    assert!(
        e.hint.as_deref().unwrap_or("").contains("password_file"),
        "{e}"
    );

    let e = parse_err(&with_url("postgresql://u@h/db", "participant_db = \"\"\n"));
    assert_at(&e, 11, 18, "node[0].postgres.participant_db");
    let long = "p".repeat(64);
    let e = parse_err(&with_url(
        "postgresql://u@h/db",
        &format!("validator_db = \"{long}\"\n"),
    ));
    assert_at(&e, 11, 16, "node[0].postgres.validator_db");
}

#[test]
fn relative_paths_resolved_against_the_config_dir() {
    let text = r#"
[daemon]
socket = "run/s.sock"
state_dir = "./state"
scripts_dir = "flows"

[repository]
path = "../backups"

[[node]]
name = "a"
backend = "postgres"
migration_id = 0

[node.postgres]
url = "postgresql://u@h/db"
password_file = "secrets/pg"
bin_dir = "/usr/lib/postgresql/15/bin"

[[node]]
name = "b"
backend = "plugin"
migration_id = 0

[node.plugin]
path = "plugins/libsite.so"
"#;
    let c = parse(text, Path::new("/etc/splice-dr/splice-dr.toml")).expect("parses");
    assert_eq!(c.daemon.socket, Path::new("/etc/splice-dr/run/s.sock"));
    assert_eq!(c.daemon.state_dir, Path::new("/etc/splice-dr/state"));
    assert_eq!(
        c.daemon.scripts_dir.as_deref(),
        Some(Path::new("/etc/splice-dr/flows"))
    );
    assert_eq!(c.repository.path, Path::new("/etc/splice-dr/../backups"));
    let pg = c.nodes[0].postgres.as_ref().expect("pg");
    assert_eq!(
        pg.password_file.as_deref(),
        Some(Path::new("/etc/splice-dr/secrets/pg"))
    );
    assert_eq!(
        pg.bin_dir.as_deref(),
        Some(Path::new("/usr/lib/postgresql/15/bin"))
    );
    let plugin = c.nodes[1].plugin.as_ref().expect("plugin");
    assert_eq!(plugin.path, Path::new("/etc/splice-dr/plugins/libsite.so"));
    assert_eq!(plugin.config, serde_json::json!({}));

    // A relative config path resolves against the working directory, once, at load.
    let c = parse(text, Path::new("splice-dr.toml")).expect("parses");
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(c.daemon.state_dir, cwd.join("state"));
    assert_eq!(c.source, Path::new("splice-dr.toml"));
}

#[test]
fn socket_path_too_long() {
    let long = format!("/run/{}/s.sock", "d".repeat(120));
    let text = format!("[daemon]\nsocket = \"{long}\"\n{HEAD}{}", pg_node("a"));
    let e = parse_err(&text);
    assert_at(&e, 2, 10, "daemon.socket");
}

#[test]
fn load_reports_unreadable_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let e = load(&missing).expect_err("missing file");
    assert_eq!(e.line, None);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );

    let binary = dir.path().join("bin.toml");
    std::fs::write(&binary, b"[daemon]\nx = \"\xff\"\n").expect("write");
    let e = load(&binary).expect_err("not utf-8");
    assert_eq!((e.line, e.col), (Some(2), Some(6)), "{e}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, MINIMAL_EXAMPLE).expect("write");
    let c = load(&good).expect("loads");
    assert_eq!(c.source, good);
}

#[test]
fn error_display_without_position() {
    let e = ConfigError::new(Path::new("/x.toml"), "boom");
    assert_eq!(e.to_string(), "/x.toml: boom");
    let e = e.with_key(&KeyPath::root().key("node").index(2).key("a.b"));
    assert_eq!(e.to_string(), "/x.toml: boom (key `node[2].\"a.b\"`)");
}

mod watching {
    use super::*;
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(5);

    /// Writes `text` the way editors save: to a temporary file, then renamed over `path`.
    fn save_by_rename(path: &Path, text: &str) {
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).expect("write tmp");
        std::fs::rename(&tmp, path).expect("rename");
    }

    async fn next(
        rx: &mut mpsc::Receiver<Result<Config, ConfigError>>,
    ) -> Result<Config, ConfigError> {
        timeout(WAIT, rx.recv())
            .await
            .expect("a reload within 5 s")
            .expect("channel open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reloads_on_change_and_reports_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Another file in the same directory must not trigger reloads.
        let other = dir.path().join("pg-password");
        let path = dir.path().join("splice-dr.toml");
        let (tx, mut rx) = mpsc::channel(8);
        let _watcher = watch(&path, tx).expect("watch");

        // 1. A valid file appears.
        std::fs::write(&path, MINIMAL_EXAMPLE).expect("write");
        let first = next(&mut rx).await.expect("valid config");
        assert_eq!(first.repository.max_age, DEFAULT_MAX_AGE);

        // Unrelated files are ignored.
        std::fs::write(&other, "secret").expect("write other");

        // 2. An editor saves a modified file by rename.
        let changed = MINIMAL_EXAMPLE.replace(
            "path = \"/var/backups/splice-dr\"",
            "path = \"/var/backups/splice-dr\"\nmax_age = \"7d\"",
        );
        save_by_rename(&path, &changed);
        let second = next(&mut rx).await.expect("changed config");
        assert_eq!(second.repository.max_age, Duration::from_secs(7 * 86_400));

        // 3. A broken edit is reported with its line, not applied.
        save_by_rename(
            &path,
            &changed.replace("max_age = \"7d\"", "max_age = \"7 fortnights\""),
        );
        let third = next(&mut rx).await.expect_err("invalid config");
        assert_eq!(third.line, Some(6), "{third}");
        assert_eq!(third.key.as_deref(), Some("repository.max_age"), "{third}");

        // Nothing else is pending (reading the file must not retrigger a reload).
        let quiet = timeout(Duration::from_millis(800), rx.recv()).await;
        assert!(quiet.is_err(), "unexpected extra reload: {quiet:?}");
    }
}

fn offsite(table: &str) -> String {
    format!(
        "{HEAD}\n[[repository.offsite]]\n{table}\n{}",
        pg_node("validator-1")
    )
}

#[test]
fn offsite_repositories_parse_with_defaults_and_resolved_paths() {
    let text = offsite(
        r#"name = "s3-eu"
kind = "s3"
bucket = "splice-dr"
prefix = "prod/v1"
path_style = true
primary = true
access_key_id_file = "s3-key-id"
secret_access_key_file = "s3-secret"
encrypt_to = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
identity_file = "offsite.key"

[repository.offsite.retention]
keep_daily = 14
keep_weekly = 8

[[repository.offsite]]
name = "nfs"
kind = "directory"
path = "/mnt/nfs/splice-dr"
"#,
    );
    let c = parse(&text, &origin()).expect("parses");
    let o = &c.repository.offsite;
    assert_eq!(o.len(), 2);
    assert_eq!(o[0].region, "us-east-1");
    assert_eq!(o[0].location(), "s3://splice-dr/prod/v1");
    assert_eq!(
        o[0].identity_file.as_deref(),
        Some(Path::new("/etc/splice-dr/offsite.key"))
    );
    assert_eq!(o[0].retention.as_ref().and_then(|r| r.keep_weekly), Some(8));
    assert_eq!(o[1].kind, OffsiteKind::Directory);
}

#[test]
fn offsite_repository_errors_name_the_key() {
    let e = parse_err(&offsite("name = \"a\"\nkind = \"s3\"\n"));
    assert_eq!(e.key.as_deref(), Some("repository.offsite[0].kind"), "{e}");
    assert!(e.to_string().contains("needs `bucket`"), "{e}");

    let e = parse_err(&offsite(
        "name = \"a\"\nkind = \"directory\"\npath = \"/var/backups/splice-dr/x\"\n",
    ));
    assert_eq!(e.key.as_deref(), Some("repository.offsite[0].path"), "{e}");
    assert!(e.to_string().contains("overlaps"), "{e}");

    let e = parse_err(&offsite(
        "name = \"a\"\nkind = \"directory\"\npath = \"/mnt/x\"\nbucket = \"b\"\n",
    ));
    assert_eq!(
        e.key.as_deref(),
        Some("repository.offsite[0].bucket"),
        "{e}"
    );

    let e = parse_err(&offsite(
        "name = \"a\"\nkind = \"s3\"\nbucket = \"b\"\nencrypt_to = [\"age1nope\"]\nidentity_file = \"k\"\n",
    ));
    assert_eq!(
        e.key.as_deref(),
        Some("repository.offsite[0].encrypt_to[0]"),
        "{e}"
    );

    let e = parse_err(&offsite(
        "name = \"a\"\nkind = \"s3\"\nbucket = \"b\"\nencrypt_to = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n",
    ));
    assert!(e.to_string().contains("identity_file"), "{e}");

    let e = parse_err(&offsite(
        "name = \"a\"\nkind = \"s3\"\nbucket = \"b\"\n[repository.offsite.retention]\nkeep_last = 0\n",
    ));
    assert_eq!(
        e.key.as_deref(),
        Some("repository.offsite[0].retention.keep_last"),
        "{e}"
    );

    let e = parse_err(&offsite(
        "name = \"local\"\nkind = \"s3\"\nbucket = \"b\"\n",
    ));
    assert!(e.to_string().contains("already used"), "{e}");

    let e = parse_err(&offsite("name = \"a\"\nkind = \"ftp\"\n"));
    assert!(e.to_string().contains("ftp"), "{e}");

    // A session token belongs to a key pair; S3 keys are refused on a directory.
    let e = parse_err(&offsite(
        "name = \"a\"\nkind = \"s3\"\nbucket = \"b\"\nsession_token_file = \"t\"\n",
    ));
    assert_eq!(
        e.key.as_deref(),
        Some("repository.offsite[0].session_token_file"),
        "{e}"
    );
    let e = parse_err(&offsite(
        "name = \"a\"\nkind = \"directory\"\npath = \"/mnt/x\"\nca_file = \"ca.pem\"\n",
    ));
    assert_eq!(
        e.key.as_deref(),
        Some("repository.offsite[0].ca_file"),
        "{e}"
    );
}

#[test]
fn offsite_session_token_and_ca_files_resolve_against_the_config_directory() {
    let c = parse(
        &offsite(
            "name = \"a\"\nkind = \"s3\"\nbucket = \"b\"\naccess_key_id_file = \"id\"\n\
             secret_access_key_file = \"secret\"\nsession_token_file = \"token\"\nca_file = \"ca.pem\"\n",
        ),
        &origin(),
    )
    .expect("parses");
    let o = &c.repository.offsite[0];
    assert_eq!(
        o.session_token_file.as_deref(),
        Some(Path::new("/etc/splice-dr/token"))
    );
    assert_eq!(
        o.ca_file.as_deref(),
        Some(Path::new("/etc/splice-dr/ca.pem"))
    );
}

/// The config shipped in deploy/k8s/configmap.yaml (indented under `splice-dr.toml: |`).
fn k8s_configmap_toml() -> String {
    const MANIFEST: &str = include_str!("../../../deploy/k8s/configmap.yaml");
    let body = MANIFEST
        .split("splice-dr.toml: |\n")
        .nth(1)
        .expect("the ConfigMap holds splice-dr.toml");
    body.lines()
        .take_while(|l| !l.starts_with("---"))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_k8s_deployment_config_parses_with_the_helm_names_and_leader_election() {
    let c = parse(&k8s_configmap_toml(), &origin()).expect("deploy/k8s config parses");
    let n = &c.nodes[0];
    assert_eq!(n.backend, BackendKind::K8s);
    let k = n.k8s.as_ref().expect("[node.k8s]");
    assert_eq!(k.namespace, "validator");
    assert_eq!(k.workloads.validator, "validator-app");
    assert_eq!(k.validator_db, "cantonnet_validator");
    assert!(k.kubeconfig.is_none(), "in-cluster: the service account");
    let le = c.daemon.leader_election.as_ref().expect("leader election");
    assert_eq!(le.lease, "splice-dr");
    assert_eq!(le.lease_duration, Duration::from_secs(15));
    // Unknown keys in [node.k8s] and [daemon.leader_election] are errors.
    let text = k8s_configmap_toml();
    let e = parse_err(&text.replace("[node.k8s]\n", "[node.k8s]\nnamespce = \"x\"\n"));
    assert!(e.to_string().contains("namespce"), "{e}");
    let e = parse_err(&text.replace(
        "lease = \"splice-dr\"\n",
        "lease = \"splice-dr\"\nrenew_interval = \"20s\"\n",
    ));
    assert!(e.to_string().contains("renew_interval"), "{e}");
}

/// A release the flows upgrade must pin its chart version: `helm upgrade` without
/// `--version` would install the newest chart on a restart or a re-onboard.
#[test]
fn a_helm_chart_without_a_version_is_a_config_error_at_the_chart_line() {
    let text = k8s_configmap_toml();
    let unpinned = text.replacen("version = \"0.4.15\"\n", "", 1);
    assert_ne!(text, unpinned);
    let e = parse_err(&unpinned);
    let line = unpinned
        .lines()
        .position(|l| l.contains("helm/splice-validator"))
        .expect("the validator chart line")
        + 1;
    assert_at(&e, line, 9, "node[0].k8s.releases.validator.chart");
    let msg = e.to_string();
    assert!(
        msg.contains("release `validator` has a chart but no version")
            && msg.contains("version = ")
            && msg.contains("helm list -n validator"),
        "{msg}"
    );
    let e = parse_err(&text.replacen("version = \"0.4.15\"", "version = \" \"", 2));
    assert!(
        e.to_string().contains("version is empty")
            && e.key.as_deref() == Some("node[0].k8s.releases.validator.version"),
        "{e}"
    );
    // No chart at all is valid (backups and restores run no helm): the flows that would
    // refuse up front instead (see the k8s backend's `redeploy_unavailable`).
    let chartless: String = text
        .lines()
        .filter(|l| !l.starts_with("chart = ") && !l.starts_with("version = "))
        .collect::<Vec<_>>()
        .join("\n");
    let c = parse(&chartless, &origin()).expect("a node without charts parses");
    assert!(c.nodes[0]
        .k8s
        .as_ref()
        .is_some_and(|k| k.missing_chart().is_some()));
}

#[test]
fn socket_roles_input_dirs_and_http_limits_parse_and_zero_limits_are_refused() {
    let text = format!(
        "[daemon]\noperator_uids = [1001]\nviewer_uids = [1002]\nallowed_uids = [1003]\ninput_dirs = [\"inputs\"]\nhttp_max_connections = 8\nhttp_header_timeout = \"2s\"\n\n{HEAD}{}",
        pg_node("n1")
    );
    let c = parse(&text, &origin()).unwrap();
    assert_eq!(c.daemon.operator_uids, vec![1001]);
    assert_eq!(c.daemon.viewer_uids, vec![1002]);
    assert_eq!(
        c.daemon.input_dirs,
        vec![PathBuf::from("/etc/splice-dr/inputs")]
    );
    assert_eq!(c.daemon.http_max_connections, 8);
    assert_eq!(c.daemon.http_exchange_timeout, Duration::from_secs(30));
    let access = crate::socket::server::Access::from_config(&c.daemon);
    assert_eq!(
        access.operators,
        vec![1001, 1003],
        "allowed_uids is an operator alias"
    );
    let e = parse_err(&format!(
        "[daemon]\nhttp_max_connections = 0\n\n{HEAD}{}",
        pg_node("n1")
    ));
    assert!(e.to_string().contains("http_max_connections"), "{e}");
}

#[test]
fn a_trusted_key_that_is_not_a_public_key_is_located() {
    let text = format!("{HEAD}trusted_keys = [\"ed25519:zz\"]\n{}", pg_node("v1"));
    let e = parse_err(&text);
    assert_eq!(e.key.as_deref(), Some("repository.trusted_keys[0]"), "{e}");
    assert!(e.to_string().contains("keys public"), "{e}");
}

#[test]
fn a_signing_key_inside_any_repository_is_refused() {
    let offsite = r#"
[[repository.offsite]]
name = "nas"
kind = "directory"
path = "/mnt/nas/splice"
"#;
    let text = format!(
        "{HEAD}signing_key = \"/mnt/nas/splice/../splice/keys/k.key\"\n{offsite}{}",
        pg_node("n1")
    );
    let e = parse_err(&text);
    assert!(
        e.to_string()
            .contains("inside the backup repository /mnt/nas/splice"),
        "{e}"
    );
    assert_eq!(e.key.as_deref(), Some("repository.signing_key"), "{e}");
    let text = format!(
        "[daemon]\nstate_dir = \"/var/backups/splice-dr/state\"\n{HEAD}{}",
        pg_node("n1")
    );
    let e = parse_err(&text);
    assert!(
        e.to_string().contains("default state_dir/keys/signing.key"),
        "{e}"
    );
    let text = format!(
        "{HEAD}signing_key = \"/etc/splice-dr/k.key\"\n{offsite}{}",
        pg_node("n1")
    );
    parse(&text, &origin()).expect("a key outside every repository");
}

#[test]
fn journal_retention_defaults_parses_and_refuses_zero() {
    let c = parse(&format!("{HEAD}{}", pg_node("a")), &origin()).unwrap();
    assert_eq!(c.journal.keep_runs, 1000);
    assert_eq!(c.journal.keep_for, None);
    let text = format!(
        "[journal]\nkeep_runs = 50\nkeep_for = \"90d\"\n{HEAD}{}",
        pg_node("a")
    );
    let c = parse(&text, &origin()).unwrap();
    assert_eq!(c.journal.keep_runs, 50);
    assert_eq!(c.journal.keep_for, Some(Duration::from_secs(90 * 86_400)));

    let e = parse_err(&format!("[journal]\nkeep_runs = 0\n{HEAD}{}", pg_node("a")));
    assert_at(&e, 2, 13, "journal.keep_runs");
    let e = parse_err(&format!(
        "[journal]\nkeep_for = \"0s\"\n{HEAD}{}",
        pg_node("a")
    ));
    assert_eq!(e.key.as_deref(), Some("journal.keep_for"), "{e}");
    let e = parse_err(&format!("[journal]\nkeep = 3\n{HEAD}{}", pg_node("a")));
    assert!(e.message.contains("keep"), "{e}");
}

/// `health_ca_file` is resolved against the config's directory and read at load: a
/// missing file is an error at that key; a real CA file loads.
#[test]
fn health_ca_file_is_resolved_and_read_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = dir.path().join("splice-dr.toml");
    let text = format!("{HEAD}{}", pg_node("a"))
        + "\n[node.postgres.components.validator]\nhealth_url = \"https://127.0.0.1:5003/readyz\"\nhealth_ca_file = \"health-ca.pem\"\n";
    let e = parse(&text, &origin).expect_err("missing CA file");
    assert_at(
        &e,
        14,
        18,
        "node[0].postgres.components.validator.health_ca_file",
    );
    assert!(
        e.message.contains("cannot read") && e.message.contains("health-ca.pem"),
        "{e}"
    );

    // Any real PEM file of CAs does: the system's bundle.
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        dir.path().join("health-ca.pem"),
    )
    .expect("copy the system CA bundle");
    let c = parse(&text, &origin).expect("CA file loads");
    let component = &c.nodes[0].postgres.as_ref().expect("postgres").components["validator"];
    assert_eq!(
        component.health_ca_file.as_deref(),
        Some(dir.path().join("health-ca.pem").as_path())
    );

    let without_url = format!("{HEAD}{}", pg_node("a"))
        + "\n[node.postgres.components.validator]\nhealth_ca_file = \"health-ca.pem\"\n";
    let e = parse(&without_url, &origin).expect_err("no health_url");
    assert_eq!(
        e.key.as_deref(),
        Some("node[0].postgres.components.validator.health_ca_file")
    );
}

/// The URL's TLS settings are libpq's (`verify-full` is not the driver's) and their files
/// are read at load: a missing `sslrootcert` is an error at `url` saying which.
#[test]
fn postgres_url_tls_settings_are_checked_at_load() {
    let node = |params: &str| {
        format!("{HEAD}{}", pg_node("a")).replace(
            "127.0.0.1:5432/postgres\"",
            &format!("127.0.0.1:5432/postgres?{params}\""),
        )
    };
    let e = parse_err(&node(
        "sslmode=verify-full&sslrootcert=/nonexistent/pg-ca.pem",
    ));
    assert_eq!(e.key.as_deref(), Some("node[0].postgres.url"), "{e}");
    assert!(
        e.message.contains("sslrootcert") && e.message.contains("/nonexistent/pg-ca.pem"),
        "{e}"
    );
    let e = parse_err(&node("sslmode=verify-full"));
    assert!(e.message.contains("needs sslrootcert"), "{e}");
    let e = parse_err(&node("sslmode=verify"));
    assert!(e.message.contains("verify-ca"), "{e}");
    parse(
        &node("sslmode=verify-ca&sslrootcert=/etc/ssl/certs/ca-certificates.crt"),
        &origin(),
    )
    .expect("a readable CA file loads");
}

/// `backup_kind` defaults to logical; physical on bare Postgres needs the keys a physical
/// restore uses and the acknowledgement, each refusal located where the operator decides.
#[test]
fn physical_backups_need_the_servers_keys_and_the_acknowledgement() {
    use splice_dr_plugin_api::BackupKind;
    let c = parse(&format!("{HEAD}{}", pg_node("a")), &origin()).expect("parses");
    assert_eq!(c.nodes[0].backup_kind, BackupKind::Logical);

    let physical = |extra: &str| {
        format!("{HEAD}{}{extra}", pg_node("a")).replace(
            "migration_id = 0\n",
            "migration_id = 0\nbackup_kind = \"physical\"\n",
        )
    };
    let keys = "data_dir = \"/var/lib/postgresql/15/main\"\n\
                server_stop_command = \"systemctl stop postgresql@15-main\"\n\
                server_start_command = \"systemctl start postgresql@15-main\"\n";
    let c = parse(
        &physical(&format!("{keys}physical_replaces_cluster = true\n")),
        &origin(),
    )
    .expect("complete");
    assert_eq!(c.nodes[0].backup_kind, BackupKind::Physical);

    // Nothing set: the `backup_kind` line, naming every missing key.
    let e = parse_err(&physical(""));
    assert_at(&e, 8, 15, "node[0].backup_kind");
    for key in [
        "data_dir",
        "server_stop_command",
        "server_start_command",
        "physical_replaces_cluster = true",
    ] {
        assert!(e.to_string().contains(key), "{e}");
    }
    // The acknowledgement written as false: that line.
    let e = parse_err(&physical(&format!(
        "{keys}physical_replaces_cluster = false\n"
    )));
    assert_at(&e, 15, 29, "node[0].postgres.physical_replaces_cluster");
    assert!(e.to_string().contains("replaces the whole server"), "{e}");
    // A relative data directory is refused by the backend's own check.
    let e = parse_err(&physical(
        &format!("{keys}physical_replaces_cluster = true\n")
            .replace("/var/lib/postgresql/15/main", "pgdata"),
    ));
    assert!(e.to_string().contains("absolute"), "{e}");
}

/// Compose and k8s take logical backups only, for now: the refusal names the alternative.
#[test]
fn physical_backups_are_refused_on_compose_with_the_alternative() {
    let text = COMPOSE_EXAMPLE.replacen(
        "migration_id = ",
        "backup_kind = \"physical\"\nmigration_id = ",
        1,
    );
    let e = parse_err(&text);
    assert_eq!(e.key.as_deref(), Some("node[0].backup_kind"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains("unsupported for the compose backend yet")
            && shown.contains("backup_kind = \"logical\""),
        "{shown}"
    );
}

/// `wal_streaming` is off by default; on bare Postgres it needs the physical keys; compose
/// refuses it at its own line, naming the alternative.
#[test]
fn wal_streaming_needs_a_bare_server_with_the_physical_keys() {
    let c = parse(&format!("{HEAD}{}", pg_node("a")), &origin()).expect("parses");
    assert!(!c.nodes[0].wal_streaming);
    assert_eq!(c.nodes[0].wal_lag_alert_mb, 1024);
    let streaming = |extra: &str| {
        format!("{HEAD}{}{extra}", pg_node("a")).replace(
            "migration_id = 0\n",
            "migration_id = 0\nwal_streaming = true\nwal_lag_alert_mb = 64\n",
        )
    };
    let keys = "data_dir = \"/var/lib/postgresql/15/main\"\n\
                server_stop_command = \"systemctl stop postgresql@15-main\"\n\
                server_start_command = \"systemctl start postgresql@15-main\"\n\
                physical_replaces_cluster = true\n";
    let c = parse(&streaming(keys), &origin()).expect("complete");
    assert!(c.nodes[0].wal_streaming);
    assert_eq!(c.nodes[0].wal_lag_alert_mb, 64);
    let e = parse_err(&streaming(""));
    assert_at(&e, 8, 17, "node[0].wal_streaming");
    assert!(
        e.to_string().contains("data_dir") && e.to_string().contains("continuous WAL"),
        "{e}"
    );

    let text = COMPOSE_EXAMPLE.replacen(
        "migration_id = ",
        "wal_streaming = true\nmigration_id = ",
        1,
    );
    let e = parse_err(&text);
    assert_eq!(e.key.as_deref(), Some("node[0].wal_streaming"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains("unsupported for the compose backend") && shown.contains("[[schedule]]"),
        "{shown}"
    );
}
