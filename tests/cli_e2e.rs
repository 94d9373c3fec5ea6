//! The binary as an operator installs it: `--version` names the commit it was built from,
//! `completions` and `man` print what a shell and `man` accept, with no config file and no
//! daemon, and a running daemon exports the same build as `splice_dr_build_info`.

mod common;
#[path = "common/sim.rs"]
mod sim;

use common::*;
use std::process::{Command, Output, Stdio};

/// Runs the binary with `args` and a config path that does not exist: what must work
/// before anything is configured.
fn unconfigured(args: &[&str]) -> Output {
    Command::new(bin())
        .args(["--config", "/nonexistent/splice-dr.toml"])
        .args(args)
        .env_remove("SPLICE_DR_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The stdout of a command that must succeed.
fn stdout_of(args: &[&str]) -> String {
    let out = unconfigured(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// `(version, commit, date)` of a `splice-dr 0.1.0 (3f2a1bc 2026-12-06)` line.
fn parse_version(line: &str) -> (String, String, String) {
    let rest = line.trim().strip_prefix("splice-dr ").expect(line);
    let (version, inner) = rest.split_once(" (").expect(line);
    let (commit, date) = inner
        .strip_suffix(')')
        .expect(line)
        .split_once(' ')
        .expect(line);
    (version.into(), commit.into(), date.into())
}

/// `git rev-parse --short HEAD` of the source tree, when it is a git checkout.
fn source_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `program` can be run here.
fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn version_names_the_crate_version_the_source_commit_and_the_build_date() {
    let line = stdout_of(&["--version"]);
    let (version, commit, date) = parse_version(&line);
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "{line}");
    let hash = commit.strip_suffix("-dirty").unwrap_or(&commit);
    match source_commit() {
        Some(head) => assert_eq!(hash, head, "{line}: built from another commit?"),
        None => assert!(
            hash == "unknown" || hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{line}"
        ),
    }
    let parts: Vec<usize> = date.split('-').map(str::len).collect();
    assert_eq!(parts, [4, 2, 2], "{line}: date is not YYYY-MM-DD");
    assert!(
        date.chars().all(|c| c.is_ascii_digit() || c == '-'),
        "{line}"
    );
}

#[test]
fn bash_completion_is_valid_bash_and_completes_subcommands() {
    let script = stdout_of(&["completions", "bash"]);
    assert!(
        script.contains("restore") && script.contains("backups"),
        "{script}"
    );
    assert_shell_accepts("bash", "-n", &script);
}

/// `shell` parses `script` without running it (`flag`: its no-execute option).
fn assert_shell_accepts(shell: &str, flag: &str, script: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), script).unwrap();
    let check = Command::new(shell)
        .arg(flag)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{shell} {flag}: {}", text(&check));
}

#[test]
fn zsh_and_fish_completions_complete_subcommands() {
    // Neither shell is needed to run the suite: their syntax is checked where installed.
    for (shell, flag) in [("zsh", "-n"), ("fish", "--no-execute")] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains("restore"), "{shell}: {script}");
        if installed(shell) {
            assert_shell_accepts(shell, flag, &script);
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    assert_eq!(
        unconfigured(&["completions", "tcsh"]).status.code(),
        Some(2)
    );
}

/// The man page as a reader sees it: rendered by `man`, else `groff`, else the roff
/// source itself (checked for its title line).
fn rendered_man_page(roff: &str) -> String {
    let render = |program: &str, args: &[&str]| {
        let mut child = Command::new(program)
            .args(args)
            .env("MANWIDTH", "100")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), roff.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{program}: {}", text(&out));
        // Overstrike bold and underline (`X\bX`, `_\bX`) read as the plain letter.
        let page = String::from_utf8_lossy(&out.stdout).to_string();
        let mut plain = String::new();
        for c in page.chars() {
            if c == '\u{8}' {
                plain.pop();
            } else {
                plain.push(c);
            }
        }
        plain
    };
    if installed("man") {
        render("man", &["-l", "-"])
    } else if installed("groff") {
        render("groff", &["-man", "-Tutf8"])
    } else {
        assert!(
            roff.lines().any(|l| l.starts_with(".TH SPLICE-DR 1")),
            "{roff}"
        );
        roff.to_string()
    }
}

#[test]
fn the_man_page_renders_and_lists_the_subcommands() {
    let roff = stdout_of(&["man"]);
    assert!(
        roff.lines().any(|l| l.starts_with(".TH SPLICE-DR 1")),
        "{roff}"
    );
    let page = rendered_man_page(&roff);
    for expected in [
        "SPLICE-DR(1)",
        "SUBCOMMANDS",
        "splice-dr-restore",
        "splice-dr-completions",
        "Exit codes",
    ] {
        assert!(page.contains(expected), "{expected} missing in:\n{page}");
    }
}

#[test]
fn help_says_where_to_install_completions_and_the_man_page() {
    let help = stdout_of(&["completions", "--help"]);
    assert!(
        help.contains("splice-dr completions bash > /etc/bash_completion.d/splice-dr"),
        "{help}"
    );
    let help = stdout_of(&["man", "--help"]);
    assert!(
        help.contains("splice-dr man > /usr/share/man/man1/splice-dr.1"),
        "{help}"
    );
}

#[test]
fn a_running_daemon_exports_its_build_as_build_info() {
    let (_, commit, _) = parse_version(&stdout_of(&["--version"]));
    let dbs = NodeDbs::create("sdr_cli_build", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let port = sim::closed_port();
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&site.config, cfg).unwrap();
    let daemon = site.start_daemon();
    let scrape = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let expected = format!(
        "splice_dr_build_info{{version=\"{}\",commit=\"{commit}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        scrape.lines().any(|l| l == expected),
        "{expected} missing in:\n{scrape}"
    );
    assert!(
        scrape.contains("# TYPE splice_dr_build_info gauge"),
        "{scrape}"
    );
    stop(daemon);
}
