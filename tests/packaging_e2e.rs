//! The package and the image as an operator gets them: the .deb built by
//! deploy/deb/build.sh installed with `dpkg -i` in a clean Debian bookworm container (the
//! locally built base of the compose tests, no network), its unit's own commands run the
//! way systemd would run them, and the daemon image built from the same .deb.
//!
//! They package the production binary (built without `demo`) that tests/run.sh builds
//! into `$CARGO_TARGET_DIR/package/splice-dr` (or `SPLICE_DR_PACKAGE_BIN`), and refuse one
//! built from other sources than the binary the other tests run. Skipped loudly only when
//! no Docker engine answers.

mod common;
#[path = "common/compose.rs"]
mod compose;

use common::text;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The Debian base the compose tests build (tests/images/build.sh).
const BASE: &str = "splice-dr-test/pg-rootfs:15";

/// The production binary to package, checked to come from the same sources as the binary
/// under test (same `--version` line: version, commit, build date).
fn package_bin() -> PathBuf {
    let bin = std::env::var_os("SPLICE_DR_PACKAGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tested = common::bin();
            let target = tested.parent().and_then(Path::parent).expect("target dir");
            target.join("package/splice-dr")
        });
    assert!(
        bin.is_file(),
        "{} is missing: tests/run.sh builds it (cargo build -p splice-dr --bin splice-dr, \
         copied there before the demo build), or set SPLICE_DR_PACKAGE_BIN",
        bin.display()
    );
    let version = |b: &Path| succeed(Command::new(b).arg("--version"), &b.display().to_string());
    assert_eq!(
        version(&bin),
        version(&common::bin()),
        "{} is not built from the sources under test: rerun tests/run.sh",
        bin.display()
    );
    bin
}

/// Runs `cmd`, which must succeed (`what` and the output are shown when not); its stdout.
fn succeed(cmd: &mut Command, what: &str) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{what}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the .deb into `dir` with deploy/deb/build.sh; its path.
fn build_deb(dir: &Path) -> PathBuf {
    let printed = succeed(
        Command::new("bash")
            .arg(compose::root().join("deploy/deb/build.sh"))
            .arg(package_bin())
            .arg(dir),
        "deploy/deb/build.sh",
    );
    let deb = PathBuf::from(printed.trim());
    assert!(deb.is_file(), "build.sh printed {}", deb.display());
    deb
}

/// The Debian base image, built (or found cached) the way the compose tests do.
fn ensure_base() {
    compose::ensure_images();
    let ok = Command::new("docker")
        .args(["image", "inspect", BASE])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "{BASE} is missing after tests/images/build.sh");
}

/// The .deb in a temporary directory (kept while the guard lives), and the base image
/// to install it on.
fn deb_on_base() -> (tempfile::TempDir, PathBuf) {
    ensure_base();
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path());
    (tmp, deb)
}

/// A container (and optionally an image) removed on drop, whatever the test's outcome.
struct Docker {
    container: Option<String>,
    image: Option<String>,
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Some(c) = &self.container {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        if let Some(i) = &self.image {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

/// `docker exec CONTAINER sh -c SCRIPT` as root.
fn exec(container: &str, script: &str) -> Output {
    Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Like [`exec`], for a script that must succeed; its stdout.
fn exec_ok(container: &str, script: &str) -> String {
    let out = exec(container, script);
    assert!(out.status.success(), "{script}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The `[Service]`/`[Unit]` settings of a unit file: key → every value it is given.
fn unit_settings(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';', '[']) {
            continue;
        }
        let (k, v) = line.split_once('=').expect(line);
        map.entry(k.trim().into())
            .or_default()
            .push(v.trim().into());
    }
    map
}

/// The one value of `key`; fails the test when the unit sets it more than once or never.
fn one<'a>(settings: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match settings.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("the unit sets {key} {other:?}, expected exactly once"),
    }
}

/// Runs a unit's command line (no quoting in ours: checked) as `user` with no capability
/// and no new privileges, as the unit's User=, CapabilityBoundingSet= and NoNewPrivileges=
/// make systemd run it.
fn as_unit_user(user: &str, command_line: &str) -> String {
    assert!(
        !command_line.contains(['"', '\'', '$', '%']),
        "the test runs unit command lines without quoting or specifiers: {command_line}"
    );
    format!(
        "umask 0077; exec setpriv --reuid={user} --regid={user} --init-groups \
         --no-new-privs --bounding-set=-all --inh-caps=-all -- {command_line}"
    )
}

#[test]
fn the_deb_installs_and_the_units_commands_run_as_its_user() {
    require_docker!();
    let (_tmp, deb) = deb_on_base();
    let name = format!("splice-dr-pkgtest-{}", std::process::id());
    let guard = Docker {
        container: Some(name.clone()),
        image: None,
    };
    // No network: the package must install from the .deb alone. Never started as anything
    // but a sleeping placeholder; everything runs through `docker exec`.
    let out = Command::new("docker")
        .args(["run", "-d", "--network", "none", "--name", &name])
        .arg("-v")
        .arg(format!("{}:/tmp/splice-dr.deb:ro", deb.display()))
        .args([BASE, "sleep", "infinity"])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker run: {}", text(&out));
    let c = guard.container.as_deref().unwrap();

    // The base image is minimized (dpkg drops docs and man pages): a host is not.
    exec_ok(
        c,
        "grep -l path-exclude /etc/dpkg/dpkg.cfg.d/* | xargs -r rm -f",
    );
    assert!(
        exec(c, "getent passwd splice-dr").status.code() == Some(2),
        "the base image must not have the user yet"
    );
    exec_ok(c, "dpkg -i /tmp/splice-dr.deb");

    // The dedicated system user, with no login and its state directory.
    let passwd = exec_ok(c, "getent passwd splice-dr");
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "not a system user: {passwd}");
    assert_eq!(fields[5], "/var/lib/splice-dr", "{passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    assert_eq!(
        exec_ok(
            c,
            "stat -c '%U %a' /var/lib/splice-dr /var/backups/splice-dr /etc/splice-dr \
             /etc/splice-dr/splice-dr.toml; stat -c '%G' /etc/splice-dr/splice-dr.toml"
        ),
        "splice-dr 700\nsplice-dr 700\nroot 750\nroot 640\nsplice-dr\n"
    );
    // The config is a conffile: dpkg keeps an operator's edits on upgrade.
    assert!(
        exec_ok(c, "dpkg-query -W -f '${Conffiles}' splice-dr")
            .contains("/etc/splice-dr/splice-dr.toml"),
        "the config is not a conffile"
    );

    // The binary is the one packaged, and names its commit.
    let host_version = succeed(Command::new(package_bin()).arg("--version"), "--version");
    let version = exec_ok(c, "splice-dr --version");
    assert_eq!(version, host_version);
    let commit = version.split(['(', ' ']).nth(3).unwrap_or_default();
    assert!(
        commit.len() >= 7 && commit != "unknown",
        "--version names no commit: {version}"
    );
    assert_eq!(exec_ok(c, "command -v splice-dr"), "/usr/bin/splice-dr\n");
    // A production build: no simulator in an installed binary.
    let demo = exec(c, "splice-dr demo");
    assert_eq!(demo.status.code(), Some(2), "{}", text(&demo));
    assert!(
        String::from_utf8_lossy(&demo.stderr).contains("built without the demo"),
        "{}",
        text(&demo)
    );

    // The man page (a valid gzip of roff naming the commands) and the completions, where
    // Debian's man, bash-completion, zsh and fish look.
    let man = exec_ok(c, "zcat /usr/share/man/man1/splice-dr.1.gz");
    assert!(
        man.contains(".TH SPLICE-DR 1") && man.contains("restore"),
        "{man}"
    );
    let completions = exec_ok(
        c,
        "cat /usr/share/bash-completion/completions/splice-dr; \
         cat /usr/share/zsh/vendor-completions/_splice-dr; \
         cat /usr/share/fish/vendor_completions.d/splice-dr.fish",
    );
    assert!(
        completions.lines().any(|l| {
            let l = l.trim();
            l.starts_with("complete -F ") && l.ends_with(" splice-dr")
        }),
        "bash"
    );
    assert!(completions.contains("#compdef splice-dr"), "zsh");
    assert!(completions.contains("complete -c splice-dr"), "fish");
    exec_ok(
        c,
        "ls /usr/share/doc/splice-dr/examples/compose.toml \
         /usr/share/doc/splice-dr/examples/compose-docker-group.conf \
         /usr/share/doc/splice-dr/docs/CONFIG.md /usr/share/doc/splice-dr/copyright",
    );

    // The unit as installed: hardened, documented by files the package installs.
    let unit = unit_settings(&exec_ok(c, "cat /usr/lib/systemd/system/splice-dr.service"));
    let user = one(&unit, "User");
    assert_eq!(user, "splice-dr");
    for (key, value) in [
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("PrivateTmp", "true"),
        ("PrivateDevices", "true"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "true"),
        ("SystemCallArchitectures", "native"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ] {
        assert_eq!(one(&unit, key), value, "{key}");
    }
    assert!(
        !unit.contains_key("SupplementaryGroups"),
        "docker only in a drop-in"
    );
    let docs = one(&unit, "Documentation");
    assert!(docs.contains("man:splice-dr(1)"), "{docs}");
    for file in docs
        .split_whitespace()
        .filter_map(|d| d.strip_prefix("file://"))
    {
        exec_ok(c, &format!("test -s {file}"));
    }
    // What systemd does before ExecStartPre: the runtime and state directories owned by
    // User= with their modes. The backup repository (ReadWritePaths) the package made.
    for (dir, mode, base) in [
        ("RuntimeDirectory", "RuntimeDirectoryMode", "/run"),
        ("StateDirectory", "StateDirectoryMode", "/var/lib"),
    ] {
        exec_ok(
            c,
            &format!(
                "install -d -o {user} -g {user} -m {} {base}/{}",
                one(&unit, mode),
                one(&unit, dir)
            ),
        );
    }
    for path in one(&unit, "ReadWritePaths").split_whitespace() {
        assert_eq!(
            exec_ok(c, &format!("stat -c %U {path}")),
            format!("{user}\n")
        );
    }

    // ExecStartPre: `check` of the shipped config, as the unit's user.
    let check = exec(c, &as_unit_user(user, one(&unit, "ExecStartPre")));
    assert_eq!(check.status.code(), Some(0), "check: {}", text(&check));

    // ExecStart: the daemon answers `ping` on its socket, then SIGTERM stops it (exit 0).
    let mut daemon = DaemonInContainer::start(c, &as_unit_user(user, one(&unit, "ExecStart")));
    let mut answered = None;
    common::wait_for(Duration::from_secs(60), "the daemon to answer ping", || {
        daemon.assert_running();
        let ping = exec(c, "splice-dr ping");
        let ok = ping.status.success();
        answered = Some(ping);
        ok
    });
    let ping = answered.unwrap();
    assert!(
        String::from_utf8_lossy(&ping.stdout).contains(version.split_whitespace().nth(1).unwrap()),
        "ping names the version: {}",
        text(&ping)
    );
    // The socket belongs to the unit's user, mode 0600.
    assert_eq!(
        exec_ok(c, "stat -c '%U %a' /run/splice-dr/splice-dr.sock"),
        format!("{user} 600\n")
    );
    let status = daemon.stop();
    assert_eq!(status, "exit=0", "the daemon's exit on SIGTERM");
    drop(guard);
}

/// The daemon started inside the container by a shell that records its pid and reports
/// its exit status (`exit=N`) on stdout, so the test can signal it and see how it ended.
struct DaemonInContainer {
    container: String,
    child: Child,
}

impl DaemonInContainer {
    fn start(container: &str, script: &str) -> Self {
        let wrapper = format!("({script}) & echo $! >/tmp/daemon.pid; wait $!; echo exit=$?",);
        let child = Command::new("docker")
            .args(["exec", container, "sh", "-c", &wrapper])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        DaemonInContainer {
            container: container.into(),
            child,
        }
    }

    /// Fails the test with the daemon's output when it has already exited.
    fn assert_running(&mut self) {
        if self.child.try_wait().unwrap().is_some() {
            let out = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
                .wait_with_output()
                .unwrap();
            panic!("the daemon exited before answering: {}", text(&out));
        }
    }

    /// Sends SIGTERM to the daemon; what the wrapper reported (`exit=N`).
    fn stop(self) -> String {
        exec_ok(&self.container, "kill -TERM \"$(cat /tmp/daemon.pid)\"");
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

#[test]
fn the_image_is_built_from_the_deb_and_runs_as_10001() {
    require_docker!();
    let (_tmp, deb) = deb_on_base();
    let tag = format!("splice-dr-test/daemon:pkgtest-{}", std::process::id());
    let guard = Docker {
        container: None,
        image: Some(tag.clone()),
    };
    let printed = succeed(
        Command::new("bash")
            .arg(compose::root().join("deploy/image/build.sh"))
            .arg(&deb)
            .arg(&tag),
        "deploy/image/build.sh",
    );
    assert_eq!(printed.trim(), tag);

    let run = |args: &[&str]| {
        Command::new("docker")
            .args(["run", "--rm", "--network", "none"])
            .args(args)
            .output()
            .unwrap()
    };
    // The entrypoint is the packaged binary: `--version` names the same build.
    let version = run(&[&tag, "--version"]);
    assert!(version.status.success(), "{}", text(&version));
    let host = succeed(Command::new(package_bin()).arg("--version"), "--version");
    assert_eq!(String::from_utf8_lossy(&version.stdout), host);
    // The revision label is the commit `--version` names.
    let revision = succeed(
        Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{ index .Config.Labels \"org.opencontainers.image.revision\" }}",
            &tag,
        ]),
        "docker image inspect",
    );
    assert!(
        !revision.trim().is_empty()
            && String::from_utf8_lossy(&version.stdout).contains(&format!("({} ", revision.trim())),
        "revision label {revision:?} vs {}",
        text(&version)
    );
    // Runs as 10001:10001 (deploy/k8s), which owns the state and repository directories.
    let id = run(&[
        "--entrypoint",
        "sh",
        &tag,
        "-c",
        "id -u; id -g; stat -c %u /var/lib/splice-dr /var/backups/splice-dr /run/splice-dr",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&id.stdout),
        "10001\n10001\n10001\n10001\n10001\n",
        "{}",
        text(&id)
    );
    // `check` with the config in the image (the package's), and with one mounted in.
    let check = run(&[&tag, "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let cfg_dir = tempfile::tempdir().unwrap();
    let bad = cfg_dir.path().join("splice-dr.toml");
    std::fs::write(
        &bad,
        "[repository]\npath = \"/var/backups/splice-dr\"\nbogus = 1\n",
    )
    .unwrap();
    // Readable by the image's uid 10001.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cfg_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = run(&[
        "-v",
        &format!("{}:/config:ro", cfg_dir.path().display()),
        &tag,
        "--config",
        "/config/splice-dr.toml",
        "check",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("bogus"),
        "{}",
        text(&refused)
    );
    drop(guard);
}

/// The unit as the package installs it, checked by systemd's own tools on a root made of
/// the unpacked .deb and this host's unit files: `verify` of the unit and the docker-group
/// drop-in the package ships with no warning at all (an unknown or misspelled key is only a
/// warning there), `security` rating its sandbox an overall exposure of at most 2.0 ("OK";
/// 10 is an unconfined root service), and no W+X memory in the binary that
/// `MemoryDenyWriteExecute=` would refuse.
#[test]
fn systemd_accepts_the_unit_and_rates_its_sandbox() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: apt-get install systemd (tests/setup.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path());
    let root = tmp.path().join("root");
    succeed(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        "dpkg-deb -x",
    );
    // The targets and mounts the unit orders itself after, without replacing ours.
    let units = root.join("usr/lib/systemd/system");
    succeed(
        Command::new("cp")
            .args(["-an", "/usr/lib/systemd/system/."])
            .arg(&units),
        "cp host units",
    );
    let unit = units.join("splice-dr.service");
    // The compose host's drop-in, installed as the README says: verified with the unit.
    let dropins = root.join("etc/systemd/system/splice-dr.service.d");
    std::fs::create_dir_all(&dropins).unwrap();
    std::fs::copy(
        root.join("usr/share/doc/splice-dr/examples/compose-docker-group.conf"),
        dropins.join("docker.conf"),
    )
    .unwrap();
    // By name, so that drop-ins load; --man=no: the man page is checked in the installed
    // container, where it is.
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg("splice-dr.service")
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stdout.is_empty() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    // MemoryDenyWriteExecute=: nothing the loader maps is writable and executable at once,
    // and the stack is not executable (the binary has no JIT: Rhai interprets).
    let elf = std::fs::read(root.join("usr/bin/splice-dr")).unwrap();
    for (kind, flags) in program_headers(&elf) {
        const PF_X: u32 = 1;
        const PF_W: u32 = 2;
        const PT_GNU_STACK: u32 = 0x6474_e551;
        assert!(
            flags & (PF_W | PF_X) != PF_W | PF_X,
            "a W+X segment (type {kind:#x})"
        );
        if kind == PT_GNU_STACK {
            assert_eq!(flags & PF_X, 0, "an executable stack");
        }
    }
    succeed(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=20"])
            .arg(format!("--root={}", root.display()))
            .arg(&unit),
        "systemd-analyze security rates the unit above 2.0",
    );
}

/// `(p_type, p_flags)` of every program header of a little-endian ELF64 file.
fn program_headers(elf: &[u8]) -> Vec<(u32, u32)> {
    assert!(
        elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1,
        "not a little-endian ELF64 file"
    );
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    assert!(count > 0, "no program headers");
    (0..count)
        .map(|i| {
            let h = phoff + i * size;
            (u32_at(h), u32_at(h + 4))
        })
        .collect()
}

/// The package is the production build: deploy/deb/build.sh refuses a binary built with the
/// demo's simulator (the binary these tests run, in a demo build), naming what to build.
#[cfg(feature = "demo")]
#[test]
fn the_deb_refuses_a_demo_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(compose::root().join("deploy/deb/build.sh"))
        .arg(common::bin())
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("built with the demo feature: build it without"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "a .deb was written"
    );
}
