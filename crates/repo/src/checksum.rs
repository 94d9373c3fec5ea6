//! Streaming sha256 of files, so multi-gigabyte dumps never sit in memory.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::manifest::FileEntry;
use super::seal_stamp::SealStamps;

/// Hashes one file, calling `on_bytes` with each chunk's size (for progress).
pub fn sha256_file(path: &Path, on_bytes: &mut dyn FnMut(u64)) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        on_bytes(n as u64);
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// All regular files under `root`, relative and sorted, skipping `manifest.json`.
pub fn list_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let child = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() && child != Path::new("manifest.json") {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One file's hash and size, or why it could not be read.
pub type Hashed = std::io::Result<(String, u64)>;

/// Hashes `paths` on up to four threads (a dump is many files, and a backup's seal and
/// verify were a quarter of its time on one core), largest first so the threads finish
/// together. Results are in the order of `paths`; `on_bytes` is called from this thread.
pub fn sha256_files(paths: &[PathBuf], on_bytes: &mut dyn FnMut(u64)) -> Vec<Hashed> {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let mut order: Vec<usize> = (0..paths.len()).collect();
    let size = |i: &usize| std::fs::metadata(&paths[*i]).map(|m| m.len()).unwrap_or(0);
    order.sort_by_key(|i| std::cmp::Reverse(size(i)));
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
        .min(paths.len().max(1));
    let next = AtomicUsize::new(0);
    let hashed = AtomicU64::new(0);
    let results: Mutex<Vec<Option<Hashed>>> = Mutex::new((0..paths.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let r = sha256_file(&paths[i], &mut |n| {
                            hashed.fetch_add(n, Ordering::Relaxed);
                        });
                        if let Ok(mut all) = results.lock() {
                            all[i] = Some(r);
                        }
                    }
                })
            })
            .collect();
        let mut reported = 0;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let now = hashed.load(Ordering::Relaxed);
            on_bytes(now - reported);
            reported = now;
        }
        on_bytes(hashed.load(Ordering::Relaxed) - reported);
    });
    let all = results.into_inner().unwrap_or_else(|p| p.into_inner());
    all.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("not hashed (a thread failed)"))))
        .collect()
}

/// Checksums every file under `root` for the manifest, stamping each in `stamps` before
/// it is hashed (see [`SealStamps`]).
pub fn checksum_tree(
    root: &Path,
    stamps: &mut SealStamps,
    on_bytes: &mut dyn FnMut(u64),
) -> std::io::Result<Vec<FileEntry>> {
    let rels: Vec<String> = list_files(root)?
        .iter()
        .map(|rel| rel.to_string_lossy().replace('\\', "/"))
        .collect();
    let paths: Vec<PathBuf> = rels.iter().map(|rel| root.join(rel)).collect();
    for (rel, path) in rels.iter().zip(&paths) {
        stamps.stamp(rel, path);
    }
    rels.into_iter()
        .zip(sha256_files(&paths, on_bytes))
        .map(|(path, hashed)| {
            let (sha256, size) = hashed?;
            stamps.hashed(&path, &sha256, size);
            Ok(FileEntry { path, size, sha256 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_hashes_keep_the_order_and_report_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (i, len) in [3usize, 5 << 20, 0, 70_000, 1].iter().enumerate() {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, vec![i as u8; *len]).unwrap();
            paths.push(p);
        }
        paths.push(dir.path().join("missing"));
        let mut reported = 0;
        let got = sha256_files(&paths, &mut |n| reported += n);
        for (p, r) in paths.iter().zip(&got).take(5) {
            assert_eq!(r.as_ref().unwrap(), &sha256_file(p, &mut |_| {}).unwrap());
        }
        assert!(got[5].is_err());
        assert_eq!(reported, 3 + (5 << 20) + 70_000 + 1);
    }
}
