//! Off-site repositories: sealed backups copied to [`BackupStore`]s, committed by their
//! manifest, checked on the way back.
//!
//! Layout in a store, mirroring the local repository:
//!
//! ```text
//! <backup-id>/<file>            every file the manifest lists (`.age` added when encrypted)
//! <backup-id>/manifest.json     written last: its presence makes the backup exist there
//! ```
//!
//! An upload cut short (daemon killed, network lost) leaves objects without a manifest:
//! never listed, reported by `repo check`, removed by the node's next backup. A download
//! recomputes every file's sha256 and size against the manifest before anything is
//! restored from it. With `encrypt_to` set every object, the manifest included, is
//! encrypted with age; the secret key stays on the host (`identity_file`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::store::{dir::DirStore, s3::S3Store, BackupStore, StoreError};
use super::{DrillRecord, Manifest, RepoError, Repository};
use crate::config::{OffsiteConfig, OffsiteKind};

/// Name of the manifest object; its presence commits a backup.
const MANIFEST: &str = "manifest.json";
/// Suffix of encrypted objects.
const AGE_SUFFIX: &str = ".age";
/// Read/write buffer of streamed copies.
const COPY_BUF: usize = 1 << 20;

/// One configured off-site repository.
pub struct OffsiteRepo {
    name: String,
    primary: bool,
    store: Box<dyn BackupStore>,
    recipients: Vec<age::x25519::Recipient>,
    identity_file: Option<PathBuf>,
}

impl std::fmt::Debug for OffsiteRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsiteRepo")
            .field("name", &self.name)
            .field("location", &self.store.location())
            .finish()
    }
}

pub use splice_dr_protocol::answers::CheckReport;

fn store_err(repo: &str, e: StoreError) -> RepoError {
    match e {
        StoreError::NotFound(k) => RepoError::NotFound(format!("{k} (repository {repo})")),
        StoreError::Failed(m) => RepoError::Io {
            path: PathBuf::from(repo),
            message: m,
        },
    }
}

impl OffsiteRepo {
    /// Builds the repository's store from config. Contacts nothing. (Its `retention` is
    /// the daemon's to apply and is not read here.)
    pub fn from_config<R>(cfg: &OffsiteConfig<R>) -> Result<Self, RepoError> {
        let store: Box<dyn BackupStore> = match cfg.kind {
            OffsiteKind::Directory => {
                Box::new(DirStore::new(cfg.path.as_deref().unwrap_or(Path::new(""))))
            }
            OffsiteKind::S3 => Box::new(S3Store::new(cfg).map_err(|e| store_err(&cfg.name, e))?),
        };
        let recipients = if cfg.encrypt_to.is_empty() {
            Vec::new()
        } else {
            let parsed = cfg.encrypt_to.iter().map(|r| crate::keys::age_recipient(r));
            parsed
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RepoError::Io {
                    path: PathBuf::from(&cfg.name),
                    message: format!("repository.identities_recipients: {e}"),
                })?
        };
        Ok(OffsiteRepo {
            name: cfg.name.clone(),
            primary: cfg.primary,
            store,
            recipients,
            identity_file: cfg.identity_file.clone(),
        })
    }

    /// A repository over any store (tests, benchmarks).
    pub fn with_store(name: &str, store: Box<dyn BackupStore>) -> Self {
        OffsiteRepo {
            name: name.into(),
            primary: false,
            store,
            recipients: Vec::new(),
            identity_file: None,
        }
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it is, for operators.
    pub fn location(&self) -> String {
        self.store.location()
    }

    fn encrypted(&self) -> bool {
        !self.recipients.is_empty()
    }

    fn key(&self, id: &str, rel: &str) -> String {
        if self.encrypted() {
            format!("{id}/{rel}{AGE_SUFFIX}")
        } else {
            format!("{id}/{rel}")
        }
    }

    fn err(&self, e: StoreError) -> RepoError {
        store_err(&self.name, e)
    }

    /// Writes `src` into the object `key`, encrypted when the repository is, counting the
    /// plain bytes read.
    fn put_from(
        &self,
        key: &str,
        src: &mut dyn Read,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(), RepoError> {
        let recipients = &self.recipients;
        self.store
            .put(key, &mut |sink| {
                if recipients.is_empty() {
                    return copy(src, sink, on_bytes);
                }
                let enc = age::Encryptor::with_recipients(
                    recipients.iter().map(|r| r as &dyn age::Recipient),
                )
                .map_err(std::io::Error::other)?;
                let mut w = enc.wrap_output(sink)?;
                copy(src, &mut w, on_bytes)?;
                w.finish().map(|_| ())
            })
            .map_err(|e| self.err(e))
    }

    /// Opens the object `key` for reading, decrypting when the repository is encrypted.
    fn get_plain(&self, key: &str) -> Result<Box<dyn Read + Send>, RepoError> {
        let raw = self.store.get(key).map_err(|e| self.err(e))?;
        if !self.encrypted() {
            return Ok(raw);
        }
        let identity_file = self.identity_file.as_ref().ok_or_else(|| RepoError::Io {
            path: PathBuf::from(&self.name),
            message: "encrypted repository without identity_file: cannot read it".into(),
        })?;
        let identities = age::IdentityFile::from_file(identity_file.display().to_string())
            .and_then(|f| f.into_identities().map_err(std::io::Error::other))
            .map_err(|e| RepoError::Io {
                path: identity_file.clone(),
                message: format!("reading the repository's age key: {e}"),
            })?;
        let decrypting = age::Decryptor::new(raw)
            .and_then(|d| d.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)))
            .map_err(|e| RepoError::Io {
                path: PathBuf::from(&self.name),
                message: format!(
                    "cannot decrypt {key} with {}: {e} (is it the key of this repository's encrypt_to?)",
                    identity_file.display()
                ),
            })?;
        Ok(Box::new(decrypting))
    }

    /// Copies a sealed local backup here: every file, then the manifest, so the backup is
    /// listed only once complete. Objects left by an earlier attempt are replaced.
    pub fn upload(
        &self,
        local: &Repository,
        manifest: &Manifest,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(), RepoError> {
        let dir = local.backup_dir(&manifest.id);
        for f in &manifest.files {
            let path = dir.join(&f.path);
            let mut file = std::fs::File::open(&path).map_err(|e| RepoError::Io {
                path: path.clone(),
                message: e.to_string(),
            })?;
            self.put_from(&self.key(&manifest.id, &f.path), &mut file, on_bytes)?;
        }
        self.write_manifest(manifest)
    }

    /// Copies the sealed WAL file `name` of `archive` (node `node`) here as
    /// `wal/<node>/<name>` (encrypted like every object when the repository is), then its
    /// checksum as `<name>.sha256`, which commits it. Answers `false` when it was already
    /// committed here (an earlier copy, or a daemon restarted and offering it again).
    pub fn copy_wal(
        &self,
        node: &str,
        archive: &super::wal::WalArchive,
        name: &str,
    ) -> Result<bool, RepoError> {
        let (data, sum) = archive.sealed_files(name)?;
        let rel = format!("{node}/{name}");
        let sum_key = self.key(super::wal::WAL_DIR, &format!("{rel}.sha256"));
        if self.store.exists(&sum_key).map_err(|e| self.err(e))? {
            return Ok(false);
        }
        let mut file = std::fs::File::open(&data).map_err(|e| RepoError::Io {
            path: data.clone(),
            message: e.to_string(),
        })?;
        self.put_from(&self.key(super::wal::WAL_DIR, &rel), &mut file, &mut |_| {})?;
        let mut sum_file = std::fs::File::open(&sum).map_err(|e| RepoError::Io {
            path: sum.clone(),
            message: e.to_string(),
        })?;
        self.put_from(&sum_key, &mut sum_file, &mut |_| {})?;
        Ok(true)
    }

    /// Writes (or rewrites, after a drill) a backup's manifest: the commit point.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), RepoError> {
        let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| RepoError::Io {
            path: PathBuf::from(&self.name),
            message: e.to_string(),
        })?;
        self.put_from(
            &self.key(&manifest.id, MANIFEST),
            &mut bytes.as_slice(),
            &mut |_| {},
        )
    }

    /// A backup's manifest, `NotFound` when the backup is not (completely) here. Whoever
    /// can write the bucket wrote it: read bounded and checked before any path in it is
    /// used ([`Manifest::from_untrusted`]).
    pub fn manifest(&self, id: &str) -> Result<Manifest, RepoError> {
        if super::untrusted::check_name(id).is_err() {
            return Err(RepoError::NotFound(id.into()));
        }
        let mut src = self
            .get_plain(&self.key(id, MANIFEST))
            .map_err(|e| match e {
                RepoError::NotFound(_) => RepoError::NotFound(id.into()),
                other => other,
            })?;
        let in_repo = |mut e: super::untrusted::ManifestError| {
            e.message = format!("{} (repository {})", e.message, self.name);
            RepoError::Refused(e)
        };
        let bytes = super::untrusted::read_bounded(&mut src, id).map_err(in_repo)?;
        Manifest::from_untrusted(&bytes, id).map_err(in_repo)
    }

    /// Sealed backups (newest first), unreadable manifests, and backup directories that
    /// have no manifest (uploads that never finished).
    pub fn list(&self) -> Result<Listing, RepoError> {
        let mut out = Listing::default();
        for id in self.store.list_dirs().map_err(|e| self.err(e))? {
            if id == super::wal::WAL_DIR {
                continue; // the continuous WAL of the nodes (`copy_wal`), not a backup
            }
            if let Err(why) = super::untrusted::check_name(&id) {
                tracing::warn!(
                    "repository {}: skipping `{}`: not a backup id ({why})",
                    self.name,
                    id.escape_debug()
                );
                continue;
            }
            match self.manifest(&id) {
                Ok(m) => out.backups.push(m),
                Err(RepoError::NotFound(_)) => out.incomplete.push(id),
                Err(e) => out.unreadable.push(e),
            }
        }
        out.backups
            .sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Downloads a backup into the local repository (staged in `.incomplete/`, published
    /// by one rename), checking every file's size and sha256 against the manifest first.
    pub fn download(
        &self,
        local: &Repository,
        id: &str,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<Manifest, RepoError> {
        let manifest = self.manifest(id)?;
        let staging = local.staging_dir(id);
        let _ = std::fs::remove_dir_all(&staging);
        let result = self.download_files(&manifest, &staging, on_bytes);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| RepoError::Io {
            path: staging.clone(),
            message: e.to_string(),
        })?;
        crate::fs::write_atomic(&staging.join(MANIFEST), &bytes).map_err(|e| RepoError::Io {
            path: staging.clone(),
            message: e.to_string(),
        })?;
        local.publish_staged(id)?;
        Ok(manifest)
    }

    fn download_files(
        &self,
        manifest: &Manifest,
        staging: &Path,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(), RepoError> {
        for f in &manifest.files {
            let dest = staging.join(&f.path);
            let io = |e: std::io::Error| RepoError::Io {
                path: dest.clone(),
                message: e.to_string(),
            };
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let mut src = self.get_plain(&self.key(&manifest.id, &f.path))?;
            let mut out = std::fs::File::create(&dest).map_err(io)?;
            let mut hasher = HashingWriter::new(&mut out);
            copy(&mut src, &mut hasher, on_bytes).map_err(|e| RepoError::Io {
                path: PathBuf::from(&self.name),
                message: format!(
                    "backup {}: downloading {} failed: {e} (a corrupted or truncated object)",
                    manifest.id, f.path
                ),
            })?;
            let (sum, size) = hasher.finish();
            if size != f.size || sum != f.sha256 {
                return Err(RepoError::Io {
                    path: PathBuf::from(&self.name),
                    message: format!(
                        "backup {}: {} downloaded from repository {} does not match its manifest \
                         ({size} bytes, sha256 {}…; manifest: {} bytes, {}…): the object is \
                         corrupted; nothing was restored from it — use another repository or backup",
                        manifest.id,
                        f.path,
                        self.name,
                        &sum[..12.min(sum.len())],
                        f.size,
                        &f.sha256[..12.min(f.sha256.len())]
                    ),
                });
            }
            out.sync_all().map_err(io)?;
        }
        Ok(())
    }

    /// Deletes a backup: the manifest first (so it stops being listed at once), then every
    /// other object under it.
    pub fn delete(&self, id: &str) -> Result<(), RepoError> {
        self.store
            .delete(&self.key(id, MANIFEST))
            .map_err(|e| self.err(e))?;
        self.delete_objects(id)
    }

    fn delete_objects(&self, id: &str) -> Result<(), RepoError> {
        for o in self.store.list(id).map_err(|e| self.err(e))? {
            self.store.delete(&o.key).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Removes what interrupted uploads of `node` left. Call only while holding the node's
    /// lock, so no upload of it is in progress.
    pub fn discard_incomplete(&self, node: &str) -> Result<Vec<String>, RepoError> {
        let mut removed = Vec::new();
        // Only this node's directories, and only whether their manifest exists: no
        // manifest of any other backup is read (or decrypted) on the way to an upload.
        for id in self.store.list_dirs().map_err(|e| self.err(e))? {
            if !super::is_backup_of(&id, node) {
                continue;
            }
            let committed = self
                .store
                .exists(&self.key(&id, MANIFEST))
                .map_err(|e| self.err(e))?;
            if !committed {
                self.delete_objects(&id)?;
                removed.push(id);
            }
        }
        Ok(removed)
    }

    /// Records a drill in the copy of the manifest held here, when the backup is here.
    pub fn record_drill(
        &self,
        id: &str,
        drill: &DrillRecord,
        keys: &super::trust::Keyring,
    ) -> Result<bool, RepoError> {
        let mut m = match self.manifest(id) {
            Ok(m) => m,
            Err(RepoError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        super::record_drill_in(&mut m, drill.clone(), keys);
        self.write_manifest(&m)?;
        Ok(true)
    }

    /// Lists, writes, reads back and deletes a probe object, and reports free space.
    pub fn check(&self) -> CheckReport {
        let mut report = CheckReport {
            repository: self.name.clone(),
            location: self.location(),
            ok: true,
            backups: 0,
            incomplete: Vec::new(),
            free_bytes: self.store.free_bytes(),
            checks: Vec::new(),
        };
        match self.list() {
            Ok(l) => {
                report.backups = l.backups.len();
                report.incomplete = l.incomplete;
                report
                    .checks
                    .push(format!("listable: ok ({} backups)", report.backups));
                for e in l.unreadable {
                    report.ok = false;
                    report.checks.push(format!("manifest unreadable: {e}"));
                }
            }
            Err(e) => {
                report.ok = false;
                report.checks.push(format!("listable: FAILED: {e}"));
            }
        }
        let probe = format!(".splice-dr-check-{}", crate::fs::short_tag());
        let payload = format!("splice-dr repo check {}", chrono::Utc::now());
        let round_trip = self
            .store
            .put_bytes(&probe, payload.as_bytes())
            .and_then(|()| self.store.get_bytes(&probe))
            .and_then(|back| {
                if back == payload.as_bytes() {
                    Ok(())
                } else {
                    Err(StoreError::Failed("the probe read back differs".into()))
                }
            });
        let cleaned = self.store.delete(&probe);
        match round_trip.and(cleaned) {
            Ok(()) => report.checks.push("writable and readable: ok".into()),
            Err(e) => {
                report.ok = false;
                report
                    .checks
                    .push(format!("writable and readable: FAILED: {e}"));
            }
        }
        report
    }
}

/// What a repository holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sealed backups, newest first.
    pub backups: Vec<Manifest>,
    /// Manifests that exist but cannot be read.
    pub unreadable: Vec<RepoError>,
    /// Backup directories without a manifest.
    pub incomplete: Vec<String>,
}

/// Every configured off-site repository, the primary first.
#[derive(Debug, Clone, Default)]
pub struct Offsite {
    repos: Vec<Arc<OffsiteRepo>>,
}

impl Offsite {
    /// Builds every `[[repository.offsite]]`; contacts nothing.
    pub fn from_config<R>(list: &[OffsiteConfig<R>]) -> Result<Self, RepoError> {
        let mut repos = list
            .iter()
            .map(|c| OffsiteRepo::from_config(c).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        repos.sort_by_key(|r| !r.primary);
        Ok(Offsite { repos })
    }

    /// The repositories, primary first.
    pub fn repos(&self) -> &[Arc<OffsiteRepo>] {
        &self.repos
    }

    /// Whether any is configured.
    pub fn is_empty(&self) -> bool {
        self.repos.is_empty()
    }

    /// The repository called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<OffsiteRepo>> {
        self.repos.iter().find(|r| r.name == name)
    }

    /// The first repository (primary first) holding backup `id`, with its manifest.
    pub fn find(&self, id: &str) -> Result<(Arc<OffsiteRepo>, Manifest), RepoError> {
        let mut last = None;
        for r in &self.repos {
            match r.manifest(id) {
                Ok(m) => return Ok((r.clone(), m)),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(RepoError::NotFound(_)) | None => RepoError::NotFound(id.into()),
            Some(e) => e,
        })
    }
}

/// Copies `src` into `dst` in `COPY_BUF` pieces, reporting each piece's size.
fn copy(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    on_bytes: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        on_bytes(n as u64);
    }
    dst.flush()
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    size: u64,
}

impl<'a> HashingWriter<'a> {
    fn new(inner: &'a mut dyn Write) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.size)
    }
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
