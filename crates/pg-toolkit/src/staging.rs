//! Scratch databases next to the live ones — the staging copy a restore or a drill fills,
//! and the rolled-back copy a failed swap leaves — handled the same way by every backend
//! that reaches Postgres over SQL (bare, compose, k8s). Only how the dump gets into the
//! database differs; that part is the caller's `fill`.

use postgres::Client;
use splice_dr_plugin_api::{BackendError, DumpInfo, OpContext, StagedDb};

use crate::names::{derived_name, is_derived, new_suffix, FAILED_MARKER, STAGING_MARKER};
use crate::sql::{create_database_like, drop_database};
use crate::ConnSettings;

/// Whether `name` is a scratch database of `live`: a staging copy, or a rolled-back one.
/// Neither holds anything to keep, so both may be dropped.
pub fn is_scratch_of(name: &str, live: &str) -> bool {
    is_derived(name, live, STAGING_MARKER) || is_derived(name, live, FAILED_MARKER)
}

/// Restores into a new staging database next to `live`: checks the dump is of `role`,
/// creates the database like the live one (owner, encoding, collation), then runs `fill`
/// with an admin session and the staging name — the backend's pg_restore and the row
/// count check. When `fill` fails the staging database is dropped again over a fresh
/// admin session (the first may be broken by the error); if even that fails, `leftovers`
/// lists it for the next cleanup.
pub fn restore_into_scratch(
    ctx: &OpContext,
    conn: &ConnSettings,
    role: &str,
    live: &str,
    expected: &DumpInfo,
    fill: impl FnOnce(&mut Client, &str) -> Result<(), BackendError>,
) -> Result<StagedDb, BackendError> {
    if expected.role != role {
        return Err(BackendError::Verification(format!(
            "the dump is of the {} database, not the {role} database",
            expected.role
        )));
    }
    let staging = derived_name(live, STAGING_MARKER, &new_suffix());
    let mut admin = conn.connect_admin()?;
    if !create_database_like(&mut admin, &staging, live)? {
        ctx.warn(format!(
            "live database {live} does not exist; the restored one will be owned by the \
             connecting user"
        ));
    }
    ctx.info(format!("created staging database {staging} for {live}"));
    match fill(&mut admin, &staging) {
        Ok(()) => Ok(StagedDb {
            role: role.into(),
            live: live.into(),
            staging,
        }),
        Err(e) => {
            ctx.warn(format!("restore into {staging} failed; dropping it: {e}"));
            let dropped = conn
                .connect_admin()
                .and_then(|mut a| drop_database(&mut a, &staging));
            if let Err(drop_err) = dropped {
                ctx.warn(format!(
                    "could not drop staging database {staging}: {drop_err}; it is listed \
                     by `leftovers` and dropped at the next cleanup"
                ));
            }
            Err(e)
        }
    }
}

/// Drops scratch databases, after checking every one is a scratch database of the live
/// database it names (the caller has checked that live database is this node's).
/// Nothing is dropped when one of them is not.
pub fn drop_scratch(
    ctx: &OpContext,
    conn: &ConnSettings,
    staged: &[StagedDb],
) -> Result<(), BackendError> {
    if let Some(s) = staged.iter().find(|s| !is_scratch_of(&s.staging, &s.live)) {
        return Err(BackendError::Config(format!(
            "refusing to drop {}: not a scratch database of {}",
            s.staging, s.live
        )));
    }
    if staged.is_empty() {
        return Ok(());
    }
    let mut admin = conn.connect_admin()?;
    for s in staged {
        drop_database(&mut admin, &s.staging)?;
        ctx.info(format!("dropped scratch database {}", s.staging));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_and_rolled_back_copies_are_scratch_kept_and_live_ones_are_not() {
        let live = "participant_0";
        assert!(is_scratch_of(
            &derived_name(live, STAGING_MARKER, "abcd1234"),
            live
        ));
        assert!(is_scratch_of(
            &derived_name(live, FAILED_MARKER, "abcd1234"),
            live
        ));
        assert!(!is_scratch_of(
            &derived_name(live, crate::names::KEPT_MARKER, "abcd1234"),
            live
        ));
        assert!(!is_scratch_of(live, live));
        assert!(!is_scratch_of(
            &derived_name("participant_1", STAGING_MARKER, "abcd1234"),
            live
        ));
    }
}
