//! Streaming sha256 of files, so multi-gigabyte dumps never sit in memory.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::manifest::FileEntry;

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

/// Checksums every file under `root` for the manifest.
pub fn checksum_tree(
    root: &Path,
    on_bytes: &mut dyn FnMut(u64),
) -> std::io::Result<Vec<FileEntry>> {
    list_files(root)?
        .into_iter()
        .map(|rel| {
            let (sha256, size) = sha256_file(&root.join(&rel), on_bytes)?;
            Ok(FileEntry {
                path: rel.to_string_lossy().replace('\\', "/"),
                size,
                sha256,
            })
        })
        .collect()
}
