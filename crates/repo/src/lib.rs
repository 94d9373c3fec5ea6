//! The backup repository: one directory per backup, sealed by its manifest.
//!
//! Layout under the configured path:
//!
//! ```text
//! <repo>/<backup-id>/manifest.json        written last; its presence makes the backup exist
//! <repo>/<backup-id>/validator/...         pg_dump directory of the validator DB
//! <repo>/<backup-id>/participant/...       pg_dump directory of the participant DB
//! <repo>/.incomplete/<backup-id>/          a backup being written (never listed)
//! ```
//!
//! A backup is sealed by checksumming every file into the manifest and renaming its
//! directory out of `.incomplete/` in one atomic rename, so a crash leaves either no
//! backup or a complete one.
//!
//! A crate of its own, below the daemon: the repository is what a site trusts its
//! recovery to, so it is kept pure of the daemon's runs, automation and config machinery.
//! It takes its settings as values (an off-site table, [`trust::KeySources`]) and owns
//! the file-system helpers ([`fs`]) and key parsers ([`keys`]) the daemon shares with it.

mod checksum;
pub mod config;
pub mod fs;
pub mod keys;
mod manifest;
pub mod offsite;
mod prefer;
mod seal_stamp;
pub mod store;
pub mod trust;
pub mod untrusted;
pub mod wal;

pub use checksum::sha256_file;
pub use manifest::{
    identifier_of, BackupHost, BaseBackupEntry, DrillRecord, DrillResult, DumpEntry, FileEntry,
    IdentitiesEntry, Manifest, UsedParticipantId, MANIFEST_FORMAT,
};
pub use prefer::{newest_restorable, preferred_backup, Preferred};
pub use seal_stamp::SealStamps;

use chrono::{DateTime, Utc};
use serde::Serialize;
use splice_dr_plugin_api::{
    BackendError, BackupKind, BaseBackupCheck, BaseBackupInfo, DumpCheck, DumpInfo,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

use crate::fs::{sync_dir, write_atomic};

/// Directory under the repository root where network-DR data snapshots are kept (not a
/// backup: it has no manifest, and `repo check` must not call it an interrupted upload).
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// Errors of the backup repository.
#[derive(Debug, Error)]
pub enum RepoError {
    /// A repository file could not be read or written.
    #[error("backup repository {path}: {message}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No backup matches.
    #[error("no backup `{0}` in the repository (list them with `splice-dr backups`)")]
    NotFound(String),
    /// A manifest cannot be parsed.
    #[error("backup {id}: manifest.json is unreadable: {message}")]
    BadManifest {
        /// Backup id.
        id: String,
        /// Parse error.
        message: String,
    },
    /// The repository's file system has less room than the next backup likely needs.
    #[error(
        "not enough free space in {dir} for a backup: about {needed} bytes needed (the last \
         backup × 1.25), {available} available; free space there or point repository.path \
         at a larger file system"
    )]
    NoSpace {
        /// The directory checked.
        dir: PathBuf,
        /// Bytes the backup is estimated to need.
        needed: u64,
        /// Bytes available to the daemon there.
        available: u64,
    },
    /// A manifest failed the checks of [`Manifest::from_untrusted`].
    #[error(
        "{0} (refused before anything was written: check who can write this repository, \
         and use another backup)"
    )]
    Refused(#[from] untrusted::ManifestError),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> RepoError {
    RepoError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Handle to the local repository directory and, through it, the off-site repositories
/// every backup is copied to (swapped on config reload, shared by every clone).
#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
    offsite: std::sync::Arc<std::sync::RwLock<offsite::Offsite>>,
    keys: std::sync::Arc<std::sync::RwLock<trust::Keyring>>,
}

/// A backup and the repositories holding it, for `backups` and `latest`.
#[derive(Debug, Clone)]
pub struct Located {
    /// The manifest (the local copy when there is one).
    pub manifest: Manifest,
    /// Where it is: `local` and/or off-site repository names.
    pub locations: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The outcome of verifying one backup.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Backup id.
    pub id: String,
    /// True when every check passed.
    pub ok: bool,
    /// Files whose checksum was compared.
    pub files_checked: usize,
    /// Bytes read.
    pub bytes_checked: u64,
    /// Files not read again because the seal of this same process hashed them moments
    /// before and they are unchanged since ([`Repository::verify_after_seal`]); counted
    /// in `files_checked`, not in `bytes_checked`.
    #[serde(skip_serializing_if = "is_zero")]
    pub files_unchanged_since_seal: usize,
    /// Every problem found, one sentence each.
    pub problems: Vec<String>,
    /// What reading each dump's table of contents found, by role.
    pub dumps: Vec<(String, DumpCheck)>,
    /// What checking the base backup against its own manifest found (physical backups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_backup: Option<BaseBackupCheck>,
}

/// How [`Repository::verify`] reads a backup's contents beyond the checksums: the
/// backend's own tools, which know the formats.
pub struct ContentChecks<'a> {
    /// Reads a dump directory's table of contents (`pg_restore --list`).
    pub dump: &'a dyn Fn(&Path) -> Result<DumpCheck, BackendError>,
    /// Checks a base backup against its own manifest (`pg_verifybackup`).
    pub base_backup: &'a dyn Fn(&Path) -> Result<BaseBackupCheck, BackendError>,
}

impl Repository {
    /// Opens (creating if needed) the repository at `root`.
    pub fn open(root: &Path) -> Result<Self, RepoError> {
        std::fs::create_dir_all(root.join(".incomplete")).map_err(|e| io_err(root, e))?;
        Ok(Repository {
            root: root.to_path_buf(),
            offsite: Default::default(),
            keys: Default::default(),
        })
    }

    /// Installs the keyring that signs new manifests and judges every manifest read.
    pub fn set_keyring(&self, keys: trust::Keyring) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// The keyring in force.
    pub fn keyring(&self) -> trust::Keyring {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why backup `m` is untrusted now (see [`trust`]), `None` when it is trusted.
    pub fn untrusted_because(&self, m: &Manifest) -> Option<String> {
        self.keyring().untrusted_because(m, Utc::now())
    }

    /// Installs the off-site repositories (at start and on config reload).
    pub fn set_offsite(&self, offsite: offsite::Offsite) {
        *self.offsite.write().unwrap_or_else(|p| p.into_inner()) = offsite;
    }

    /// The off-site repositories in force.
    pub fn offsite(&self) -> offsite::Offsite {
        self.offsite
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every backup in every repository, newest first, with where each is; problems
    /// (unreachable repositories, unreadable manifests) are returned beside it.
    pub fn list_everywhere(&self) -> (Vec<Located>, Vec<String>) {
        let mut problems = Vec::new();
        let mut all: Vec<Located> = Vec::new();
        match self.list() {
            Ok((good, bad)) => {
                problems.extend(bad.iter().map(|e| format!("local: {e}")));
                all.extend(good.into_iter().map(|m| Located {
                    manifest: m,
                    locations: vec!["local".into()],
                }));
            }
            Err(e) => problems.push(format!("local: {e}")),
        }
        for r in self.offsite().repos() {
            match r.list() {
                Ok(listing) => {
                    problems.extend(
                        listing
                            .unreadable
                            .iter()
                            .map(|e| format!("{}: {e}", r.name())),
                    );
                    for m in listing.backups {
                        match all.iter_mut().find(|l| l.manifest.id == m.id) {
                            Some(l) => l.locations.push(r.name().into()),
                            None => all.push(Located {
                                manifest: m,
                                locations: vec![r.name().into()],
                            }),
                        }
                    }
                }
                Err(e) => problems.push(format!("{}: unreachable: {e}", r.name())),
            }
        }
        all.sort_by(|a, b| {
            b.manifest
                .created_at
                .cmp(&a.manifest.created_at)
                .then(b.manifest.id.cmp(&a.manifest.id))
        });
        (all, problems)
    }

    /// A backup's manifest from wherever it is: the local copy, else the off-site
    /// repositories (primary first).
    pub fn manifest_anywhere(&self, id: &str) -> Result<Manifest, RepoError> {
        match self.manifest(id) {
            Err(RepoError::NotFound(_)) if !self.offsite().is_empty() => {
                self.offsite().find(id).map(|(_, m)| m)
            }
            other => other,
        }
    }

    /// Makes sure a backup is in the local repository, downloading it (checksums checked
    /// on the way) from the first off-site repository holding it. Returns the repository
    /// it came from, or `None` when it was already here.
    pub fn fetch(
        &self,
        id: &str,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<Option<String>, RepoError> {
        match self.manifest(id) {
            Ok(_) => return Ok(None),
            Err(RepoError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let (repo, _) = self.offsite().find(id)?;
        repo.download(self, id, on_bytes)?;
        Ok(Some(repo.name().to_string()))
    }

    /// Repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of a sealed backup.
    pub fn backup_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Where a backup fetched from another repository is assembled before
    /// [`Repository::publish_staged`] makes it appear (never listed until then).
    pub fn staging_dir(&self, id: &str) -> PathBuf {
        self.root.join(".incomplete").join(format!("fetch-{id}"))
    }

    /// Publishes a backup assembled in [`Repository::staging_dir`] with one atomic rename.
    pub fn publish_staged(&self, id: &str) -> Result<(), RepoError> {
        let target = self.backup_dir(id);
        if target.exists() {
            return Err(io_err(&target, "a backup with this id is already here"));
        }
        std::fs::rename(self.staging_dir(id), &target).map_err(|e| io_err(&target, e))?;
        sync_dir(&self.root).map_err(|e| io_err(&self.root, e))
    }

    /// Lists, writes, reads back and removes a probe file, and reports free space: the
    /// local half of `repo check`. The local layout is the off-site one (`<id>/...`), so
    /// the same check runs over a directory store at the root.
    pub fn check(&self) -> offsite::CheckReport {
        let store = store::dir::DirStore::new(&self.root);
        let mut report = offsite::OffsiteRepo::with_store("local", Box::new(store)).check();
        report
            .incomplete
            .retain(|d| d != SNAPSHOTS_DIR && d != wal::WAL_DIR);
        report
    }

    /// Starts a new backup of `node`; nothing is listed until [`BackupWriter::seal`].
    pub fn begin(&self, node: &str, migration_id: u64) -> Result<BackupWriter, RepoError> {
        let stamp = Utc::now().format("%Y%m%d-%H%M%S");
        let mut id = format!("{node}-{stamp}");
        while self.backup_dir(&id).exists() || self.root.join(".incomplete").join(&id).exists() {
            id = format!("{node}-{stamp}-{}", crate::fs::short_tag());
        }
        self.check_free_space(node)?;
        let dir = self.root.join(".incomplete").join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        Ok(BackupWriter {
            sealed: false,
            repo: self.clone(),
            id,
            node: node.into(),
            migration_id,
            dir,
            created_at: Utc::now(),
            dumps: Vec::new(),
            base_backup: None,
            identities: None,
            validator_party: None,
            users: Vec::new(),
            host: None,
            participant_ids: Vec::new(),
        })
    }

    /// Refuses to start a backup that would likely fill the disk: a full repository file
    /// system breaks every later write (journal, manifests), not just this backup. The
    /// estimate is the node's last backup plus a quarter; without one there is nothing
    /// to go by and the dump's own write errors are the guard.
    fn check_free_space(&self, node: &str) -> Result<(), RepoError> {
        let (backups, _) = self.list()?;
        let Some(last) = backups
            .iter()
            .filter(|m| m.node == node)
            .map(|m| m.total_bytes())
            .max()
        else {
            return Ok(());
        };
        let needed = last.saturating_add(last / 4);
        match crate::fs::free_bytes(&self.root) {
            Some(available) if available < needed => Err(RepoError::NoSpace {
                dir: self.root.clone(),
                needed,
                available,
            }),
            _ => Ok(()),
        }
    }

    /// Removes unsealed backups of `node` left by a crashed run. Call only while holding
    /// the node's lock (no backup of it can be in progress).
    pub fn discard_incomplete(&self, node: &str) -> Result<Vec<String>, RepoError> {
        let dir = self.root.join(".incomplete");
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| io_err(&dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Its own unsealed backups, deletions and downloads cut short.
            let id = name
                .strip_prefix(".deleting-")
                .or_else(|| name.strip_prefix("fetch-"))
                .unwrap_or(&name);
            if is_backup_of(id, node) {
                std::fs::remove_dir_all(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// Deletes a sealed backup: first renamed out of the listing (atomic), then removed.
    /// Callers hold the node's lock, so no restore of this node can be reading it.
    pub fn delete(&self, id: &str) -> Result<(), RepoError> {
        self.manifest(id)?;
        let trash = self
            .root
            .join(".incomplete")
            .join(format!(".deleting-{id}"));
        std::fs::rename(self.backup_dir(id), &trash).map_err(|e| io_err(&trash, e))?;
        sync_dir(&self.root).map_err(|e| io_err(&self.root, e))?;
        std::fs::remove_dir_all(&trash).map_err(|e| io_err(&trash, e))
    }

    /// Reads a sealed backup's manifest, checked as untrusted input (the repository
    /// directory may be shared or restored from elsewhere): size-capped while reading,
    /// every path relative and inside the backup, its id equal to its directory name.
    pub fn manifest(&self, id: &str) -> Result<Manifest, RepoError> {
        if untrusted::check_name(id).is_err() {
            return Err(RepoError::NotFound(id.into()));
        }
        let path = self.backup_dir(id).join("manifest.json");
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RepoError::NotFound(id.into()))
            }
            Err(e) => return Err(io_err(&path, e)),
        };
        let bytes = untrusted::read_bounded(&mut file, id)?;
        Ok(Manifest::from_untrusted(&bytes, id)?)
    }

    /// Records a drill's outcome in a sealed backup's manifest (rewritten atomically; the
    /// manifest is not among the checksummed files, so verification is unaffected).
    pub fn record_drill(&self, id: &str, drill: DrillRecord) -> Result<Manifest, RepoError> {
        let mut m = self.manifest(id)?;
        let keys = self.keyring();
        for r in self.offsite().repos() {
            // The local manifest is the one restores read first; an unreachable off-site
            // copy keeps its older drill record rather than failing the drill.
            if let Err(e) = r.record_drill(id, &drill, &keys) {
                tracing::warn!(
                    "backup {id}: drill not recorded in repository {}: {e}",
                    r.name()
                );
            }
        }
        record_drill_in(&mut m, drill, &keys);
        let bytes = serde_json::to_vec_pretty(&m).map_err(|e| io_err(&self.backup_dir(id), e))?;
        let path = self.backup_dir(id).join("manifest.json");
        write_atomic(&path, &bytes).map_err(|e| io_err(&path, e))?;
        Ok(m)
    }

    /// Signs backup `id` with this site's key wherever it is (`keys sign`): the operator
    /// vouches for a backup made before signing. Returns the repositories signed in.
    pub fn sign_backup(&self, id: &str) -> Result<Vec<String>, RepoError> {
        let keys = self.keyring();
        let mut signed = Vec::new();
        match self.manifest(id) {
            Ok(mut m) => {
                keys.sign(&mut m);
                let path = self.backup_dir(id).join("manifest.json");
                let bytes = serde_json::to_vec_pretty(&m).map_err(|e| io_err(&path, e))?;
                write_atomic(&path, &bytes).map_err(|e| io_err(&path, e))?;
                signed.push("local".to_string());
            }
            Err(RepoError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        for r in self.offsite().repos() {
            match r.manifest(id) {
                Ok(mut m) => {
                    keys.sign(&mut m);
                    r.write_manifest(&m)?;
                    signed.push(r.name().to_string());
                }
                Err(RepoError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if signed.is_empty() {
            return Err(RepoError::NotFound(id.into()));
        }
        Ok(signed)
    }

    /// Every sealed backup (all nodes), newest first. Unreadable manifests are returned
    /// as errors in the second list so `backups` can show them instead of hiding them.
    pub fn list(&self) -> Result<(Vec<Manifest>, Vec<RepoError>), RepoError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for entry in std::fs::read_dir(&self.root)
            .map_err(|e| io_err(&self.root, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            match self.manifest(&name) {
                Ok(m) => good.push(m),
                Err(RepoError::NotFound(_)) => {}
                Err(e) => bad.push(e),
            }
        }
        good.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok((good, bad))
    }

    /// Resolves `latest` (newest backup of `node` in any repository) or an explicit id
    /// (the local copy, else an off-site one).
    pub fn resolve(&self, selector: &str, node: &str) -> Result<Manifest, RepoError> {
        if selector == "latest" {
            let all: Vec<Manifest> = if self.offsite().is_empty() {
                self.list()?.0
            } else {
                self.list_everywhere()
                    .0
                    .into_iter()
                    .map(|l| l.manifest)
                    .collect()
            };
            let keys = self.keyring();
            let now = Utc::now();
            let mine: Vec<Manifest> = all.into_iter().filter(|m| m.node == node).collect();
            let untrusted = mine
                .iter()
                .filter(|m| keys.untrusted_because(m, now).is_some())
                .count();
            return mine
                .into_iter()
                .find(|m| keys.untrusted_because(m, now).is_none())
                .ok_or_else(|| {
                    RepoError::NotFound(format!(
                        "latest (node {node} has no trusted backup; {untrusted} untrusted: \
                         name one with --backup ID and --force --reason)"
                    ))
                });
        }
        self.manifest_anywhere(selector)
    }

    /// Checks every file against the manifest (size, sha256, nothing missing or added),
    /// then asks `checks` to read each dump (e.g. `pg_restore --list`) and the base
    /// backup (`pg_verifybackup`).
    pub fn verify(
        &self,
        id: &str,
        checks: &ContentChecks<'_>,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, RepoError> {
        self.verify_with(id, checks, None, on_bytes)
    }

    /// [`Repository::verify`] right after this process sealed the backup: a file the seal
    /// hashed and that is unchanged since (its [`SealStamps`] entry) keeps the seal's hash
    /// instead of being read again; every other check runs as in `verify`.
    pub fn verify_after_seal(
        &self,
        id: &str,
        checks: &ContentChecks<'_>,
        stamps: &SealStamps,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, RepoError> {
        self.verify_with(id, checks, Some(stamps), on_bytes)
    }

    fn verify_with(
        &self,
        id: &str,
        checks: &ContentChecks<'_>,
        stamps: Option<&SealStamps>,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, RepoError> {
        let manifest = self.manifest(id)?;
        let dir = self.backup_dir(id);
        let mut report = VerifyReport {
            id: id.into(),
            ok: true,
            files_checked: 0,
            bytes_checked: 0,
            files_unchanged_since_seal: 0,
            problems: Vec::new(),
            dumps: Vec::new(),
            base_backup: None,
        };
        let (unchanged, to_hash): (Vec<&FileEntry>, Vec<&FileEntry>) =
            manifest.files.iter().partition(|f| {
                stamps.is_some_and(|s| s.unchanged(&f.path, &dir.join(&f.path), f.size, &f.sha256))
            });
        report.files_unchanged_since_seal = unchanged.len();
        report.files_checked = unchanged.len();
        let paths: Vec<PathBuf> = to_hash.iter().map(|f| dir.join(&f.path)).collect();
        let hashed = checksum::sha256_files(&paths, on_bytes);
        for (file, result) in to_hash.into_iter().zip(hashed) {
            match result {
                Ok((sum, size)) => {
                    report.files_checked += 1;
                    report.bytes_checked += size;
                    if size != file.size {
                        report.problems.push(format!(
                            "{}: size {size} bytes, manifest says {} (truncated or grown)",
                            file.path, file.size
                        ));
                    } else if sum != file.sha256 {
                        report
                            .problems
                            .push(format!("{}: sha256 mismatch (file corrupted)", file.path));
                    }
                }
                Err(e) => report
                    .problems
                    .push(format!("{}: cannot read: {e}", file.path)),
            }
        }
        let listed: std::collections::BTreeSet<&str> =
            manifest.files.iter().map(|f| f.path.as_str()).collect();
        if let Ok(present) = checksum::list_files(&dir) {
            for rel in present {
                let rel = rel.to_string_lossy().replace('\\', "/");
                if !listed.contains(rel.as_str()) {
                    report
                        .problems
                        .push(format!("{rel}: not in the manifest (added after sealing)"));
                }
            }
        }
        for dump in &manifest.dumps {
            match (checks.dump)(&dir.join(&dump.dir)) {
                Ok(check) => report.dumps.push((dump.info.role.clone(), check)),
                Err(e) => report
                    .problems
                    .push(format!("{} dump unreadable: {e}", dump.info.role)),
            }
        }
        if let Some(base) = &manifest.base_backup {
            match (checks.base_backup)(&dir.join(&base.dir)) {
                Ok(check) => report.base_backup = Some(check),
                Err(e) => report
                    .problems
                    .push(format!("base backup {} does not verify: {e}", base.dir)),
            }
        }
        if manifest.kind == BackupKind::Physical && manifest.base_backup.is_none() {
            report
                .problems
                .push("a physical backup without its base backup".into());
        }
        report.ok = report.problems.is_empty();
        Ok(report)
    }
}

/// Records a drill in `m`, re-signing it only when it was trusted: drilling a forged or
/// foreign backup (with `--force`) must not make it trusted.
fn record_drill_in(m: &mut Manifest, drill: DrillRecord, keys: &trust::Keyring) {
    let was_trusted = keys.untrusted_because(m, Utc::now()).is_none();
    m.last_drill = Some(drill);
    if was_trusted {
        keys.sign(m);
    }
}

/// Whether `id` names a backup of `node` (`<node>-YYYYMMDD-HHMMSS[-tag]`, what
/// [`Repository::begin`] makes) — not one of a node whose name merely starts the same way
/// (`v` and `v-2`), whose lock the caller does not hold.
pub fn is_backup_of(id: &str, node: &str) -> bool {
    let Some(rest) = id.strip_prefix(node).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let mut parts = rest.splitn(3, '-');
    let digits = |p: Option<&str>, n: usize| {
        p.is_some_and(|p| p.len() == n && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let stamp = digits(parts.next(), 8) && digits(parts.next(), 6);
    stamp
        && parts
            .next()
            .is_none_or(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The node a backup would be restored into, as it runs now (not as the config file last
/// described it: a network DR or a re-onboard changes both ids before the operator edits
/// the file).
#[derive(Debug, Clone, Copy)]
pub struct RunningNode<'a> {
    /// The node's name.
    pub name: &'a str,
    /// The migration id it runs: the registry's after a network DR, else the config's.
    pub migration_id: u64,
    /// Its participant identifier since a re-onboard; `None` while it runs its original one.
    pub participant: Option<&'a str>,
    /// `repository.max_age`: older backups are past the sequencers' pruning window.
    pub max_age: Duration,
    /// The participant database the node's apps will use, where the deployment names it
    /// (compose: `participant-<migration id>`; helm: `participant_<migration id>`; bare
    /// Postgres: the configured name); `None` where only a plugin knows.
    pub participant_db: Option<&'a str>,
}

/// Reasons a verified backup must still not be restored without `--force`
/// (Splice's operator rules). Empty when it may be restored.
pub fn restore_objections(
    manifest: &Manifest,
    into: &RunningNode<'_>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let (node, node_migration_id, max_age) = (into.name, into.migration_id, into.max_age);
    let mut out = Vec::new();
    if manifest.node != node {
        out.push(format!(
            "backup {} belongs to node `{}`, not `{node}`",
            manifest.id, manifest.node
        ));
    }
    if manifest.migration_id != node_migration_id {
        out.push(format!(
            "backup {} was taken at migration id {}, the node is at migration id {node_migration_id}: \
             its data belongs to another synchronizer",
            manifest.id, manifest.migration_id
        ));
    }
    let age = (now - manifest.created_at).to_std().unwrap_or_default();
    if age > max_age {
        out.push(format!(
            "backup {} is {} old, older than repository.max_age ({}): Splice cannot restore \
             backups older than the sequencers' pruning window",
            manifest.id,
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(max_age)
        ));
    }
    out.extend(identity_objection(manifest, into.participant));
    out.extend(database_objections(manifest, into));
    out.extend(contents_objection(manifest, into));
    out
}

/// What a restore needs inside the backup: both dumps (logical), or a base backup holding
/// the database the node runs its participant on (physical).
fn contents_objection(manifest: &Manifest, into: &RunningNode<'_>) -> Option<String> {
    match (manifest.kind, &manifest.base_backup) {
        (BackupKind::Logical, _) => (manifest.dump("validator").is_none()
            || manifest.dump("participant").is_none())
        .then(|| {
            format!(
                "backup {} lacks a validator or participant dump",
                manifest.id
            )
        }),
        (BackupKind::Physical, None) => Some(format!(
            "physical backup {} lacks its base backup",
            manifest.id
        )),
        (BackupKind::Physical, Some(base)) => into
            .participant_db
            .filter(|db| !base.info.databases.iter().any(|d| d == db))
            .map(|db| {
                format!(
                    "physical backup {} holds no database `{db}` (it holds {}): it is a copy of \
                     another server, or of the node before it used that database",
                    manifest.id,
                    base.info.databases.join(", ")
                )
            }),
    }
}

/// A backup taken under another participant id than the one the node runs since a
/// re-onboard: its data belongs to an id Splice has burned, and started next to the keys
/// the node now runs with it would bring back a participant the network moved on from.
fn identity_objection(manifest: &Manifest, current: Option<&str>) -> Option<String> {
    let current = current?;
    let taken_as = identifier_of(&manifest.identities.as_ref()?.participant_id);
    (taken_as != current).then(|| {
        format!(
            "backup {} was taken when the node was participant {taken_as}; it runs as participant \
             {current} since a re-onboard, and {taken_as} is burned: restore a backup taken after \
             the re-onboard",
            manifest.id
        )
    })
}

/// The migration id a Splice participant database name carries: `3` in `participant-3`
/// (compose's `participant-${MIGRATION_ID}`) or `participant_3` (the helm charts);
/// `Some("")` for `participant-` (compose with `MIGRATION_ID` unset); `None` for a name of
/// another form (a bare-Postgres site's own name), which carries no migration id.
fn migration_suffix(database: &str) -> Option<&str> {
    database
        .strip_prefix("participant-")
        .or_else(|| database.strip_prefix("participant_"))
}

/// The participant database a restore would fill: it must be the one of the migration the
/// node runs (Splice names it `participant-<migration id>`; a wrong or unset
/// `MIGRATION_ID` starts the participant on another, or an empty, database, and the restored
/// data is never used), and the backup's participant dump must come from that database.
fn database_objections(manifest: &Manifest, into: &RunningNode<'_>) -> Vec<String> {
    let Some(target) = into.participant_db else {
        return Vec::new();
    };
    let running = into.migration_id;
    let mut out = Vec::new();
    match migration_suffix(target) {
        Some("") => out.push(format!(
            "node {} would use participant database `{target}`, which names no migration id \
             (MIGRATION_ID unset): the node runs migration {running}, so its database is \
             `participant-{running}`; set migration_id = {running} in the node's config (and \
             MIGRATION_ID={running} in the bundle's .env)",
            into.name
        )),
        Some(suffix) if suffix != running.to_string() => {
            let sep = if target.starts_with("participant_") {
                '_'
            } else {
                '-'
            };
            out.push(format!(
                "node {} would use participant database `{target}`, but it runs migration \
                 {running}, whose database is `participant{sep}{running}`: set migration_id = \
                 {running} in the node's config (or fix its participant_db)",
                into.name
            ))
        }
        _ => {}
    }
    if let Some(dump) = manifest.dump("participant") {
        let from = &dump.info.database;
        if from != target {
            out.push(format!(
                "backup {}'s participant dump was taken from database `{from}`, but the node \
                 uses `{target}`: the dump belongs to another migration or deployment; restore \
                 a backup taken from `{target}`",
                manifest.id
            ));
        }
    }
    out
}

/// A backup being written. Dropping it without sealing (a failed backup) removes its
/// `.incomplete/` entry, so partial dumps do not eat the disk; one left by a crash is
/// never listed and is removed by the next run holding the node's lock.
#[derive(Debug)]
pub struct BackupWriter {
    sealed: bool,
    repo: Repository,
    id: String,
    node: String,
    migration_id: u64,
    dir: PathBuf,
    created_at: DateTime<Utc>,
    dumps: Vec<DumpEntry>,
    base_backup: Option<BaseBackupEntry>,
    identities: Option<IdentitiesEntry>,
    validator_party: Option<String>,
    users: Vec<String>,
    host: Option<BackupHost>,
    participant_ids: Vec<UsedParticipantId>,
}

/// Directory of a physical backup holding the copy of the database server.
pub const BASE_BACKUP_DIR: &str = "cluster";

impl BackupWriter {
    /// Records the host taking the backup (see [`BackupHost`]).
    pub fn record_host(&mut self, host: BackupHost) {
        self.host = Some(host);
    }

    /// Records the node's participant-id registry as it is when the backup is taken.
    pub fn record_participant_ids(&mut self, used: Vec<UsedParticipantId>) {
        self.participant_ids = used;
    }

    /// Path the encrypted identities dump must be written to.
    pub fn identities_path(&self) -> PathBuf {
        self.dir.join("identities.json.age")
    }

    /// Records the encrypted identities dump written at [`Self::identities_path`].
    pub fn record_identities(&mut self, participant_id: String, recipients: Vec<String>) {
        self.identities = Some(IdentitiesEntry {
            file: "identities.json.age".into(),
            participant_id,
            recipients,
        });
    }

    /// Records the validator party and the users onboarded at backup time.
    pub fn record_users(&mut self, validator_party: String, users: Vec<String>) {
        self.validator_party = Some(validator_party);
        self.users = users;
    }

    /// The id the backup will have.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Directory a dump of `role` must be written to (does not exist yet).
    pub fn dump_dir(&self, role: &str) -> PathBuf {
        self.dir.join(role)
    }

    /// Records a finished dump.
    pub fn record_dump(&mut self, info: DumpInfo) {
        self.dumps.push(DumpEntry {
            dir: info.role.clone(),
            info,
        });
    }

    /// Directory the base backup of a physical backup must be written to (does not exist
    /// yet).
    pub fn base_backup_dir(&self) -> PathBuf {
        self.dir.join(BASE_BACKUP_DIR)
    }

    /// Records a finished base backup: the backup is a physical one.
    pub fn record_base_backup(&mut self, info: BaseBackupInfo) {
        self.base_backup = Some(BaseBackupEntry {
            dir: BASE_BACKUP_DIR.into(),
            info,
        });
    }

    /// The backup's kind, from what was recorded; a backup holding both dumps and a base
    /// backup is refused: a restore could not say which state it restores.
    fn kind(&self) -> Result<BackupKind, RepoError> {
        match (&self.base_backup, self.dumps.is_empty()) {
            (None, _) => Ok(BackupKind::Logical),
            (Some(_), true) => Ok(BackupKind::Physical),
            (Some(_), false) => Err(io_err(
                &self.dir,
                "a backup holds either dumps (logical) or a base backup (physical), not both",
            )),
        }
    }

    /// Checksums everything, writes the manifest, and publishes the backup atomically.
    pub fn seal(self, on_bytes: &mut dyn FnMut(u64)) -> Result<Manifest, RepoError> {
        self.seal_stamped(on_bytes).map(|(manifest, _)| manifest)
    }

    /// [`BackupWriter::seal`], also returning what the seal saw of each file, for the
    /// verify that follows in the same process ([`Repository::verify_after_seal`]).
    pub fn seal_stamped(
        mut self,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(Manifest, SealStamps), RepoError> {
        let kind = self.kind()?;
        let mut stamps = SealStamps::default();
        let files = checksum::checksum_tree(&self.dir, &mut stamps, on_bytes)
            .map_err(|e| io_err(&self.dir, e))?;
        for f in &files {
            let path = self.dir.join(&f.path);
            std::fs::File::open(&path)
                .and_then(|h| h.sync_all())
                .map_err(|e| io_err(&path, e))?;
        }
        let server_version = self
            .dumps
            .first()
            .map(|d| d.info.server_version.clone())
            .or_else(|| {
                self.base_backup
                    .as_ref()
                    .map(|b| b.info.server_version.clone())
            })
            .unwrap_or_default();
        let mut manifest = Manifest {
            format: MANIFEST_FORMAT,
            id: self.id.clone(),
            node: self.node.clone(),
            migration_id: self.migration_id,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            server_version,
            created_at: self.created_at,
            completed_at: Utc::now(),
            kind,
            dumps: self.dumps.clone(),
            base_backup: self.base_backup.clone(),
            files,
            identities: self.identities.clone(),
            validator_party: self.validator_party.clone(),
            users: self.users.clone(),
            last_drill: None,
            host: self.host.clone(),
            participant_ids: self.participant_ids.clone(),
            signature: None,
        };
        self.repo.keyring().sign(&mut manifest);
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| io_err(&self.dir, e))?;
        let mpath = self.dir.join("manifest.json");
        write_atomic(&mpath, &bytes).map_err(|e| io_err(&mpath, e))?;
        for d in &manifest.dumps {
            let _ = sync_dir(&self.dir.join(&d.dir));
        }
        if let Some(b) = &manifest.base_backup {
            for sub in std::iter::once(".").chain(b.info.dirs.iter().map(String::as_str)) {
                let _ = sync_dir(&self.dir.join(&b.dir).join(sub));
            }
        }
        let target = self.repo.backup_dir(&self.id);
        std::fs::rename(&self.dir, &target).map_err(|e| io_err(&target, e))?;
        self.sealed = true;
        sync_dir(self.repo.root()).map_err(|e| io_err(self.repo.root(), e))?;
        Ok((manifest, stamps))
    }
}

impl Drop for BackupWriter {
    fn drop(&mut self) {
        if !self.sealed && self.dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::warn!(
                    "could not remove the partial backup {}: {e}; the next backup of {} removes it",
                    self.dir.display(),
                    self.node
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backup_ids_belong_to_their_node_only() {
        use super::is_backup_of;
        assert!(is_backup_of("v-20261124-101500", "v"));
        assert!(is_backup_of("v-20261124-101500-3fa2", "v"));
        assert!(is_backup_of("v-2-20261124-101500", "v-2"));
        assert!(!is_backup_of("v-2-20261124-101500", "v"));
        assert!(!is_backup_of("validator-1-20261124-101500", "validator"));
        assert!(!is_backup_of("v-20261124", "v"));
    }

    use super::*;

    fn info(role: &str) -> DumpInfo {
        DumpInfo {
            role: role.into(),
            database: role.into(),
            format: "directory".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            server_version: "15".into(),
            tables: vec![],
        }
    }

    fn sealed(repo: &Repository) -> Manifest {
        sealed_stamped(repo).0
    }

    #[test]
    fn unsealed_backups_are_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = signing_repo(dir.path());
        let w = repo.begin("n1", 0).unwrap();
        std::fs::write(w.dir.join("partial"), b"x").unwrap();
        assert!(repo.list().unwrap().0.is_empty());
        let m = sealed(&repo);
        let (all, bad) = repo.list().unwrap();
        assert_eq!(all.len(), 1);
        assert!(bad.is_empty());
        assert_eq!(repo.resolve("latest", "n1").unwrap().id, m.id);
        assert!(repo.resolve("latest", "other").is_err());
        assert_eq!(repo.discard_incomplete("n1").unwrap().len(), 1);
    }

    /// A repository whose keyring signs (as every configured one does).
    fn signing_repo(root: &Path) -> Repository {
        let repo = Repository::open(root).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        repo.set_keyring(trust::Keyring::from_keys(Some(key), vec![]));
        repo
    }

    #[test]
    fn latest_skips_untrusted_backups_and_a_trusted_drill_is_re_signed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = signing_repo(dir.path());
        let signed = sealed(&repo);
        let drill = DrillRecord {
            at: Utc::now(),
            result: DrillResult::Passed,
            duration_ms: 1,
            detail: String::new(),
            run: "r".into(),
        };
        let drilled = repo.record_drill(&signed.id, drill).unwrap();
        assert_eq!(repo.untrusted_because(&drilled), None, "re-signed");
        std::thread::sleep(Duration::from_millis(1100));
        repo.set_keyring(trust::Keyring::default());
        let unsigned = sealed(&repo);
        assert!(repo.untrusted_because(&unsigned).is_some());
        assert!(repo.untrusted_because(&drilled).is_some(), "no key trusted");
        let e = repo.resolve("latest", "n1").unwrap_err().to_string();
        assert!(e.contains("no trusted backup; 2 untrusted"), "{e}");
        let repo = signing_repo(dir.path());
        assert_eq!(repo.resolve("latest", "n1").unwrap().id, signed.id);
    }

    fn dump_readable(_: &Path) -> Result<DumpCheck, BackendError> {
        Ok(DumpCheck {
            entries: 1,
            table_data: 0,
        })
    }

    fn base_verifies(_: &Path) -> Result<BaseBackupCheck, BackendError> {
        Ok(BaseBackupCheck {
            files: 1,
            wal_checked: true,
        })
    }

    fn checks_passing() -> ContentChecks<'static> {
        ContentChecks {
            dump: &dump_readable,
            base_backup: &base_verifies,
        }
    }

    fn base_info() -> BaseBackupInfo {
        BaseBackupInfo {
            format: "plain".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            server_version: "15.8".into(),
            timeline: 1,
            start_lsn: "0/2000028".into(),
            end_lsn: "0/2000100".into(),
            databases: vec!["validator".into()],
            dirs: vec!["base".into(), "pg_notify".into()],
        }
    }

    /// A physical backup is sealed like a logical one (every file of the copy checksummed,
    /// signed) and says so in its manifest; its base backup is checked by the backend's
    /// tool on verify, whose refusal is a problem of the backup.
    #[test]
    fn a_physical_backup_is_sealed_and_its_base_backup_checked() {
        let dir = tempfile::tempdir().unwrap();
        let repo = signing_repo(dir.path());
        let mut w = repo.begin("n1", 0).unwrap();
        let base = w.base_backup_dir();
        std::fs::create_dir_all(base.join("base/1")).unwrap();
        std::fs::create_dir_all(base.join("pg_notify")).unwrap();
        std::fs::write(base.join("base/1/1259"), b"heap").unwrap();
        std::fs::write(base.join("backup_manifest"), b"{}").unwrap();
        w.record_base_backup(base_info());
        let m = w.seal(&mut |_| {}).unwrap();
        assert_eq!(m.kind, BackupKind::Physical);
        assert_eq!(m.server_version, "15.8");
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["cluster/backup_manifest", "cluster/base/1/1259"]);
        assert_eq!(repo.untrusted_because(&m), None, "signed like any backup");
        let read = repo.manifest(&m.id).unwrap();
        assert_eq!(read.base_backup.as_ref().unwrap().info, base_info_of(&m));
        let r = repo.verify(&m.id, &checks_passing(), &mut |_| {}).unwrap();
        assert!(r.ok && r.base_backup.is_some(), "{r:?}");

        let refused = |p: &Path| -> Result<BaseBackupCheck, BackendError> {
            Err(BackendError::Verification(format!(
                "pg_verifybackup {}: checksum mismatch for file \"base/1/1259\"",
                p.display()
            )))
        };
        let checks = ContentChecks {
            dump: &dump_readable,
            base_backup: &refused,
        };
        let r = repo.verify(&m.id, &checks, &mut |_| {}).unwrap();
        assert!(!r.ok);
        assert!(
            r.problems[0].starts_with("base backup cluster does not verify: "),
            "{r:?}"
        );
    }

    fn base_info_of(m: &Manifest) -> BaseBackupInfo {
        m.base_backup.as_ref().unwrap().info.clone()
    }

    /// A physical backup is restorable without dumps, but not without its base backup,
    /// nor when its server held no database the node runs its participant on.
    #[test]
    fn a_physical_backup_is_judged_by_its_base_backup() {
        let mut m = Manifest::for_test("n1-20261124-101500", Utc::now());
        m.kind = BackupKind::Physical;
        let into = RunningNode {
            name: "n1",
            migration_id: 0,
            participant: None,
            max_age: Duration::from_secs(30 * 86_400),
            participant_db: Some("participant-0"),
        };
        let o = restore_objections(&m, &into, Utc::now());
        assert_eq!(o.len(), 1, "{o:?}");
        assert!(o[0].contains("lacks its base backup"), "{o:?}");
        let mut info = base_info();
        info.databases = vec!["participant-0".into(), "validator".into()];
        m.base_backup = Some(BaseBackupEntry {
            dir: BASE_BACKUP_DIR.into(),
            info: info.clone(),
        });
        assert!(restore_objections(&m, &into, Utc::now()).is_empty());
        info.databases = vec!["validator".into()];
        m.base_backup.as_mut().unwrap().info = info;
        let o = restore_objections(&m, &into, Utc::now());
        assert!(o[0].contains("holds no database `participant-0`"), "{o:?}");
    }

    #[test]
    fn a_backup_is_never_both_logical_and_physical() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path()).unwrap();
        let mut w = repo.begin("n1", 0).unwrap();
        std::fs::create_dir_all(w.dump_dir("validator")).unwrap();
        w.record_dump(info("validator"));
        w.record_base_backup(base_info());
        let e = w.seal(&mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
    }

    /// Manifests written before kinds existed read as logical, and a logical manifest is
    /// written without the field: its bytes, and so its signature, are what they were.
    #[test]
    fn manifests_without_a_kind_are_logical_and_stay_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path()).unwrap();
        let m = sealed(&repo);
        let text = std::fs::read_to_string(repo.backup_dir(&m.id).join("manifest.json")).unwrap();
        assert!(
            !text.contains("\"kind\"") && !text.contains("base_backup"),
            "{text}"
        );
        let read = repo.manifest(&m.id).unwrap();
        assert_eq!(read.kind, BackupKind::Logical);
        assert_eq!(trust::canonical_bytes(&read), trust::canonical_bytes(&m));
    }

    #[test]
    fn verify_catches_corruption_truncation_and_extra_files() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path()).unwrap();
        let m = sealed(&repo);
        let ok = checks_passing();
        assert!(repo.verify(&m.id, &ok, &mut |_| {}).unwrap().ok);

        let bdir = repo.backup_dir(&m.id);
        std::fs::write(bdir.join("validator/toc.dat"), b"validator tox").unwrap();
        std::fs::write(bdir.join("participant/toc.dat"), b"p").unwrap();
        std::fs::write(bdir.join("participant/evil.dat"), b"p").unwrap();
        let r = repo.verify(&m.id, &ok, &mut |_| {}).unwrap();
        assert!(!r.ok);
        let text = r.problems.join("\n");
        assert!(
            text.contains("validator/toc.dat: sha256 mismatch"),
            "{text}"
        );
        assert!(text.contains("participant/toc.dat: size"), "{text}");
        assert!(
            text.contains("participant/evil.dat: not in the manifest"),
            "{text}"
        );
    }

    fn sealed_stamped(repo: &Repository) -> (Manifest, SealStamps) {
        let mut w = repo.begin("n1", 0).unwrap();
        for role in ["validator", "participant"] {
            std::fs::create_dir_all(w.dump_dir(role)).unwrap();
            std::fs::write(w.dump_dir(role).join("toc.dat"), format!("{role} toc")).unwrap();
            w.record_dump(info(role));
        }
        w.seal_stamped(&mut |_| {}).unwrap()
    }

    /// The verify right after a seal reads nothing the seal hashed and nothing changed
    /// since; a file rewritten in between is read again and its damage found, even with
    /// the same size and its modification time set back (the change time moves anyway).
    #[test]
    fn a_verify_after_the_seal_trusts_only_files_unchanged_since() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path()).unwrap();
        let (m, stamps) = sealed_stamped(&repo);
        assert_eq!(stamps.len(), 2);
        let ok = checks_passing();
        let mut read = 0;
        let r = repo
            .verify_after_seal(&m.id, &ok, &stamps, &mut |n| read += n)
            .unwrap();
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!((r.files_checked, r.files_unchanged_since_seal), (2, 2));
        assert_eq!((r.bytes_checked, read), (0, 0));

        let path = repo.backup_dir(&m.id).join("validator/toc.dat");
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"validator tox").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let r = repo
            .verify_after_seal(&m.id, &ok, &stamps, &mut |_| {})
            .unwrap();
        assert!(!r.ok);
        assert_eq!(r.files_unchanged_since_seal, 1);
        assert!(
            r.problems
                .join("\n")
                .contains("validator/toc.dat: sha256 mismatch"),
            "{:?}",
            r.problems
        );
        // Another backup's stamps vouch for nothing here.
        let (_, other) = sealed_stamped(&repo);
        let r = repo
            .verify_after_seal(&m.id, &ok, &other, &mut |_| {})
            .unwrap();
        assert_eq!(r.files_unchanged_since_seal, 0);
    }

    #[test]
    fn objections_follow_splice_rules() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path()).unwrap();
        let m = sealed(&repo);
        let day = Duration::from_secs(86_400);
        let mut into = RunningNode {
            name: "n1",
            migration_id: 0,
            participant: None,
            max_age: 30 * day,
            participant_db: None,
        };
        assert!(restore_objections(&m, &into, Utc::now()).is_empty());
        let later = Utc::now() + chrono::Duration::days(31);
        into.migration_id = 1;
        let o = restore_objections(&m, &into, later);
        assert_eq!(o.len(), 2, "{o:?}");
        assert!(o[0].contains("migration id 0"));
        assert!(o[1].contains("older than repository.max_age"));
    }

    /// After a re-onboard the node runs under a new participant id: a backup holding the
    /// old one is refused; one holding the current id, or one without identities, is not.
    #[test]
    fn a_backup_of_another_participant_id_is_objected_to() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path()).unwrap();
        let mut m = sealed(&repo);
        let into = RunningNode {
            name: "n1",
            migration_id: 0,
            participant: Some("acme-2"),
            max_age: Duration::from_secs(86_400),
            participant_db: None,
        };
        assert!(
            restore_objections(&m, &into, Utc::now()).is_empty(),
            "no identities: no claim"
        );
        m.identities = Some(IdentitiesEntry {
            file: "identities.json.age".into(),
            participant_id: "PAR::acme::1220ab".into(),
            recipients: vec![],
        });
        let o = restore_objections(&m, &into, Utc::now());
        assert_eq!(o.len(), 1, "{o:?}");
        assert!(
            o[0].contains("participant acme;") && o[0].contains("acme-2 since a re-onboard"),
            "{}",
            o[0]
        );
        m.identities.as_mut().unwrap().participant_id = "acme-2::1220ab".into();
        assert!(restore_objections(&m, &into, Utc::now()).is_empty());
        let original = RunningNode {
            participant: None,
            ..into
        };
        m.identities.as_mut().unwrap().participant_id = "acme::1220ab".into();
        assert!(restore_objections(&m, &original, Utc::now()).is_empty());
    }

    /// The database a restore fills must be `participant-<running migration id>` (compose)
    /// or `participant_<id>` (helm), and the backup's participant dump must come from it.
    #[test]
    fn the_participant_database_must_be_the_running_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path()).unwrap();
        let mut m = sealed(&repo);
        m.dumps
            .iter_mut()
            .filter(|d| d.info.role == "participant")
            .for_each(|d| d.info.database = "participant-1".into());
        m.migration_id = 1;
        let into = RunningNode {
            name: "n1",
            migration_id: 1,
            participant: None,
            max_age: Duration::from_secs(86_400),
            participant_db: Some("participant-1"),
        };
        assert!(restore_objections(&m, &into, Utc::now()).is_empty());

        // MIGRATION_ID unset: compose would create and use `participant-`.
        let unset = RunningNode {
            participant_db: Some("participant-"),
            ..into
        };
        let o = restore_objections(&m, &unset, Utc::now());
        assert_eq!(o.len(), 2, "{o:?}");
        assert!(o[0].contains("MIGRATION_ID unset"), "{}", o[0]);
        assert!(o[0].contains("`participant-1`"), "{}", o[0]);
        assert!(
            o[1].contains("taken from database `participant-1`"),
            "{}",
            o[1]
        );

        // The config still names migration 0 after a network DR moved the node to 1.
        let stale = RunningNode {
            participant_db: Some("participant_0"),
            ..into
        };
        let o = restore_objections(&m, &stale, Utc::now());
        assert_eq!(o.len(), 2, "{o:?}");
        assert!(
            o[0].contains("`participant_0`") && o[0].contains("`participant_1`"),
            "{}",
            o[0]
        );
        assert!(o[0].contains("set migration_id = 1"), "{}", o[0]);

        // A backup dumped from another database than the one the node uses.
        m.dumps
            .iter_mut()
            .filter(|d| d.info.role == "participant")
            .for_each(|d| d.info.database = "participant-0".into());
        let o = restore_objections(&m, &into, Utc::now());
        assert_eq!(o.len(), 1, "{o:?}");
        assert!(
            o[0].contains("`participant-0`") && o[0].contains("uses `participant-1`"),
            "{}",
            o[0]
        );

        // A site's own name carries no migration id: only the dump's origin is compared.
        let own = RunningNode {
            participant_db: Some("acme_ledger"),
            ..into
        };
        m.dumps
            .iter_mut()
            .filter(|d| d.info.role == "participant")
            .for_each(|d| d.info.database = "acme_ledger".into());
        assert!(restore_objections(&m, &own, Utc::now()).is_empty());
        // Where only a plugin knows the name, nothing is claimed.
        let unknown = RunningNode {
            participant_db: None,
            ..into
        };
        assert!(restore_objections(&m, &unknown, Utc::now()).is_empty());
    }

    #[test]
    fn a_failed_backup_leaves_no_partial_directory() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path()).unwrap();
        let w = repo.begin("n1", 0).unwrap();
        std::fs::create_dir_all(w.dump_dir("validator")).unwrap();
        std::fs::write(w.dump_dir("validator").join("1.dat.gz"), b"partial").unwrap();
        let partial = w.dir.clone();
        drop(w);
        assert!(!partial.exists());
        assert!(std::fs::read_dir(dir.path().join(".incomplete"))
            .unwrap()
            .next()
            .is_none());
    }

    /// A real 1 MiB tmpfs holding a 600 KiB backup has no room for the next one: the error
    /// names the directory, the bytes needed and those available.
    #[test]
    fn a_backup_that_would_not_fit_is_refused_up_front() {
        let mnt = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(mnt.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (tests run as root)"
        );
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _guard = Unmount(mnt.path());
        let repo = Repository::open(mnt.path()).unwrap();
        let mut w = repo.begin("n1", 0).unwrap();
        std::fs::create_dir_all(w.dump_dir("validator")).unwrap();
        std::fs::write(w.dump_dir("validator").join("1.dat"), vec![7u8; 600 << 10]).unwrap();
        w.record_dump(info("validator"));
        w.seal(&mut |_| {}).unwrap();
        match repo.begin("n1", 0) {
            Err(RepoError::NoSpace {
                dir,
                needed,
                available,
            }) => {
                assert_eq!(dir, mnt.path());
                assert!(
                    needed > 600 << 10 && available < needed,
                    "{needed} {available}"
                );
            }
            other => panic!("expected NoSpace, got {other:?}"),
        }
        // Another node's first backup has nothing to go by and may start.
        assert!(repo.begin("n2", 0).is_ok());
    }
}
