//! Which host this daemon is: the identity every backup records as its taker, so that a
//! restore or re-onboard elsewhere can tell it may be starting a second live copy of the
//! node (Canton loses data on the live node when a backup of it is started elsewhere).
//!
//! The identity is 32 random hex digits generated once into `state_dir/host-id`, not
//! `/etc/machine-id` or the hostname:
//! - the machine id is missing or baked into the image in containers, and shared by every
//!   VM cloned from one template; the hostname is not unique and a k8s pod's changes on
//!   every restart;
//! - the state directory is what makes a daemon *this* daemon: it holds the node's
//!   participant-id registry, its journal and the kept copies of its data. On k8s both
//!   replicas share one state volume in the node's namespace (`deploy/k8s/`), so the
//!   identity is that deployment's — the cluster and namespace —, whichever pod runs;
//! - a fresh host (an empty state directory) is another host, which is exactly the case
//!   that needs the operator's word that the old node is stopped.
//!
//! A state directory copied to another machine carries its identity along (it *is* the
//! old daemon then, registry included); docs/CONFIG.md says to remove `host-id` from such
//! a copy while the old machine may still run.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The file under `state_dir` holding the host id.
pub const HOST_ID_FILE: &str = "host-id";

/// This host, as backups record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThisHost {
    /// 32 lower-case hex digits from `state_dir/host-id`.
    pub id: String,
    /// What to call it in messages: the hostname, and on k8s the namespace too.
    pub name: String,
}

/// Why the host id cannot be read or created.
#[derive(Debug, thiserror::Error)]
#[error("host identity {path}: {message}")]
pub struct HostIdError {
    /// The `host-id` file.
    pub path: PathBuf,
    /// What is wrong and what to do.
    pub message: String,
}

/// This host's identity, created on first use. Two processes creating it at once agree:
/// the id is written to a private file and linked into place, and the loser reads the
/// winner's.
pub fn this_host(state_dir: &Path) -> Result<ThisHost, HostIdError> {
    let path = state_dir.join(HOST_ID_FILE);
    let err = |message: String| HostIdError {
        path: path.clone(),
        message,
    };
    let id = match read_id(&path) {
        Ok(Some(id)) => id,
        Ok(None) => create(state_dir, &path).map_err(|e| err(e.to_string()))?,
        Err(message) => return Err(err(message)),
    };
    Ok(ThisHost {
        id,
        name: host_name(),
    })
}

/// The id in `path`, `None` when there is no file; a damaged file is an error (a new id
/// would make every backup of this host look like another host's).
fn read_id(path: &Path) -> Result<Option<String>, String> {
    let mut text = String::new();
    match std::fs::File::open(path) {
        Ok(f) => f
            .take(256)
            .read_to_string(&mut text)
            .map_err(|e| format!("unreadable: {e}"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    let id = text.trim();
    if splice_dr_repo::untrusted::is_host_id(id) {
        Ok(Some(id.to_string()))
    } else {
        Err(
            "does not hold 32 lower-case hex digits: restore the file from this host's \
             state backup, or remove it to make this a new host (every earlier backup then \
             counts as another host's)"
                .into(),
        )
    }
}

/// Generates an id and links it into place; the existing id when another process won.
fn create(state_dir: &Path, path: &Path) -> std::io::Result<String> {
    std::fs::create_dir_all(state_dir)?;
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let id = hex::encode(raw);
    let tmp = state_dir.join(format!(
        ".{HOST_ID_FILE}.{}.{}",
        std::process::id(),
        splice_dr_repo::fs::short_tag()
    ));
    crate::util::write_atomic(&tmp, format!("{id}\n").as_bytes())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_id(path)
            .map_err(std::io::Error::other)?
            .ok_or_else(|| std::io::Error::other("vanished while being created")),
        Err(e) => Err(e),
    }
}

/// The hostname; on k8s `namespace NS, pod P` (the pod's name alone changes every restart).
fn host_name() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let namespace =
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some());
    let name = match namespace {
        Some(ns) => format!("k8s namespace {ns}, pod {hostname}"),
        None => hostname,
    };
    name.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_created_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = this_host(dir.path()).unwrap();
        assert!(splice_dr_repo::untrusted::is_host_id(&first.id));
        assert_eq!(this_host(dir.path()).unwrap().id, first.id);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(this_host(other.path()).unwrap().id, first.id);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only host-id remains");
    }

    #[test]
    fn a_damaged_id_is_an_error_not_a_new_host() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HOST_ID_FILE), "garbage\n").unwrap();
        let e = this_host(dir.path()).unwrap_err().to_string();
        assert!(e.contains("32 lower-case hex"), "{e}");
    }
}
