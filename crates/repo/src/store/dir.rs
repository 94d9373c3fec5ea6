//! A directory as an off-site store: another disk, an NFS or SMB mount.
//!
//! Objects are files under the root. A file is written under a temporary name, synced and
//! renamed into place, so a crash never leaves a partial object under its real key.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use super::{BackupStore, Fill, ObjectInfo, StoreError};
use crate::fs::{short_tag, sync_dir};

/// A store rooted at a directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

fn failed(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("{}: {e}", path.display()))
}

impl DirStore {
    /// A store at `root`; the directory is created on first write.
    pub fn new(root: &Path) -> Self {
        DirStore {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty() || key.split('/').any(|s| s.is_empty() || s == "..") {
            return Err(StoreError::Failed(format!("invalid key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

impl BackupStore for DirStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, key: &str, fill: Fill<'_>) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| failed(&parent, e))?;
        let tmp = parent.join(format!(".partial-{}", short_tag()));
        let result = (|| {
            let file = File::create(&tmp)?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            fill(&mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&parent)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(failed(&path, e));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let path = self.path(key)?;
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(key.into()))
            }
            Err(e) => Err(failed(&path, e)),
        }
    }

    fn list_dirs(&self) -> Result<Vec<String>, StoreError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(failed(&self.root, e)),
        };
        let mut out: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        out.sort();
        Ok(out)
    }

    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let base = self.path(dir)?;
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(&d, e)),
            };
            for e in entries.flatten() {
                let p = e.path();
                let meta = e.metadata().map_err(|err| failed(&p, err))?;
                if meta.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&self.root) {
                    out.push(ObjectInfo {
                        key: rel.to_string_lossy().replace('\\', "/"),
                        size: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(failed(&path, e)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed(&path, e)),
        }
        // Remove directories left empty, up to (not including) the root.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn free_bytes(&self) -> Option<u64> {
        crate::fs::free_bytes(&self.root)
    }
}
