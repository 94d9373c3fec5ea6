//! A fetched DR data snapshot, kept: the DomainMigrationDump in the clear for the node to
//! start from (private, removed once the node started), and an encrypted copy with its
//! checksum in the repository.
//!
//! The dump is the node's whole ledger state and private keys, gigabytes on a real node.
//! It is never held in memory: the validator's answer is streamed to a private file
//! ([`crate::validator::ValidatorClient::data_snapshot_to_file`]), and [`store`] copies the
//! dump out of it in one pass, into the plaintext file and through age encryption into the
//! repository at once, hashing as it goes.

use sha2::Digest;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Where a stored snapshot lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The DomainMigrationDump in the clear, in the 0700 `state_dir/tmp` (start-up recovery
    /// removes it if the run dies; the flow removes it when the node has started).
    pub plain: PathBuf,
    /// `snapshots/NODE/….json.age`: encrypted to `repository.identities_recipients`.
    pub kept: PathBuf,
    /// sha256 of the dump as served (also in `….json.sha256` beside the kept copy).
    pub sha256: String,
    /// Length of the dump.
    pub bytes: u64,
}

/// What to store, and where.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    /// The validator's whole answer on disk (in `state_dir/tmp`).
    pub answer: &'a Path,
    /// The node's state directory (its private tmp receives the plaintext).
    pub state_dir: &'a Path,
    /// The repository root (its `snapshots/NODE/` receives the encrypted copy).
    pub repo_root: &'a Path,
    /// The node's name.
    pub node: &'a str,
    /// The file name, e.g. `domain_migration_dump-m1-20260101T000000Z.json`.
    pub name: &'a str,
}

/// Copies the `data_snapshot` object out of the answer (byte for byte as served) into the
/// plaintext file and, encrypted to `recipients`, into the repository, with its sha256
/// beside it. Partial files are removed on any failure; start-up recovery removes a
/// plaintext one a killed daemon left.
pub fn store(
    at: &Placement<'_>,
    recipients: &[age::x25519::Recipient],
) -> Result<StoredSnapshot, String> {
    let range = crate::validator::dump_range(at.answer).map_err(|e| e.to_string())?;
    let tmp = crate::private_tmp::ensure(at.state_dir)
        .map_err(|e| format!("creating the private tmp directory: {e}"))?;
    let prefix = format!(
        "{}{}-{}",
        crate::private_tmp::SNAPSHOT_PREFIX,
        at.node,
        at.name
    );
    let plain = tmp.join(&prefix);
    let plain_partial = tmp.join(format!("{prefix}.partial"));
    let dir = crate::private_tmp::private_dirs(
        &at.repo_root.join(splice_dr_repo::SNAPSHOTS_DIR),
        at.node,
    )
    .map_err(|e| format!("creating the snapshot directory: {e}"))?;
    let kept = dir.join(format!("{}.age", at.name));
    let kept_partial = dir.join(format!(".{}.age.partial", at.name));
    for p in [&plain_partial, &kept_partial] {
        let _ = std::fs::remove_file(p);
    }
    let copied = copy_sealed(at.answer, range, &plain_partial, &kept_partial, recipients).and_then(
        |(bytes, sha256)| {
            std::fs::rename(&plain_partial, &plain)
                .and_then(|()| std::fs::rename(&kept_partial, &kept))
                .map_err(|e| format!("{}: {e}", kept.display()))?;
            Ok((bytes, sha256))
        },
    );
    let (bytes, sha256) = match copied {
        Ok(done) => done,
        Err(e) => {
            for p in [&plain_partial, &kept_partial, &plain] {
                let _ = std::fs::remove_file(p);
            }
            return Err(format!("keeping the snapshot: {e}"));
        }
    };
    crate::util::write_atomic(
        &dir.join(format!("{}.sha256", at.name)),
        format!("{sha256}  {}\n", at.name).as_bytes(),
    )
    .map_err(|e| format!("writing the checksum of {}: {e}", kept.display()))?;
    Ok(StoredSnapshot {
        plain,
        kept,
        sha256,
        bytes,
    })
}

/// One pass over `range` of `answer`: into `plain` (created new, 0600) and through age
/// into `kept`, hashing. Returns the length and the sha256.
fn copy_sealed(
    answer: &Path,
    range: std::ops::Range<u64>,
    plain: &Path,
    kept: &Path,
    recipients: &[age::x25519::Recipient],
) -> Result<(u64, String), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut source =
        std::fs::File::open(answer).map_err(|e| format!("{}: {e}", answer.display()))?;
    source
        .seek(std::io::SeekFrom::Start(range.start))
        .map_err(|e| format!("{}: {e}", answer.display()))?;
    let copy = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(plain)
        .map_err(|e| format!("{}: {e}", plain.display()))?;
    let mut tee = Tee {
        source: std::io::BufReader::with_capacity(1 << 16, source).take(range.end - range.start),
        copy: std::io::BufWriter::with_capacity(1 << 16, copy),
        hash: sha2::Sha256::new(),
    };
    let n = crate::identities::encrypt_reader_to_file(kept, &mut tee, recipients)
        .map_err(|e| e.to_string())?;
    if n != range.end - range.start {
        return Err(format!(
            "{}: the answer ended early ({n} of {} bytes)",
            answer.display(),
            range.end - range.start
        ));
    }
    let file = tee
        .copy
        .into_inner()
        .map_err(|e| format!("{}: {e}", plain.display()))?;
    file.sync_all()
        .map_err(|e| format!("{}: {e}", plain.display()))?;
    Ok((n, hex::encode(tee.hash.finalize())))
}

/// A reader that writes what it reads to `copy` and hashes it.
struct Tee<R> {
    source: R,
    copy: std::io::BufWriter<std::fs::File>,
    hash: sha2::Sha256,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.source.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient() -> (age::x25519::Identity, Vec<age::x25519::Recipient>) {
        let id = age::x25519::Identity::generate();
        let r = id.to_public();
        (id, vec![r])
    }

    fn decrypt(path: &Path, id: &age::x25519::Identity) -> Vec<u8> {
        let d = age::Decryptor::new(std::fs::File::open(path).unwrap()).unwrap();
        let mut r = d
            .decrypt(std::iter::once(id as &dyn age::Identity))
            .unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    /// A state directory and a repository in a scratch directory, with `answer` as the
    /// validator's answer in the private tmp directory.
    struct Scratch {
        _dir: tempfile::TempDir,
        state: PathBuf,
        repo: PathBuf,
        answer: PathBuf,
    }

    impl Scratch {
        fn new(answer: &str) -> Scratch {
            let dir = tempfile::tempdir().unwrap();
            let (state, repo) = (dir.path().join("state"), dir.path().join("repo"));
            let tmp = crate::private_tmp::ensure(&state).unwrap();
            let path = tmp.join("snapshot-n-answer.json");
            std::fs::write(&path, answer).unwrap();
            Scratch {
                _dir: dir,
                state,
                repo,
                answer: path,
            }
        }

        fn store(&self, rs: &[age::x25519::Recipient]) -> Result<StoredSnapshot, String> {
            let at = Placement {
                answer: &self.answer,
                state_dir: &self.state,
                repo_root: &self.repo,
                node: "n",
                name: "d.json",
            };
            store(&at, rs)
        }
    }

    #[test]
    fn the_dump_is_kept_as_served_in_the_clear_and_encrypted() {
        let dump = r#"{"migration_id": 1,  "acs_timestamp": "t", "acs_snapshot": "QUJD"}"#;
        let scratch = Scratch::new(&format!(r#"{{"migration_id":1,"data_snapshot": {dump} }}"#));
        let repo = scratch.repo.clone();
        let (id, rs) = recipient();
        let s = scratch.store(&rs).unwrap();
        assert_eq!(std::fs::read_to_string(&s.plain).unwrap(), dump);
        assert_eq!(decrypt(&s.kept, &id), dump.as_bytes());
        assert_eq!(s.sha256, hex::encode(sha2::Sha256::digest(dump)));
        assert_eq!(s.bytes, dump.len() as u64);
        let sum = std::fs::read_to_string(repo.join("snapshots/n/d.json.sha256")).unwrap();
        assert_eq!(sum, format!("{}  d.json\n", s.sha256));
        use std::os::unix::fs::PermissionsExt;
        for p in [&s.plain, &s.kept] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
    }

    #[test]
    fn an_answer_without_a_dump_leaves_nothing() {
        let scratch = Scratch::new(r#"{"migration_id":1,"data_snapshot": "no"}"#);
        let e = scratch.store(&recipient().1).unwrap_err();
        assert!(e.contains("data_snapshot"), "{e}");
        let tmp = scratch.answer.parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
        assert_eq!(left.len(), 1, "only the answer: {left:?}");
    }
}

#[cfg(test)]
mod memory {
    //! The promise this module exists for: a snapshot far larger than what the daemon may
    //! hold passes from the validator to disk without raising the process's peak memory by
    //! its size.
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const FILLER: usize = 48 << 20;

    /// Peak resident memory of this process (a test runs alone in its process).
    fn peak_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A validator answering one data-snapshot request with a dump holding `FILLER` bytes
    /// of base64, written in 1 MiB pieces.
    async fn serve_large(listener: tokio::net::TcpListener, filler: usize) {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 16 << 10];
        let _ = sock.read(&mut head).await.unwrap();
        let start = br#"{"migration_id": 2, "data_snapshot": {"migration_id": 2, "acs_timestamp": "2026-01-01T00:00:00Z", "domain_id": "global::1220", "acs_snapshot": ""#;
        let end = br#"", "dars": []}}"#;
        let len = start.len() + filler + end.len();
        let header = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
        );
        sock.write_all(header.as_bytes()).await.unwrap();
        sock.write_all(start).await.unwrap();
        let piece = vec![b'A'; 1 << 20];
        for _ in 0..filler >> 20 {
            sock.write_all(&piece).await.unwrap();
        }
        sock.write_all(end).await.unwrap();
        sock.shutdown().await.unwrap();
    }

    fn client(url: String) -> crate::validator::ValidatorClient {
        let mut cfg = crate::validator::test_config(&url, 0);
        cfg.snapshot_timeout = Duration::from_secs(120);
        crate::validator::ValidatorClient::from_config(&cfg).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Answers one request with `status`, announcing `announced` bytes and sending `sent`
    /// of them (then closing).
    async fn serve_cut(
        listener: tokio::net::TcpListener,
        status: u16,
        announced: usize,
        sent: usize,
    ) {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 16 << 10];
        let _ = sock.read(&mut head).await.unwrap();
        let header = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {announced}\r\nconnection: close\r\n\r\n"
        );
        sock.write_all(header.as_bytes()).await.unwrap();
        let piece = vec![b'{'; 1 << 20];
        let mut left = sent;
        while left > 0 {
            let n = left.min(piece.len());
            if sock.write_all(&piece[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        let _ = sock.shutdown().await;
    }

    #[test]
    fn a_cut_answer_is_an_error_and_an_oversized_error_body_is_refused() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let answer = dir.path().join("answer.json");
        rt.block_on(async {
            // A 200 cut in the middle: never a snapshot.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = client(format!("http://{}", listener.local_addr().unwrap()));
            tokio::spawn(serve_cut(listener, 200, 4 << 20, 1 << 20));
            let e = c
                .data_snapshot_to_file("2026-01-01T00:00:00Z", 0, true, &answer)
                .await
                .unwrap_err();
            assert!(
                matches!(e, crate::validator::ValidatorError::Transport { .. }),
                "{e}"
            );
            // An error answer larger than any real one: refused, not buffered.
            let _ = std::fs::remove_file(&answer);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = client(format!("http://{}", listener.local_addr().unwrap()));
            let big = (crate::validator::MAX_ANSWER_BYTES as usize) + (1 << 20);
            tokio::spawn(serve_cut(listener, 500, big, big));
            let e = c
                .data_snapshot_to_file("2026-01-01T00:00:00Z", 0, true, &answer)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
        });
    }

    /// Fetches and stores a snapshot holding `filler` bytes of base64; returns its length.
    fn pass_through(rt: &tokio::runtime::Runtime, dir: &Path, filler: usize) -> u64 {
        let (state, repo) = (dir.join("state"), dir.join("repo"));
        let tmp = crate::private_tmp::ensure(&state).unwrap();
        let answer = tmp.join("snapshot-n-answer.json");
        let fetched = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(serve_large(listener, filler));
            client(url)
                .data_snapshot_to_file("2026-01-01T00:00:00Z", 2, true, &answer)
                .await
                .unwrap()
        });
        assert_eq!(fetched.head.data_snapshot.migration_id, 2);
        let id = age::x25519::Identity::generate();
        let at = Placement {
            answer: &answer,
            state_dir: &state,
            repo_root: &repo,
            node: "n",
            name: "d.json",
        };
        let stored = store(&at, &[id.to_public()]).unwrap();
        assert_eq!(
            std::fs::metadata(&stored.plain).unwrap().len(),
            stored.bytes
        );
        std::fs::remove_dir_all(&state).unwrap();
        std::fs::remove_dir_all(&repo).unwrap();
        stored.bytes
    }

    #[test]
    fn a_snapshot_larger_than_memory_allows_is_streamed_to_disk() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        // A small one first: the runtime's threads and every buffer on the way are then
        // in the peak already, so what follows measures what grows with the snapshot.
        pass_through(&rt, dir.path(), 1 << 20);
        let before = peak_kib();
        assert!(pass_through(&rt, dir.path(), FILLER) > FILLER as u64);
        let grown_mib = (peak_kib() - before) >> 10;
        eprintln!("peak memory grew by {grown_mib} MiB");
        assert!(
            grown_mib < 8,
            "a {} MiB snapshot raised the peak memory by {grown_mib} MiB",
            FILLER >> 20
        );
    }
}
