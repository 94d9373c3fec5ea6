//! A throwaway Postgres cluster for `splice-dr demo`: `initdb` + `pg_ctl` in a temp
//! directory, listening on 127.0.0.1 and a private Unix socket directory. Postgres
//! refuses to run as root, so when we are root the cluster runs as `nobody`.

use anyhow::{bail, Context};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// uid/gid of `nobody` on Debian.
const NOBODY: u32 = 65534;

/// A running throwaway cluster; stopped and deleted on drop.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Superuser name (no password; trust authentication on loopback only).
    pub user: String,
    as_nobody: bool,
}

fn is_root() -> bool {
    crate::access::own_uid() == 0
}

/// The newest `/usr/lib/postgresql/*/bin` holding `initdb`.
fn find_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: install postgresql-15",
        )?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.stdin(Stdio::null());
        if self.as_nobody {
            c.uid(NOBODY).gid(NOBODY);
        }
        c
    }

    /// Creates and starts a cluster under `dir` (which must exist).
    pub fn start(dir: &Path) -> anyhow::Result<Cluster> {
        let bin = find_bin()?;
        let as_nobody = is_root();
        let data = dir.join("pgdata");
        let sock = dir.join("pgsock");
        let logs = dir.join("pglog");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&sock)?;
        std::fs::create_dir_all(&logs)?;
        if as_nobody {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
            for d in [&data, &sock, &logs] {
                std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY))
                    .context("chown for the demo cluster")?;
            }
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        let cluster = Cluster {
            bin,
            data: data.clone(),
            port: free_port()?,
            user: "cnadmin".into(),
            as_nobody,
        };
        let out = cluster
            .command("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "cnadmin", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=50",
            cluster.port,
            sock.display()
        );
        let out = cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(logs.join("postgres.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(logs.join("postgres.log")).unwrap_or_default()
            );
        }
        Ok(cluster)
    }

    /// Connection URL of the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://{}@127.0.0.1:{}/{db}", self.user, self.port)
    }

    /// Directory of the server's tools (for the config's `bin_dir`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
