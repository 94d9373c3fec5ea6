//! Reading a manifest from a place someone else can write (a bucket, an off-site or even
//! the local repository directory): bounded, parsed, and every name and path in it checked
//! before any of them is joined to a directory.
//!
//! A manifest names the files a download creates (`files[].path`), the directories
//! restores read (`dumps[].dir`, `base_backup.dir`) or create (`base_backup.dirs[]`) and the backup's own directory (`id`). Without these
//! checks a forged manifest with `/etc/x` or `../../x` makes a root daemon create files
//! anywhere before any checksum is compared (issue #12).

use std::collections::BTreeSet;
use std::io::Read;

use thiserror::Error;

use super::Manifest;

/// Largest manifest accepted. A real one lists a few thousand files (well under 1 MiB);
/// the cap keeps a hostile bucket from making the daemon read gigabytes into memory.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Longest backup id or node name accepted from a manifest or a bucket listing.
pub const MAX_NAME_LEN: usize = 128;

/// Most participant ids a manifest may list: a node burns one per re-onboard, so a real
/// registry holds a handful; the cap keeps a forged one from making id choice crawl.
pub const MAX_PARTICIPANT_IDS: usize = 10_000;

/// Longest host name, participant-id source or node URL accepted from a manifest.
const MAX_TEXT_LEN: usize = 2048;

/// Why a manifest read from a repository was refused, located in the manifest.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("manifest.json of backup {id}: {field}: {message}")]
pub struct ManifestError {
    /// The backup id the manifest was read as (its key or directory name).
    pub id: String,
    /// Where in the manifest, e.g. `files[3].path`; `(whole file)` for size and syntax.
    pub field: String,
    /// What is wrong and what it means.
    pub message: String,
}

/// Reads at most [`MAX_MANIFEST_BYTES`] from `src`: an error as soon as there is more,
/// without reading the rest (a hostile object may be endless).
pub fn read_bounded(src: &mut dyn Read, id: &str) -> Result<Vec<u8>, ManifestError> {
    let mut bytes = Vec::new();
    src.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(id, format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(whole(
            id,
            format!(
                "larger than {} MiB: refused unread (not a manifest splice-dr wrote)",
                MAX_MANIFEST_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

fn whole(id: &str, message: String) -> ManifestError {
    ManifestError {
        id: id.into(),
        field: "(whole file)".into(),
        message,
    }
}

/// Checks a backup id or node name: 1 to [`MAX_NAME_LEN`] of `[A-Za-z0-9._-]`, not
/// starting with a dot (hidden entries are the repository's own: `.incomplete`).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("is longer than {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return Err(format!("`{}` starts with a dot", name.escape_debug()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{}` contains {c:?}: only letters, digits, `.`, `_` and `-` are allowed",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Checks a path relative to a backup directory: `/`-separated, no empty, `.` or `..`
/// component, not absolute, no NUL or backslash — so joining it can only name something
/// inside the backup.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    let shown = path.escape_debug();
    if path.starts_with('/') {
        return Err(format!("`{shown}` is absolute"));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(format!("`{shown}` contains a NUL or a backslash"));
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "`{shown}` has an empty, `.` or `..` component: paths must stay inside the backup"
        ));
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Manifest {
    /// Parses and checks a manifest read from a repository as backup `expected_id` (its
    /// key or directory name). Nothing in the result may name anything outside the
    /// backup: see the module doc.
    pub fn from_untrusted(bytes: &[u8], expected_id: &str) -> Result<Manifest, ManifestError> {
        let at = |field: String, message: String| ManifestError {
            id: expected_id.into(),
            field,
            message,
        };
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(whole(
                expected_id,
                format!("larger than {} MiB", MAX_MANIFEST_BYTES >> 20),
            ));
        }
        check_name(expected_id).map_err(|m| at("(backup id)".into(), m))?;
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| whole(expected_id, format!("not a valid manifest: {e}")))?;
        if m.id != expected_id {
            return Err(at(
                "id".into(),
                format!(
                    "`{}` differs from the backup's directory/key `{expected_id}`: a manifest \
                     copied or forged under another name is refused",
                    m.id.escape_debug()
                ),
            ));
        }
        check_name(&m.node).map_err(|e| at("node".into(), e))?;
        m.check_entries()
            .map_err(|(field, message)| at(field, message))?;
        Ok(m)
    }

    /// The per-entry checks of [`Manifest::from_untrusted`]: `(field, message)` of the
    /// first problem.
    fn check_entries(&self) -> Result<(), (String, String)> {
        let mut seen = BTreeSet::new();
        let mut total = 0u64;
        for (i, f) in self.files.iter().enumerate() {
            total = total.checked_add(f.size).ok_or_else(|| {
                (
                    format!("files[{i}].size"),
                    "the sizes add up to more than 2^64 bytes: not a real backup".to_string(),
                )
            })?;
            check_relative_path(&f.path).map_err(|e| (format!("files[{i}].path"), e))?;
            if !seen.insert(f.path.as_str()) {
                return Err((
                    format!("files[{i}].path"),
                    format!("`{}` is listed twice", f.path.escape_debug()),
                ));
            }
            if !is_sha256_hex(&f.sha256) {
                return Err((
                    format!("files[{i}].sha256"),
                    "is not 64 lower-case hex digits".into(),
                ));
            }
        }
        for (i, d) in self.dumps.iter().enumerate() {
            check_relative_path(&d.dir).map_err(|e| (format!("dumps[{i}].dir"), e))?;
        }
        if let Some(base) = &self.base_backup {
            check_relative_path(&base.dir).map_err(|e| ("base_backup.dir".to_string(), e))?;
            // A restore creates each of these under the server's data directory.
            for (i, d) in base.info.dirs.iter().enumerate() {
                check_relative_path(d).map_err(|e| (format!("base_backup.dirs[{i}]"), e))?;
            }
        }
        if let Some(ids) = &self.identities {
            check_relative_path(&ids.file).map_err(|e| ("identities.file".to_string(), e))?;
        }
        if let Some(host) = &self.host {
            check_host(host)?;
        }
        self.check_participant_ids()
    }

    /// The registry copy: bounded, each id a plain name, each source plain text.
    fn check_participant_ids(&self) -> Result<(), (String, String)> {
        if self.participant_ids.len() > MAX_PARTICIPANT_IDS {
            return Err((
                "participant_ids".into(),
                format!(
                    "lists {} ids, more than {MAX_PARTICIPANT_IDS}: not a registry splice-dr wrote",
                    self.participant_ids.len()
                ),
            ));
        }
        for (i, u) in self.participant_ids.iter().enumerate() {
            check_name(&u.id).map_err(|e| (format!("participant_ids[{i}].id"), e))?;
            check_text(&u.source).map_err(|e| (format!("participant_ids[{i}].source"), e))?;
        }
        Ok(())
    }
}

/// The taking host: its id as `state_dir/host-id` holds it, a printable name (shown to
/// operators: no terminal escapes), an http(s) URL without credentials (probed by a
/// restore elsewhere).
fn check_host(host: &crate::BackupHost) -> Result<(), (String, String)> {
    if !is_host_id(&host.id) {
        return Err((
            "host.id".into(),
            "is not 32 lower-case hex digits (what state_dir/host-id holds)".into(),
        ));
    }
    check_text(&host.name).map_err(|e| ("host.name".to_string(), e))?;
    if let Some(url) = &host.node_url {
        check_node_url(url).map_err(|e| ("host.node_url".to_string(), e))?;
    }
    Ok(())
}

/// Whether `id` has the shape of a host id: 32 lower-case hex digits.
pub fn is_host_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Text shown to an operator: 1 to [`MAX_TEXT_LEN`] bytes, no control characters.
fn check_text(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_TEXT_LEN {
        return Err(format!("must be 1 to {MAX_TEXT_LEN} bytes long"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "`{}` contains a control character",
            text.escape_debug()
        ));
    }
    Ok(())
}

/// A node URL: http(s), a host, no user or password, at most [`MAX_TEXT_LEN`] bytes.
pub fn check_node_url(text: &str) -> Result<(), String> {
    check_text(text)?;
    let shown = text.escape_debug();
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}` is not an http(s) URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{shown}` carries credentials"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileEntry;

    fn manifest(id: &str, paths: &[&str]) -> Manifest {
        let files = paths
            .iter()
            .map(|p| FileEntry {
                path: p.to_string(),
                size: 1,
                sha256: "a".repeat(64),
            })
            .collect();
        Manifest {
            files,
            ..Manifest::for_test(id, chrono::Utc::now())
        }
    }

    fn parse(m: &Manifest, id: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_untrusted(&serde_json::to_vec(m).unwrap(), id)
    }

    #[test]
    fn a_well_formed_manifest_is_accepted() {
        let m = manifest(
            "n1-20261124-101500",
            &["validator/toc.dat", "identities.json.age"],
        );
        assert_eq!(parse(&m, "n1-20261124-101500").unwrap(), m);
    }

    #[test]
    fn escaping_paths_are_refused_with_their_location() {
        for bad in [
            "/etc/cron.d/x",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "",
            "a\\b",
            "a\0b",
        ] {
            let m = manifest("b1", &["ok", bad]);
            let e = parse(&m, "b1").unwrap_err();
            assert_eq!(e.field, "files[1].path", "{bad:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with("manifest.json of backup b1: files[1].path: "),
                "{e}"
            );
        }
    }

    #[test]
    fn duplicate_paths_are_refused() {
        let e = parse(&manifest("b1", &["a", "a"]), "b1").unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
    }

    #[test]
    fn the_id_must_be_the_key_it_was_read_under() {
        let e = parse(&manifest("other", &[]), "b1").unwrap_err();
        assert_eq!(e.field, "id");
        let e = parse(&manifest("../b1", &[]), "../b1").unwrap_err();
        assert_eq!(e.field, "(backup id)");
    }

    #[test]
    fn node_and_dump_dirs_are_checked() {
        let mut m = manifest("b1", &[]);
        m.node = "../../tmp/x".into();
        assert_eq!(parse(&m, "b1").unwrap_err().field, "node");
        let mut m = manifest("b1", &[]);
        m.dumps = vec![crate::DumpEntry {
            dir: "/var/lib".into(),
            info: splice_dr_plugin_api::DumpInfo {
                role: "validator".into(),
                database: "v".into(),
                format: "custom".into(),
                started_at: m.created_at,
                finished_at: m.created_at,
                server_version: "15".into(),
                tables: vec![],
            },
        }];
        assert_eq!(parse(&m, "b1").unwrap_err().field, "dumps[0].dir");
    }

    /// A physical backup's directories are created under the server's data directory by a
    /// restore: none may leave it.
    #[test]
    fn base_backup_dirs_are_checked() {
        let info = |dirs: &[&str]| splice_dr_plugin_api::BaseBackupInfo {
            format: "plain".into(),
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            server_version: "15".into(),
            timeline: 1,
            start_lsn: "0/1".into(),
            end_lsn: "0/2".into(),
            databases: vec![],
            dirs: dirs.iter().map(|d| d.to_string()).collect(),
        };
        let mut m = manifest("b1", &["cluster/PG_VERSION"]);
        m.kind = splice_dr_plugin_api::BackupKind::Physical;
        m.base_backup = Some(crate::BaseBackupEntry {
            dir: "cluster".into(),
            info: info(&["base", "pg_wal/archive_status"]),
        });
        assert_eq!(parse(&m, "b1").unwrap(), m);
        m.base_backup.as_mut().unwrap().info = info(&["base", "../../etc"]);
        assert_eq!(parse(&m, "b1").unwrap_err().field, "base_backup.dirs[1]");
        m.base_backup = Some(crate::BaseBackupEntry {
            dir: "/var/lib/postgresql".into(),
            info: info(&[]),
        });
        assert_eq!(parse(&m, "b1").unwrap_err().field, "base_backup.dir");
    }

    fn host(id: &str, name: &str, url: Option<&str>) -> crate::BackupHost {
        crate::BackupHost {
            id: id.into(),
            name: name.into(),
            node_url: url.map(Into::into),
        }
    }

    #[test]
    fn the_taking_host_is_checked_and_may_be_absent() {
        let good = "0123456789abcdef0123456789abcdef";
        let mut m = manifest("b1", &[]);
        assert_eq!(parse(&m, "b1").unwrap().host, None, "old manifests load");
        m.host = Some(host(good, "vm-a", Some("http://validator-a.example:5003")));
        assert_eq!(parse(&m, "b1").unwrap(), m);
        for (bad, field) in [
            (host("ABC", "vm-a", None), "host.id"),
            (host(&good.to_uppercase(), "vm-a", None), "host.id"),
            (host(good, "vm\x1b[31ma", None), "host.name"),
            (host(good, "vm\u{7f}", None), "host.name"),
            (host(good, "", None), "host.name"),
            (
                host(good, "vm-a", Some("file:///etc/passwd")),
                "host.node_url",
            ),
            (host(good, "vm-a", Some("http://u:p@h:1")), "host.node_url"),
            (host(good, "vm-a", Some("not a url")), "host.node_url"),
        ] {
            m.host = Some(bad.clone());
            let field_seen = parse(&m, "b1")
                .map(|_| String::new())
                .unwrap_or_else(|e| e.field);
            assert_eq!(field_seen, field, "{bad:?}");
        }
    }

    #[test]
    fn the_registry_copy_is_checked() {
        let used = |id: &str, source: &str| crate::UsedParticipantId {
            id: id.into(),
            since: chrono::Utc::now(),
            source: source.into(),
        };
        let mut m = manifest("b1", &[]);
        m.participant_ids = vec![used("acme", "config"), used("acme-2", "re-onboard r1")];
        assert_eq!(parse(&m, "b1").unwrap(), m);
        m.participant_ids = vec![used("acme", "config"), used("../x", "config")];
        assert_eq!(parse(&m, "b1").unwrap_err().field, "participant_ids[1].id");
        m.participant_ids = vec![used("acme", "a\nb")];
        assert_eq!(
            parse(&m, "b1").unwrap_err().field,
            "participant_ids[0].source"
        );
        m.participant_ids = (0..=MAX_PARTICIPANT_IDS)
            .map(|i| used(&format!("p-{i}"), "config"))
            .collect();
        assert_eq!(parse(&m, "b1").unwrap_err().field, "participant_ids");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("node-a-20261124-101500").is_ok());
        assert!(check_name(".incomplete").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"a".repeat(129)).is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn an_endless_object_is_refused_after_the_cap() {
        let mut endless = std::io::repeat(b' ');
        let e = read_bounded(&mut endless, "b1").unwrap_err();
        assert!(e.message.contains("16 MiB"), "{e}");
        let mut small: &[u8] = b"{}";
        assert_eq!(read_bounded(&mut small, "b1").unwrap(), b"{}");
    }
}
