//! Dumps whose row counts are taken in the very snapshot `pg_dump` reads, so a restore can
//! later be verified table by table; where a dump goes and how its contents are read back.

use std::path::{Path, PathBuf};

use chrono::Utc;
use postgres::IsolationLevel;
use splice_dr_plugin_api::{BackendError, DumpCheck, DumpInfo, OpContext, TableCount};

use crate::sql::{count_rows, db_err, user_tables};

/// The gzip level of dumps when `compress` is not set: shared by every backend that runs
/// `pg_dump` (bare, compose, k8s), so the same key means the same thing everywhere.
///
/// None: gzip, even at level 1, made a backup take 2.4x the time of the runbook's plain
/// `pg_dump` on a 2-core node (bench/restore-bench.sh), and its restore slower too, for a
/// repository 2.4x smaller. Recovery time and a fresh restore point matter more at 3 a.m.
/// than disk; `compress = 1` trades them back.
pub fn default_compress() -> u32 {
    0
}

/// Refuses a `compress` level `pg_dump` does not take, when the config loads rather than
/// at the first backup.
pub fn check_compress(level: u32) -> Result<(), BackendError> {
    if level > 9 {
        return Err(BackendError::Config(format!(
            "`compress` must be 0 (none) to 9 (smallest), got {level}"
        )));
    }
    Ok(())
}

/// Total size in bytes of the files under `dir` (progress of a running dump).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs `dump` into a new, empty `dest` directory, removing whatever it left there when it
/// fails: the shape shared by every backend that streams a single-file dump (compose, k8s),
/// so a failed dump never leaves a half-written file where a backup expects a dump.
pub fn into_fresh_dir<T>(
    dest: &Path,
    dump: impl FnOnce() -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    prepare_dest(dest)?;
    std::fs::create_dir_all(dest)
        .map_err(|e| BackendError::io(format!("creating {}", dest.display()), e))?;
    let result = dump();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

/// Makes sure `pg_dump -Fd` can create `dest`: it must not exist, or be an empty directory
/// (removed here); its parent is created.
pub fn prepare_dest(dest: &Path) -> Result<(), BackendError> {
    let shown = dest.display();
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            let mut entries = std::fs::read_dir(dest)
                .map_err(|e| BackendError::io(format!("reading dump destination {shown}"), e))?;
            if entries.next().is_some() {
                return Err(BackendError::Io {
                    context: format!("dump destination {shown}"),
                    message: "directory is not empty; a dump needs a new or empty directory".into(),
                });
            }
            std::fs::remove_dir(dest)
                .map_err(|e| BackendError::io(format!("removing empty {shown}"), e))?;
        }
        Ok(_) => {
            return Err(BackendError::Io {
                context: format!("dump destination {shown}"),
                message: "exists and is not a directory".into(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(BackendError::io(format!("inspecting {shown}"), e)),
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| BackendError::io(format!("creating {}", parent.display()), e))?;
    }
    Ok(())
}

/// A dump's consistency point: a read-only repeatable-read transaction whose exported
/// snapshot `pg_dump --snapshot` dumps, and the exact row counts of every user table in
/// that same snapshot (what a restore is later verified against). Shared by every backend
/// that dumps with the Postgres tools; the transaction must stay open until the dump ends.
pub struct SnapshotCounts<'a> {
    tx: postgres::Transaction<'a>,
    /// The exported snapshot's name.
    pub snapshot: String,
    /// When the snapshot was taken.
    pub started_at: chrono::DateTime<Utc>,
    /// Row counts, in byte order of `(schema, table)`.
    pub tables: Vec<TableCount>,
    /// `server_version` of the server.
    pub server_version: String,
}

impl<'a> SnapshotCounts<'a> {
    /// Opens the transaction, exports its snapshot and counts every table's rows in it.
    pub fn take(
        ctx: &OpContext,
        client: &'a mut postgres::Client,
        db: &str,
    ) -> Result<SnapshotCounts<'a>, BackendError> {
        let server_version: String = client
            .query_one("SHOW server_version", &[])
            .map_err(db_err("reading server_version"))?
            .get(0);
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(db_err(format!("starting the dump transaction on {db}")))?;
        let snapshot: String = tx
            .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
            .map_err(db_err("exporting a snapshot"))?
            .get(0);
        let started_at = Utc::now();
        let what = format!("dump {db}");
        let names = user_tables(&mut tx)?;
        let total = names.len() as u64;
        let mut tables = Vec::with_capacity(names.len());
        for (i, (schema, table)) in names.into_iter().enumerate() {
            ctx.check_cancelled(&what)?;
            let rows = count_rows(&mut tx, &schema, &table)?;
            tables.push(TableCount {
                schema,
                table,
                rows,
            });
            ctx.progress(
                &format!("count rows {db}"),
                i as u64 + 1,
                Some(total),
                "tables",
            );
        }
        // Byte order, not the server's collation: manifests compare equal across servers.
        tables.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
        Ok(SnapshotCounts {
            tx,
            snapshot,
            started_at,
            tables,
            server_version,
        })
    }

    /// Ends the transaction once the dump is written.
    pub fn finish(self) -> Result<(), BackendError> {
        self.tx
            .commit()
            .map_err(db_err("ending the dump transaction"))
    }

    /// Ends the transaction once pg_dump of `db` (run in this snapshot) has written its
    /// `format` dump, and describes that dump for the manifest: the row counts taken in
    /// the snapshot, when it was taken, and now as its end.
    pub fn finish_into(self, role: &str, db: &str, format: &str) -> Result<DumpInfo, BackendError> {
        let info = DumpInfo {
            role: role.into(),
            database: db.into(),
            format: format.into(),
            started_at: self.started_at,
            finished_at: Utc::now(),
            server_version: self.server_version.clone(),
            tables: self.tables.clone(),
        };
        self.finish()?;
        Ok(info)
    }
}

/// Counts TOC entries and table-data entries in `pg_restore --list` output.
pub fn parse_list(list: &str) -> DumpCheck {
    let entries = list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'));
    let (mut n, mut data) = (0, 0);
    for l in entries {
        n += 1;
        if l.contains(" TABLE DATA ") {
            data += 1;
        }
    }
    DumpCheck {
        entries: n,
        table_data: data,
    }
}

/// Dump ids of the TABLE DATA entries (`3340; 0 16392 TABLE DATA public t owner`).
pub fn data_ids(list: &str) -> Vec<u64> {
    list.lines()
        .filter(|l| !l.starts_with(';') && l.contains(" TABLE DATA "))
        .filter_map(|l| l.split(';').next()?.trim().parse().ok())
        .collect()
}

/// File name of a custom-format dump in its backup directory.
pub const CUSTOM_DUMP_FILE: &str = "database.pgdump";
/// Extension of plain SQL dumps (the runbook's `pg_dump > file`), which restore with psql.
pub const PLAIN_EXTENSION: &str = "sql";

/// A dump file found in a backup directory and how to feed it back.
pub struct DumpFile {
    /// The file.
    pub path: PathBuf,
    /// `custom` (pg_restore) or `plain` (psql).
    pub format: &'static str,
}

/// Finds the one single-file dump in `src` (a backup's dump directory, or a file itself):
/// what the backends that stream a dump through a container or pod (compose, k8s) feed to
/// pg_restore or psql.
pub fn find_dump_file(src: &Path) -> Result<DumpFile, BackendError> {
    let classify = |p: PathBuf| -> Option<DumpFile> {
        let ext = p.extension()?.to_str()?.to_string();
        match ext.as_str() {
            "pgdump" => Some(DumpFile {
                path: p,
                format: "custom",
            }),
            PLAIN_EXTENSION => Some(DumpFile {
                path: p,
                format: "plain",
            }),
            _ => None,
        }
    };
    if src.is_file() {
        return classify(src.to_path_buf()).ok_or_else(|| {
            BackendError::Verification(format!(
                "{}: a dump must end in .pgdump (pg_dump -Fc) or .sql (plain)",
                src.display()
            ))
        });
    }
    let entries = std::fs::read_dir(src)
        .map_err(|e| BackendError::io(format!("reading dump directory {}", src.display()), e))?;
    let mut found: Vec<DumpFile> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(classify)
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(BackendError::Verification(format!(
            "{} holds no .pgdump or .sql dump file",
            src.display()
        ))),
        n => Err(BackendError::Verification(format!(
            "{} holds {n} dump files; expected one",
            src.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = ";\n; Archive created at 2026-11-24\n;\n\
214; 1259 16392 TABLE public t owner\n\
3340; 0 16392 TABLE DATA public t owner\n\
3341; 0 16400 SEQUENCE SET public s owner\n\
3197; 2606 16398 CONSTRAINT public t t_pkey owner\n";

    #[test]
    fn list_parsing() {
        assert_eq!(
            parse_list(LIST),
            DumpCheck {
                entries: 4,
                table_data: 1
            }
        );
        assert_eq!(data_ids(LIST), vec![3340]);
    }

    #[test]
    fn dest_must_be_new_or_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        prepare_dest(&empty).expect("empty dir is fine");
        assert!(!empty.exists(), "removed for pg_dump to create");
        let nested = dir.path().join("a/b/c");
        prepare_dest(&nested).expect("new path is fine");
        assert!(dir.path().join("a/b").is_dir());
        let full = dir.path().join("full");
        std::fs::create_dir(&full).expect("mkdir");
        std::fs::write(full.join("x"), "x").expect("write");
        assert!(prepare_dest(&full).is_err());
    }

    /// The one compress check compose, k8s and bare Postgres all run at load.
    #[test]
    fn compress_levels_past_9_are_refused_with_the_key() {
        assert!(check_compress(0).is_ok());
        assert!(check_compress(9).is_ok());
        let e = check_compress(10).expect_err("10");
        assert_eq!(
            e.to_string(),
            BackendError::Config("`compress` must be 0 (none) to 9 (smallest), got 10".into())
                .to_string()
        );
    }
}
