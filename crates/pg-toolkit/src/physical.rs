//! Physical backups of a whole Postgres server, with Postgres' own tools: `pg_basebackup`
//! over the replication protocol and `pg_verifybackup` against the backup's own manifest.
//!
//! The copy is taken in plain format (`-Fp`: the data directory's files as they are) with
//! `--wal-method=fetch`, so it holds the WAL it needs and starts on its own, and it is kept
//! as it was written. Plain rather than tar because `pg_verifybackup` (PostgreSQL 15)
//! checks only a plain directory: a tar backup would have to be extracted into a scratch
//! copy on every verification — twice the disk and I/O of a multi-gigabyte server — and
//! extracted again to be restored, while a plain one is verified where it lies and laid
//! down by copying files. The repository checksums each file of the copy like any other.
//!
//! What differs between backends is only where the tools run; what the copy must contain,
//! how its manifest is read and how it is laid down into a data directory is here.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use splice_dr_plugin_api::BackendError;

use crate::connection::ConnSettings;
use crate::{child_env, process};

/// The format name recorded in the manifest for a `pg_basebackup -Fp` copy.
pub const PLAIN: &str = "plain";
/// pg_basebackup's own manifest inside the copy; read by `pg_verifybackup`, never laid
/// down into a data directory.
pub const BACKUP_MANIFEST: &str = "backup_manifest";
/// The file every base backup holds and a plain data directory does not (the server reads
/// its start point from it).
pub const BACKUP_LABEL: &str = "backup_label";

/// `pg_basebackup` writing a plain, self-contained copy of the server `conn` reaches into
/// the new directory `dest`: fast checkpoint, the WAL fetched at the end, its manifest.
/// The password travels in the child's environment, never on its command line.
pub fn basebackup_command(
    bin_dir: Option<&Path>,
    conn: &ConnSettings,
    dest: &Path,
) -> Result<Command, BackendError> {
    let tool = process::find_tool(bin_dir, "pg_basebackup")?;
    let mut cmd = child_env::command(tool, child_env::POSTGRES);
    cmd.arg("--dbname")
        .arg(conn.conninfo(&conn.admin_db()))
        .arg("--pgdata")
        .arg(dest)
        .args([
            "--format=plain",
            "--wal-method=fetch",
            "--checkpoint=fast",
            "--no-password",
            "--label=splice-dr",
        ])
        .envs(conn.child_env());
    Ok(cmd)
}

/// `pg_verifybackup` of the plain copy in `src`: every file against the backup's manifest
/// (size, checksum), then the WAL from the backup's start to its end parsed with
/// `pg_waldump` (from the same directory).
pub fn verifybackup_command(bin_dir: Option<&Path>, src: &Path) -> Result<Command, BackendError> {
    let tool = process::find_tool(bin_dir, "pg_verifybackup")?;
    let mut cmd = child_env::command(tool, child_env::POSTGRES);
    cmd.arg("--quiet").arg(src);
    Ok(cmd)
}

/// What a base backup's own manifest says: how many files it lists and the WAL range the
/// copy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFacts {
    /// Files listed.
    pub files: u64,
    /// The timeline of the WAL range.
    pub timeline: u32,
    /// Where the WAL range starts.
    pub start_lsn: String,
    /// Where it ends: the point the copy is consistent at.
    pub end_lsn: String,
}

/// Reads `backup_manifest` in `dir`.
pub fn read_manifest(dir: &Path) -> Result<ManifestFacts, BackendError> {
    let path = dir.join(BACKUP_MANIFEST);
    let text = std::fs::read(&path)
        .map_err(|e| BackendError::io(format!("reading {}", path.display()), e))?;
    parse_manifest(&text)
        .map_err(|m| BackendError::Verification(format!("{}: {m}", path.display())))
}

/// The facts of a `backup_manifest` (its JSON: `Files`, `WAL-Ranges`).
fn parse_manifest(text: &[u8]) -> Result<ManifestFacts, String> {
    let v: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("not a backup manifest: {e}"))?;
    let files = v["Files"]
        .as_array()
        .ok_or("no `Files` list: not a backup manifest")?
        .len() as u64;
    let ranges = v["WAL-Ranges"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or("no `WAL-Ranges`: the copy would not know which WAL it needs")?;
    let text_of = |r: &serde_json::Value, k: &str| {
        r[k].as_str()
            .map(str::to_string)
            .ok_or(format!("`WAL-Ranges` entry without `{k}`"))
    };
    let first = &ranges[0];
    let last = &ranges[ranges.len() - 1];
    Ok(ManifestFacts {
        files,
        timeline: last["Timeline"]
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .ok_or("`WAL-Ranges` entry without a `Timeline`")?,
        start_lsn: text_of(first, "Start-LSN")?,
        end_lsn: text_of(last, "End-LSN")?,
    })
}

/// Every directory under `root`, relative, `/`-separated and sorted (parents first).
pub fn list_dirs(root: &Path) -> Result<Vec<String>, BackendError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| BackendError::io(format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| BackendError::io(format!("listing {}", dir.display()), e))?;
            let kind = entry
                .file_type()
                .map_err(|e| BackendError::io(format!("listing {}", dir.display()), e))?;
            if kind.is_dir() {
                let child = rel.join(entry.file_name());
                out.push(child.to_string_lossy().replace('\\', "/"));
                stack.push(child);
            } else if kind.is_symlink() {
                return Err(BackendError::Verification(format!(
                    "{} is a symbolic link (a tablespace or a moved WAL directory): a physical \
                     backup of this server cannot be laid down into one data directory",
                    dir.join(entry.file_name()).display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Who owns a laid-down data directory: the server's user, which is not necessarily the
/// daemon's (a root daemon restoring a `postgres`-owned cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// The owner of `path`.
    pub fn of(path: &Path) -> Result<Owner, BackendError> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)
            .map_err(|e| BackendError::io(format!("reading the owner of {}", path.display()), e))?;
        Ok(Owner {
            uid: m.uid(),
            gid: m.gid(),
        })
    }
}

/// Lays the copy in `src` down as the new data directory `dest` (which must not exist):
/// every directory in `dirs` (mode 0700) and every file but [`BACKUP_MANIFEST`] (mode
/// 0600), owned by `owner`, all synced to disk at the end. Returns the bytes copied; `on_bytes` sees
/// each file's size as it is done.
pub fn lay_down(
    src: &Path,
    dest: &Path,
    dirs: &[String],
    owner: Owner,
    on_bytes: &mut dyn FnMut(u64),
) -> Result<u64, BackendError> {
    let io = |what: &str, p: &Path| {
        let what = format!("{what} {}", p.display());
        move |e| BackendError::io(what, e)
    };
    let chown = |p: &Path| {
        std::os::unix::fs::chown(p, Some(owner.uid), Some(owner.gid))
            .map_err(io("setting the owner of", p))
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    builder.create(dest).map_err(io("creating", dest))?;
    chown(dest)?;
    for d in dirs {
        let p = dest.join(d);
        builder.create(&p).map_err(io("creating", &p))?;
        chown(&p)?;
    }
    let mut total = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let from_dir = src.join(&rel);
        for entry in std::fs::read_dir(&from_dir).map_err(io("listing", &from_dir))? {
            let entry = entry.map_err(io("listing", &from_dir))?;
            let child = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(io("listing", &from_dir))?;
            if kind.is_dir() {
                let to = dest.join(&child);
                if !to.is_dir() {
                    builder.create(&to).map_err(io("creating", &to))?;
                    chown(&to)?;
                }
                stack.push(child);
            } else if kind.is_file() && child != Path::new(BACKUP_MANIFEST) {
                let (from, to) = (src.join(&child), dest.join(&child));
                let n = std::fs::copy(&from, &to).map_err(io("copying", &from))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                    .map_err(io("setting the mode of", &to))?;
                chown(&to)?;
                total += n;
                on_bytes(n);
            }
        }
    }
    // Durable before the server starts on it: one syncfs(2) of the file system holding
    // `dest` writes every copied file and directory entry at once.
    let dir = std::fs::File::open(dest).map_err(io("opening", dest))?;
    rustix::fs::syncfs(&dir).map_err(|e| io("syncing the file system of", dest)(e.into()))?;
    Ok(total)
}

/// Whether `dir` looks like a base backup (its label and version file are there): a
/// restore refuses anything else before the server is stopped.
pub fn is_base_backup(dir: &Path) -> bool {
    dir.join(BACKUP_LABEL).is_file() && dir.join("PG_VERSION").is_file()
}

/// The major version a data directory or a copy of one was written by (`PG_VERSION`).
pub fn major_version(dir: &Path) -> Result<String, BackendError> {
    let p = dir.join("PG_VERSION");
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| BackendError::io(format!("reading {}", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_range_and_file_count_come_from_the_manifest() {
        let text = br#"{ "PostgreSQL-Backup-Manifest-Version": 1,
            "Files": [{"Path": "PG_VERSION", "Size": 3}, {"Path": "base/1/1259", "Size": 8192}],
            "WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }],
            "Manifest-Checksum": "ab" }"#;
        let f = parse_manifest(text).unwrap();
        assert_eq!(
            f,
            ManifestFacts {
                files: 2,
                timeline: 1,
                start_lsn: "0/2000028".into(),
                end_lsn: "0/2000100".into()
            }
        );
        let e = parse_manifest(br#"{"Files": []}"#).unwrap_err();
        assert!(e.contains("WAL-Ranges"), "{e}");
        assert!(parse_manifest(b"garbage").is_err());
    }

    /// A laid-down copy is what Postgres needs to start: every directory (the empty ones a
    /// repository does not keep included), files 0600 in 0700 directories, and no
    /// pg_basebackup manifest.
    #[test]
    fn a_copy_is_laid_down_with_its_empty_directories_and_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("copy");
        std::fs::create_dir_all(src.join("base/1")).unwrap();
        std::fs::write(src.join("base/1/1259"), b"heap").unwrap();
        std::fs::write(src.join("PG_VERSION"), b"15\n").unwrap();
        std::fs::write(src.join(BACKUP_LABEL), b"START WAL LOCATION").unwrap();
        std::fs::write(src.join(BACKUP_MANIFEST), b"{}").unwrap();
        let dirs = vec!["base".to_string(), "base/1".into(), "pg_notify".into()];
        let dest = tmp.path().join("data");
        let owner = Owner::of(tmp.path()).unwrap();
        let mut seen = 0;
        let n = lay_down(&src, &dest, &dirs, owner, &mut |b| seen += b).unwrap();
        assert_eq!((n, seen), (4 + 3 + 18, 25));
        assert!(dest.join("pg_notify").is_dir());
        assert!(!dest.join(BACKUP_MANIFEST).exists());
        assert!(is_base_backup(&dest));
        assert_eq!(major_version(&dest).unwrap(), "15");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest), 0o700);
        assert_eq!(mode(&dest.join("base/1")), 0o700);
        assert_eq!(mode(&dest.join("base/1/1259")), 0o600);
        assert_eq!(list_dirs(&dest).unwrap(), dirs);
        // Never over an existing directory.
        assert!(lay_down(&src, &dest, &dirs, owner, &mut |_| {}).is_err());
    }
}
