//! Files into the cluster: a file copied into a pod's volume the way `kubectl cp` does it
//! (a tar stream over exec into `tar -xmf -`), and Secrets created or replaced from a
//! file (`kubectl create secret generic NAME --from-file=content=FILE`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use splice_dr_plugin_api::BackendError;
use tokio::io::AsyncReadExt;

use crate::cluster::kube_err;
use crate::exec::Input;

/// Key of the Secret entry that holds the file (what the Splice charts read).
pub const SECRET_KEY: &str = "content";
/// Prefix of the storage targets that name a Secret: `secret:participant-bootstrap-dump`.
pub const SECRET_TARGET_PREFIX: &str = "secret:";
/// Tar block size.
const BLOCK: u64 = 512;

/// Splits a destination into the directory `tar -C` extracts into and the file name.
/// A relative `dest` lands in `default_dir`.
pub fn split_dest(dest: &Path, default_dir: &str) -> Result<(String, String), BackendError> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            BackendError::Config(format!("put_file: `{}` names no file", dest.display()))
        })?
        .to_string();
    let dir = match dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) if p.is_absolute() => p.display().to_string(),
        Some(p) => format!("{default_dir}/{}", p.display()),
        None => default_dir.to_string(),
    };
    Ok((dir, name))
}

/// A one-file tar stream of `src` stored as `name`: header, the file's bytes streamed
/// from disk, padding and the end-of-archive blocks. Returns it with the file's size.
pub async fn tar_stream(src: &Path, name: &str) -> Result<(Input, u64), BackendError> {
    let file = tokio::fs::File::open(src)
        .await
        .map_err(|e| BackendError::io(format!("opening {}", src.display()), e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| BackendError::io(format!("reading {}", src.display()), e))?
        .len();
    let mut header = tar::Header::new_ustar();
    header
        .set_path(name)
        .map_err(|e| BackendError::io(format!("naming {name} in the tar stream"), e))?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    );
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let pad = (BLOCK - size % BLOCK) % BLOCK;
    let mut trailer = vec![0u8; pad as usize];
    trailer.extend_from_slice(&[0u8; 2 * BLOCK as usize]);
    let head = std::io::Cursor::new(header.as_bytes().to_vec());
    let stream = head.chain(file).chain(std::io::Cursor::new(trailer));
    Ok((Input::Reader(Box::pin(stream)), size))
}

/// The argv that unpacks the stream into `dir` (what `kubectl cp` runs in the pod).
pub fn untar_argv(dir: &str) -> Vec<String> {
    vec![
        "tar".into(),
        "-xmf".into(),
        "-".into(),
        "-C".into(),
        dir.into(),
    ]
}

/// Creates the Secret `name` with `src`'s bytes under key `content`, or replaces the
/// data of an existing one. Returns whether it existed.
pub async fn put_secret(
    secrets: &Api<Secret>,
    name: &str,
    src: &Path,
) -> Result<bool, BackendError> {
    let bytes = tokio::fs::read(src)
        .await
        .map_err(|e| BackendError::io(format!("reading {}", src.display()), e))?;
    let data = BTreeMap::from([(SECRET_KEY.to_string(), ByteString(bytes))]);
    let existing = secrets
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {name}")))?;
    let pp = PostParams::default();
    match existing {
        Some(mut s) => {
            s.data = Some(data);
            s.string_data = None;
            secrets
                .replace(name, &pp, &s)
                .await
                .map_err(kube_err(format!("replacing Secret {name}")))?;
            Ok(true)
        }
        None => {
            let s = Secret {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "splice-dr".to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                type_: Some("Opaque".into()),
                ..Secret::default()
            };
            secrets
                .create(&pp, &s)
                .await
                .map_err(kube_err(format!("creating Secret {name}")))?;
            Ok(false)
        }
    }
}

/// The Secret a storage target names, if it is a `secret:NAME` target.
pub fn secret_target(name: &str) -> Option<&str> {
    name.strip_prefix(SECRET_TARGET_PREFIX)
        .filter(|n| !n.is_empty())
}

/// Resolves the destination of a `put_file` into the dump volume.
pub fn dump_dest(path: Option<&PathBuf>, default_file: &str) -> PathBuf {
    path.cloned().unwrap_or_else(|| PathBuf::from(default_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_split_into_dir_and_name() {
        let d = "/domain-upgrade-dump";
        assert_eq!(
            split_dest(Path::new("domain_migration_dump.json"), d).expect("ok"),
            (d.to_string(), "domain_migration_dump.json".to_string())
        );
        assert_eq!(
            split_dest(Path::new("/data/x.json"), d).expect("ok"),
            ("/data".to_string(), "x.json".to_string())
        );
        assert_eq!(
            secret_target("secret:participant-bootstrap-dump"),
            Some("participant-bootstrap-dump")
        );
        assert_eq!(secret_target("dump"), None);
    }

    #[test]
    fn the_tar_stream_unpacks_to_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("in.json");
        std::fs::write(&src, vec![7u8; 1000]).expect("write");
        let rt = tokio::runtime::Runtime::new().expect("rt");
        let bytes = rt.block_on(async {
            let (input, size) = tar_stream(&src, "out.json").await.expect("tar");
            assert_eq!(size, 1000);
            let Input::Reader(mut r) = input else {
                panic!("a reader")
            };
            let mut v = Vec::new();
            r.read_to_end(&mut v).await.expect("read");
            v
        });
        assert_eq!(bytes.len() % 512, 0);
        let mut archive = tar::Archive::new(std::io::Cursor::new(bytes));
        let mut entries = archive.entries().expect("entries");
        let mut e = entries.next().expect("one").expect("ok");
        assert_eq!(e.path().expect("path").to_str(), Some("out.json"));
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut content).expect("read");
        assert_eq!(content, vec![7u8; 1000]);
    }
}
