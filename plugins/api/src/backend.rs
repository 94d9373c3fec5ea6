//! The [`Backend`] trait: everything a flow may ask of the system holding a node.

use std::path::Path;
use std::time::Duration;

use crate::{
    BackendError, Capabilities, ComponentStatus, DatabaseInfo, DumpCheck, DumpInfo, ExecOutput,
    KeptDb, KeptStorage, Leftovers, OpContext, StagedCheck, StagedDb, StagedQuery, StorageTarget,
};

/// Result type of every backend call.
pub type BackendResult<T> = Result<T, BackendError>;

/// One node's infrastructure, seen through the operations the recovery runbook uses.
///
/// Restores are split into stage → swap → keep/rollback so that every backend can honour
/// the safety invariant "the state being replaced is kept until the new state is
/// verified": [`Backend::restore_staged`] never touches live data, [`Backend::swap_in`]
/// replaces it atomically while keeping the old state, and only [`Backend::drop_kept`]
/// destroys anything.
///
/// Operations a backend cannot perform return [`BackendError::Unsupported`] (the default
/// bodies below), which flows report verbatim.
pub trait Backend: Send + Sync {
    /// Short kind name for logs and status, e.g. `postgres`.
    fn kind(&self) -> String;

    /// What this backend can do, grouped by concern. Flows choose their path from it
    /// (volume-level or staged restore, which storage to empty for a fresh node, where a
    /// file may be placed), never from [`Backend::kind`]. The default is the conservative
    /// shape: staged restore, no storage operations, no exec.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The node's components and their observed state.
    fn components(&self, ctx: &OpContext) -> BackendResult<Vec<ComponentStatus>>;

    /// Stops (`0`) or starts (`>= 1`) a component.
    fn scale(&self, ctx: &OpContext, component: &str, replicas: u32) -> BackendResult<()>;

    /// Blocks until the component is ready, the timeout passes, or the run is cancelled.
    fn wait_ready(&self, ctx: &OpContext, component: &str, timeout: Duration) -> BackendResult<()>;

    /// The node's databases by role, with their physical names.
    fn databases(&self, ctx: &OpContext) -> BackendResult<Vec<DatabaseInfo>>;

    /// Dumps the database with this role into the (new, empty) directory `dest`.
    fn dump(&self, ctx: &OpContext, role: &str, dest: &Path) -> BackendResult<DumpInfo>;

    /// Reads a dump's table of contents (`pg_restore --list` or equivalent) to prove it is
    /// readable, without restoring anything.
    fn check_dump(&self, ctx: &OpContext, src: &Path) -> BackendResult<DumpCheck>;

    /// Restores a dump into a new database next to the live one and verifies it against
    /// `expected` (the manifest's record of the dump). Live data is untouched.
    fn restore_staged(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> BackendResult<StagedDb>;

    /// Puts every staged database in service in one atomic switch, keeping the replaced
    /// ones. Either all are swapped or none is.
    fn swap_in(&self, ctx: &OpContext, staged: &[StagedDb]) -> BackendResult<Vec<KeptDb>>;

    /// Undoes [`Backend::swap_in`]: the kept databases become live again and the restored
    /// ones are dropped.
    fn roll_back(&self, ctx: &OpContext, kept: &[KeptDb]) -> BackendResult<()>;

    /// Drops databases kept by [`Backend::swap_in`] once the restored state is proven.
    fn drop_kept(&self, ctx: &OpContext, kept: &[KeptDb]) -> BackendResult<()>;

    /// Drops staged databases that will not be swapped in (failed or cancelled restore).
    fn drop_staged(&self, ctx: &OpContext, staged: &[StagedDb]) -> BackendResult<()>;

    /// Looks deeper into a staged database than row counts, for restore drills: every
    /// B-tree index verified with `amcheck` where the extension is available (its absence is
    /// reported in the result, not an error), then the site's sanity `queries`. Problems
    /// are returned, not raised; an error means the checks could not run at all.
    fn check_staged(
        &self,
        _ctx: &OpContext,
        _staged: &StagedDb,
        _queries: &[StagedQuery],
    ) -> BackendResult<StagedCheck> {
        Err(self.unsupported("check_staged"))
    }

    /// Staged and kept state left by runs that did not finish.
    fn leftovers(&self, ctx: &OpContext) -> BackendResult<Leftovers>;

    /// Runs a command inside a component, feeding it `stdin` from a file when given.
    fn exec(
        &self,
        _ctx: &OpContext,
        _component: &str,
        _argv: &[String],
        _stdin: Option<&Path>,
    ) -> BackendResult<ExecOutput> {
        Err(self.unsupported("exec"))
    }

    /// Copies a local file into a storage target (volume, PVC, directory).
    fn put_file(
        &self,
        _ctx: &OpContext,
        _target: &StorageTarget,
        _src: &Path,
    ) -> BackendResult<()> {
        Err(self.unsupported("put_file"))
    }

    /// Removes a storage target's contents.
    fn wipe(&self, _ctx: &OpContext, _target: &StorageTarget) -> BackendResult<()> {
        Err(self.unsupported("wipe"))
    }

    /// Applies configuration values (helm overlay, compose start flags).
    fn set_values(&self, _ctx: &OpContext, _values: &serde_json::Value) -> BackendResult<()> {
        Err(self.unsupported("set_values"))
    }

    /// Copies a storage target (a Postgres volume) aside, with its owners and modes, so a
    /// restore that wipes it can still put it back. The component using it must be stopped.
    fn keep_storage(
        &self,
        _ctx: &OpContext,
        _target: &StorageTarget,
    ) -> BackendResult<KeptStorage> {
        Err(self.unsupported("keep_storage"))
    }

    /// Undoes a wipe: the live storage gets the kept copy's contents back. The copy itself
    /// stays until [`Backend::drop_kept_storage`].
    fn restore_kept_storage(&self, _ctx: &OpContext, _kept: &KeptStorage) -> BackendResult<()> {
        Err(self.unsupported("restore_kept_storage"))
    }

    /// Deletes a kept copy once the restored state is proven.
    fn drop_kept_storage(&self, _ctx: &OpContext, _kept: &KeptStorage) -> BackendResult<()> {
        Err(self.unsupported("drop_kept_storage"))
    }

    /// Restores a dump straight into the live database of `role`, which must exist and hold
    /// no tables (the runbook's `psql < dump` after the volume was wiped), then verifies it
    /// against `expected`. Refuses a database that holds data: that would mix two states.
    fn restore_into_empty(
        &self,
        _ctx: &OpContext,
        _role: &str,
        _src: &Path,
        _expected: &DumpInfo,
    ) -> BackendResult<()> {
        Err(self.unsupported("restore_into_empty"))
    }

    /// The one-line shell command an operator runs to remove `kept` (a kept database or
    /// volume that start-up recovery left because it could not prove the node), shown by
    /// `status`; `None` when there is no such command or the name could break out of the
    /// quoting. Never carries a password.
    fn kept_removal_command(&self, _kept: &str) -> Option<String> {
        None
    }

    /// The error for an operation this backend does not offer.
    fn unsupported(&self, op: &str) -> BackendError {
        BackendError::Unsupported {
            op: op.into(),
            backend: self.kind(),
        }
    }
}
