//! The `postgres` storage target on k8s, for flows that need a fresh node on the same
//! Postgres (re-onboarding): the node's databases are renamed aside in one transaction
//! (kept, never dropped here) and empty ones take their place; on failure the kept ones
//! are renamed back. Postgres keeps running and its PVC is never touched.
//!
//! A [`KeptStorage`] lists the databases comma-separated in `live` and `kept`, pairwise
//! (an empty kept name: that database did not exist).

use splice_dr_pg_toolkit::names::{
    derived_name, ensure_kept_of, new_suffix, quote_ident, FAILED_MARKER, KEPT_MARKER,
};
use splice_dr_pg_toolkit::sql::{
    database_exists, db_err, drop_database, terminate_sessions, user_tables,
};
use splice_dr_plugin_api::{BackendError, KeptStorage, OpContext, StorageTarget};

use crate::K8sBackend;

/// The only storage target the k8s backend keeps: the node's databases.
pub const POSTGRES_TARGET: &str = "postgres";

/// The (live, kept) database pairs of a [`KeptStorage`] record, each checked: the live
/// name is one of the node's databases and the kept name a kept copy of it (or empty),
/// so a wrong record can never drop or rename over a database that is not a kept copy.
fn checked_pairs(
    kept: &KeptStorage,
    lives: &[String],
    action: &str,
) -> Result<Vec<(String, String)>, BackendError> {
    let live: Vec<&str> = kept.live.split(',').collect();
    let copies: Vec<&str> = kept.kept.split(',').collect();
    if live.len() != copies.len() {
        return Err(BackendError::Config(format!(
            "kept storage record is inconsistent: {} live vs {} kept names",
            live.len(),
            copies.len()
        )));
    }
    let mut out = Vec::new();
    for (l, k) in live.into_iter().zip(copies) {
        if !lives.iter().any(|n| n == l) {
            return Err(BackendError::Config(format!(
                "refusing to {action} the kept copy of `{l}`: it is not one of the node's \
                 databases ({})",
                lives.join(", ")
            )));
        }
        if !k.is_empty() {
            ensure_kept_of(k, l, action)?;
        }
        out.push((l.to_string(), k.to_string()));
    }
    Ok(out)
}

impl K8sBackend {
    fn check_target(&self, target: &str) -> Result<(), BackendError> {
        if target == POSTGRES_TARGET {
            Ok(())
        } else {
            Err(BackendError::NotFound(format!(
                "storage target `{target}`: on k8s only `postgres` (the node's databases, \
                 renamed aside) can be kept and wiped"
            )))
        }
    }

    fn live_dbs(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![
            self.db_for_role("validator")?,
            self.db_for_role("participant")?,
        ])
    }

    /// Runs `renames` (`from`, `to`) in one transaction after ending other sessions on
    /// them, retrying while a client reconnects in between.
    fn rename_all(
        &self,
        ctx: &OpContext,
        renames: &[(String, String)],
    ) -> Result<(), BackendError> {
        let names: Vec<&str> = renames.iter().map(|(f, _)| f.as_str()).collect();
        let mut last = None;
        for _ in 0..5 {
            let mut admin = self.conn.connect_admin()?;
            terminate_sessions(&mut admin, &names)?;
            let mut tx = admin
                .transaction()
                .map_err(db_err("starting the rename transaction"))?;
            let result = renames.iter().try_for_each(|(from, to)| {
                tx.batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(from),
                    quote_ident(to)
                ))
            });
            match result.and_then(|()| tx.commit()) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    ctx.warn(format!("renaming databases: {e}; retrying"));
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
        }
        Err(BackendError::db(
            "renaming databases (other sessions keep connecting: are the apps scaled to 0?)",
            last.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }

    /// See [`splice_dr_plugin_api::Storage::keep_storage`].
    pub(crate) fn keep_storage_impl(
        &self,
        ctx: &OpContext,
        target: &StorageTarget,
    ) -> Result<KeptStorage, BackendError> {
        self.check_target(&target.name)?;
        let suffix = new_suffix();
        let mut admin = self.conn.connect_admin()?;
        let mut pairs = Vec::new();
        let mut bytes = 0u64;
        for live in self.live_dbs()? {
            if database_exists(&mut admin, &live)? {
                let size: i64 = admin
                    .query_one("SELECT pg_catalog.pg_database_size($1)", &[&live])
                    .map_err(db_err(format!("sizing {live}")))?
                    .get(0);
                bytes += u64::try_from(size).unwrap_or_default();
                pairs.push((live.clone(), derived_name(&live, KEPT_MARKER, &suffix)));
            } else {
                pairs.push((live, String::new()));
            }
        }
        let renames: Vec<(String, String)> = pairs
            .iter()
            .filter(|(_, k)| !k.is_empty())
            .cloned()
            .collect();
        self.rename_all(ctx, &renames)?;
        let kept = KeptStorage {
            target: target.name.clone(),
            live: pairs
                .iter()
                .map(|(l, _)| l.as_str())
                .collect::<Vec<_>>()
                .join(","),
            kept: pairs
                .iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>()
                .join(","),
            bytes,
        };
        ctx.info(format!(
            "kept the node's databases as {} ({bytes} bytes); Postgres keeps running",
            kept.kept
        ));
        Ok(kept)
    }

    /// See [`splice_dr_plugin_api::Storage::wipe`]: the live databases are (re)created
    /// empty. Refuses one that still holds tables: keep it aside first.
    pub(crate) fn wipe_impl(
        &self,
        ctx: &OpContext,
        target: &StorageTarget,
    ) -> Result<(), BackendError> {
        self.check_target(&target.name)?;
        let mut admin = self.conn.connect_admin()?;
        for live in self.live_dbs()? {
            if database_exists(&mut admin, &live)? {
                let mut c = self.conn.connect(&live)?;
                let tables = user_tables(&mut c)?;
                if !tables.is_empty() {
                    return Err(BackendError::Config(format!(
                        "refusing to wipe {live}: it holds {} tables; keep it aside first \
                         (keep_storage(\"postgres\")) so nothing is lost",
                        tables.len()
                    )));
                }
                continue;
            }
            admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&live)))
                .map_err(db_err(format!("creating empty database {live}")))?;
            ctx.info(format!("created empty database {live}"));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Storage::restore_kept_storage`]: the kept databases
    /// take their names back in one transaction; the ones they replace are dropped after.
    pub(crate) fn restore_kept_storage_impl(
        &self,
        ctx: &OpContext,
        kept: &KeptStorage,
    ) -> Result<(), BackendError> {
        self.check_target(&kept.target)?;
        let suffix = new_suffix();
        let mut admin = self.conn.connect_admin()?;
        let mut renames = Vec::new();
        let mut failed = Vec::new();
        for (live, copy) in checked_pairs(kept, &self.live_dbs()?, "restore from")? {
            if copy.is_empty() {
                continue;
            }
            if database_exists(&mut admin, &live)? {
                let f = derived_name(&live, FAILED_MARKER, &suffix);
                renames.push((live.clone(), f.clone()));
                failed.push(f);
            }
            renames.push((copy, live));
        }
        self.rename_all(ctx, &renames)?;
        for f in failed {
            let mut admin = self.conn.connect_admin()?;
            if let Err(e) = drop_database(&mut admin, &f) {
                ctx.warn(format!("could not drop {f}: {e}; drop it by hand"));
            }
        }
        ctx.info(format!("put the kept databases back ({})", kept.live));
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Storage::drop_kept_storage`].
    pub(crate) fn drop_kept_storage_impl(
        &self,
        ctx: &OpContext,
        kept: &KeptStorage,
    ) -> Result<(), BackendError> {
        self.check_target(&kept.target)?;
        for (_, copy) in checked_pairs(kept, &self.live_dbs()?, "drop")? {
            if copy.is_empty() {
                continue;
            }
            let mut admin = self.conn.connect_admin()?;
            drop_database(&mut admin, &copy)?;
            ctx.info(format!("dropped the kept database {copy}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(live: &str, kept: &str) -> KeptStorage {
        KeptStorage {
            target: POSTGRES_TARGET.into(),
            live: live.into(),
            kept: kept.into(),
            bytes: 0,
        }
    }

    #[test]
    fn only_kept_copies_of_the_nodes_databases_are_accepted() {
        let lives = vec!["validator".to_string(), "participant-0".to_string()];
        let v = derived_name("validator", KEPT_MARKER, "abcd1234");
        let p = derived_name("participant-0", KEPT_MARKER, "abcd1234");
        let good = record("validator,participant-0", &format!("{v},{p}"));
        assert_eq!(checked_pairs(&good, &lives, "drop").unwrap().len(), 2);
        assert!(checked_pairs(
            &record("validator,participant-0", &format!("{v},")),
            &lives,
            "drop"
        )
        .is_ok());

        for bad in [
            record("validator,participant-0", "validator,participant-0"),
            record("validator", "participant-0"),
            record("validator", &p),
            record(
                "validator",
                &derived_name("validator", FAILED_MARKER, "abcd1234"),
            ),
            record(
                "postgres",
                &derived_name("postgres", KEPT_MARKER, "abcd1234"),
            ),
            record("validator,participant-0", &v),
        ] {
            let e = checked_pairs(&bad, &lives, "drop").unwrap_err().to_string();
            assert!(e.contains("refusing") || e.contains("inconsistent"), "{e}");
        }
    }
}
