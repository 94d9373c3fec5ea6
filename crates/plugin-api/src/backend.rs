//! The backend contract: [`BackendInfo`] (what a backend is) and one trait per concern it
//! serves — [`Workloads`], [`Databases`], [`Storage`] — joined in [`Backend`].
//!
//! Split by concern because backends differ by concern, not by operation: the bare-Postgres
//! backend has databases and hand-run components but no storage it can reach, compose and
//! k8s have all three, and a site plugin may add any mix. A backend writes one `impl` per
//! concern, so what it offers reads off its impl blocks, and the grouping is the one
//! [`Capabilities`] already uses: a capability and the operations it announces live in the
//! same concern. Hosts still hold one `Arc<dyn Backend>`, and the wire does not change: the
//! C ABI's [`BackendCall`] is one flat enum whatever trait declares an operation.
//!
//! Each operation is defined once, below, and [`backend_operations!`](crate::backend_operations)
//! derives from it the trait method, the [`BackendCall`] request of the C ABI, its arm of
//! [`dispatch`], the [`CallClient`](crate::CallClient) method and its [`Effect`](crate::Effect).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{
    BackendError, BaseBackupCheck, BaseBackupInfo, Capabilities, ComponentStatus, DatabaseInfo,
    DumpCheck, DumpInfo, ExecOutput, KeptDb, KeptStorage, Leftovers, ScratchChecks, StagedCheck,
    StagedDb, StagedQuery, StorageTarget, WalReplay, WalSlot,
};

/// Result type of every backend call.
pub type BackendResult<T> = Result<T, BackendError>;

crate::backend_operations! {
    /// One node's infrastructure, seen through every operation the recovery runbook uses:
    /// what flows, the dry-run recorder, the metrics layer and the C ABI hold
    /// (`Arc<dyn Backend>`, [`dispatch`]).
    ///
    /// Never implemented by hand: a type implementing [`BackendInfo`] and every concern is
    /// a `Backend` (blanket impl). A type missing a concern is therefore no backend, even
    /// where that concern's operations are all optional (write an empty impl to offer none
    /// of them), and a host needs no concern trait in scope to call an operation on a
    /// `dyn Backend`.
    union Backend;

    /// What a backend is, as opposed to what it does: its kind, its capabilities and how an
    /// operator removes what it kept.
    ///
    /// The supertrait of every concern, because an operation a backend does not offer (the
    /// default body of an `optional` one) answers [`BackendError::Unsupported`] naming the
    /// backend, and because these answers need no call into the node: a plugin is asked
    /// its kind and capabilities once, at load.
    info BackendInfo {
        trait {
            /// Short kind name for logs and status, e.g. `postgres`.
            fn kind(&self) -> String;

            /// What this backend can do, grouped by concern. Flows choose their path from it
            /// (volume-level or staged restore, which storage to empty for a fresh node, where
            /// a file may be placed), never from [`BackendInfo::kind`]. The default is the
            /// conservative shape: staged restore, no storage operations, no exec.
            fn capabilities(&self) -> Capabilities {
                Capabilities::default()
            }

            /// The one-line shell command an operator runs to remove `kept` (a kept database
            /// or volume that start-up recovery left because it could not prove the node),
            /// shown by `status`; `None` when there is no such command or the name could break
            /// out of the quoting. Never carries a password.
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
        client {
            fn kind(&self) -> String {
                self.0.kind()
            }
            fn capabilities(&self) -> Capabilities {
                self.0.capabilities()
            }
            fn kept_removal_command(&self, kept: &str) -> Option<String> {
                let ctx = crate::OpContext::new(|| false, |_| {});
                let call = BackendCall::KeptRemovalCommand { kept: kept.into() };
                self.typed(&ctx, call).ok().flatten()
            }
        }
        calls {
            /// The backend's kind; a plugin is asked once, at load.
            kind = Kind {} => |b| b.kind();
            /// What the backend can do; a plugin is asked once, at load.
            capabilities = Capabilities {} => |b| b.capabilities();
            /// See [`BackendInfo::kept_removal_command`].
            kept_removal_command = KeptRemovalCommand { kept: String }
                => |b| b.kept_removal_command(&kept);
        }
    }

    /// The node's running components: observed, stopped and started, waited for, and
    /// configured for their next start.
    ///
    /// Observing, scaling and waiting are required: `status` probes every node's
    /// components and every restore stops and starts them. A command inside one
    /// ([`Workloads::exec`]) and new start values ([`Workloads::set_values`]) are optional
    /// and announced by [`Capabilities::workloads`](crate::WorkloadCapabilities) (`exec`,
    /// `values_persist`).
    /// Values belong here, not to storage, because they reach the node only when a
    /// component starts (helm overlay, compose start flags, a restart command).
    concern Workloads {
        /// The node's components and their observed state.
        [read] fn components() -> Vec<ComponentStatus> = Components;

        /// Stops (`0`) or starts (`>= 1`) a component.
        [write] fn scale(component: &str => String, replicas: u32 => u32) -> () = Scale;

        /// Blocks until the component is ready, the timeout passes, or the run is cancelled.
        [write] fn wait_ready(
            component: &str => String,
            #[serde(rename = "timeout_ms")] timeout: Duration => u64
        ) -> () = WaitReady;

        /// Runs a command inside a component, feeding it `stdin` from a file when given.
        [write, optional] fn exec(
            component: &str => String,
            argv: &[String] => Vec<String>,
            stdin: Option<&Path> => Option<PathBuf>
        ) -> ExecOutput = Exec;

        /// Applies configuration values (helm overlay, compose start flags).
        [write, optional] fn set_values(values: &serde_json::Value => serde_json::Value) -> ()
            = SetValues;
    }

    /// The node's databases, dumped and restored as databases: what a backup is made of.
    ///
    /// Restores are split into stage → swap → keep/rollback so that every backend can
    /// honour the safety invariant "the state being replaced is kept until the new state is
    /// verified": [`Databases::restore_staged`] never touches live data,
    /// [`Databases::swap_in`] replaces it atomically while keeping the old state, and only
    /// [`Databases::drop_kept`] destroys anything. A backend whose restore shape is
    /// volume-level (see [`Capabilities`]) keeps the invariant with [`Storage`] instead and
    /// fills the emptied databases with [`Databases::restore_into_empty`], which is here
    /// because it is the same dump-and-verify work as a staged restore; only the steps
    /// around it differ.
    ///
    /// Listing, dumping, checking a dump and [`Databases::leftovers`] are required: every
    /// backend backs up, and start-up recovery and `status` ask every backend what
    /// interrupted runs left (a backend with storage adds its kept copies to the same
    /// answer).
    concern Databases {
        /// The node's databases by role, with their physical names.
        [read] fn databases() -> Vec<DatabaseInfo> = Databases;

        /// Dumps the database with this role into the (new, empty) directory `dest`.
        [write] fn dump(role: &str => String, dest: &Path => PathBuf) -> DumpInfo = Dump;

        /// Reads a dump's table of contents (`pg_restore --list` or equivalent) to prove it
        /// is readable, without restoring anything.
        [read] fn check_dump(src: &Path => PathBuf) -> DumpCheck = CheckDump;

        /// Restores a dump into a new database next to the live one and verifies it against
        /// `expected` (the manifest's record of the dump). Live data is untouched.
        [write, optional] fn restore_staged(
            role: &str => String,
            src: &Path => PathBuf,
            expected: &DumpInfo => DumpInfo
        ) -> StagedDb = RestoreStaged;

        /// Puts every staged database in service in one atomic switch, keeping the replaced
        /// ones. Either all are swapped or none is.
        [write, optional] fn swap_in(staged: &[StagedDb] => Vec<StagedDb>) -> Vec<KeptDb>
            = SwapIn;

        /// Undoes [`Databases::swap_in`]: the kept databases become live again and the
        /// restored ones are dropped.
        [write, optional] fn roll_back(kept: &[KeptDb] => Vec<KeptDb>) -> () = RollBack;

        /// Drops databases kept by [`Databases::swap_in`] once the restored state is proven.
        [write, optional] fn drop_kept(kept: &[KeptDb] => Vec<KeptDb>) -> () = DropKept;

        /// Drops staged databases that will not be swapped in (failed or cancelled restore).
        [write, optional] fn drop_staged(staged: &[StagedDb] => Vec<StagedDb>) -> ()
            = DropStaged;

        /// Staged and kept state left by runs that did not finish.
        [read] fn leftovers() -> Leftovers = Leftovers;

        /// Looks deeper into a staged database than row counts, for restore drills: every
        /// B-tree index verified with `amcheck` where the extension is available (its
        /// absence is reported in the result, not an error), then the site's sanity
        /// `queries`. Problems are returned, not raised; an error means the checks could not
        /// run at all.
        [write, optional] fn check_staged(
            staged: &StagedDb => StagedDb,
            queries: &[StagedQuery] => Vec<StagedQuery>
        ) -> StagedCheck = CheckStaged;

        /// Restores a dump straight into the live database of `role`, which must exist and
        /// hold no tables (the runbook's `psql < dump` after the volume was wiped), then
        /// verifies it against `expected`. Refuses a database that holds data: that would
        /// mix two states.
        [write, optional] fn restore_into_empty(
            role: &str => String,
            src: &Path => PathBuf,
            expected: &DumpInfo => DumpInfo
        ) -> () = RestoreIntoEmpty;

        /// Copies the node's whole database server — every database at one consistent
        /// point — into the new, empty directory `dest`, with the WAL the copy needs to
        /// start on its own (a physical backup, announced by `databases.physical`).
        [write, optional] fn base_backup(dest: &Path => PathBuf) -> BaseBackupInfo
            = BaseBackup;

        /// Checks a base backup against its own manifest (`pg_verifybackup`: every file's
        /// size and checksum, and the WAL it needs), without starting a server.
        [read, optional] fn check_base_backup(src: &Path => PathBuf) -> BaseBackupCheck
            = CheckBaseBackup;

        /// Replaces the database server's data with the base backup in `src`, replayed to
        /// its own end: stops the server, keeps its data aside, lays the copy down, starts
        /// the server and waits up to `timeout` until recovery ended and it accepts
        /// connections to every database `expected` lists. On any failure the kept data is
        /// put back and the server started on it before the error is returned. The kept
        /// data is answered: [`Storage::drop_kept_storage`] once the node is proven,
        /// [`Storage::restore_kept_storage`] if it is not.
        [write, optional] fn restore_base_backup(
            src: &Path => PathBuf,
            expected: &BaseBackupInfo => BaseBackupInfo,
            #[serde(rename = "timeout_ms")] timeout: Duration => u64
        ) -> KeptStorage = RestoreBaseBackup;

        /// [`Databases::restore_base_backup`] replaying the stored WAL in `replay` past the
        /// backup's end, to its target (announced by `databases.wal_streaming`). Before the
        /// server stops it reads the last commit the WAL holds and refuses a time target
        /// past it (or before the backup's end), naming the last reachable time; a promoted
        /// server starts a timeline none of `replay.histories` names.
        [write, optional] fn replay_base_backup(
            src: &Path => PathBuf,
            expected: &BaseBackupInfo => BaseBackupInfo,
            replay: &WalReplay => WalReplay,
            #[serde(rename = "timeout_ms")] timeout: Duration => u64
        ) -> KeptStorage = ReplayBaseBackup;

        /// Streams the server's WAL into the directory `dir` through the physical
        /// replication slot `slot` (created when missing) until the receiver exits or the
        /// call is cancelled: completed segments appear in `dir` under their own names,
        /// the one being written as `<segment>.partial`, each write flushed before it is
        /// acknowledged (announced by `databases.wal_streaming`).
        [write, optional] fn stream_wal(slot: &str => String, dir: &Path => PathBuf) -> ()
            = StreamWal;

        /// Where the slot `slot` stands against the server's WAL (see [`WalSlot`]).
        [read, optional] fn wal_slot(slot: &str => String) -> WalSlot = WalSlot;

        /// Drops the replication slot `slot` when it exists and no receiver uses it, so
        /// the server stops keeping WAL for it; answers whether it existed.
        [write, optional] fn drop_wal_slot(slot: &str => String) -> bool = DropWalSlot;
        /// Proves a base backup starts and its data is sound without touching the node: lays
        /// the copy in `src` down under `scratch` (a new, private directory the caller owns
        /// and removes), starts a server of its own on it that no client of the node can
        /// reach and that reaches nothing of the node (no archiving, no replication, no
        /// subscriptions), waits up to `timeout` until recovery ended, reads every table and
        /// runs the drill checks ([`Databases::check_staged`]'s amcheck and site queries) in
        /// each role's database, then stops that server — on every path, failures
        /// included. Answers one [`StagedCheck`] per entry of `checks`, in order; problems
        /// found are in them, an error means the copy could not be brought up or checked.
        [write, optional] fn drill_base_backup(
            src: &Path => PathBuf,
            expected: &BaseBackupInfo => BaseBackupInfo,
            scratch: &Path => PathBuf,
            checks: &[ScratchChecks] => Vec<ScratchChecks>,
            #[serde(rename = "timeout_ms")] timeout: Duration => u64
        ) -> Vec<StagedCheck> = DrillBaseBackup;
    }

    /// The storage under the node (volumes, PVCs, Secrets, the database server's data):
    /// kept aside, emptied, put back, and given files.
    ///
    /// Every operation is optional: a backend that cannot reach the node's storage (bare
    /// Postgres) writes an empty impl, and flows learn what exists from
    /// [`Capabilities::storage`](crate::StorageCapabilities) (`database_storage`,
    /// `file_targets`) before calling. Keeping, wiping and putting back are the volume-level
    /// restore's and the fresh node's way of honouring "the state being replaced is kept
    /// until the new state is verified".
    concern Storage {
        /// Copies a local file into a storage target (volume, PVC, directory).
        [write, optional] fn put_file(target: &StorageTarget => StorageTarget, src: &Path => PathBuf)
            -> () = PutFile;

        /// Removes a storage target's contents.
        [write, optional] fn wipe(target: &StorageTarget => StorageTarget) -> () = Wipe;

        /// Copies a storage target (a Postgres volume) aside, with its owners and modes, so a
        /// restore that wipes it can still put it back. The component using it must be
        /// stopped.
        [write, optional] fn keep_storage(target: &StorageTarget => StorageTarget) -> KeptStorage
            = KeepStorage;

        /// Undoes a wipe: the live storage gets the kept copy's contents back. The copy
        /// itself stays until [`Storage::drop_kept_storage`].
        [write, optional] fn restore_kept_storage(kept: &KeptStorage => KeptStorage) -> ()
            = RestoreKeptStorage;

        /// Deletes a kept copy once the restored state is proven.
        [write, optional] fn drop_kept_storage(kept: &KeptStorage => KeptStorage) -> ()
            = DropKeptStorage;
    }
}

#[cfg(test)]
mod wire_format {
    use super::BackendCall;
    use crate::Effect::{Read, Write};
    use serde_json::{json, Value};

    fn dump_info() -> Value {
        json!({
            "role": "validator", "database": "validator", "format": "directory",
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:00Z",
            "server_version": "16.4",
            "tables": [{"schema": "public", "table": "t", "rows": 3}]
        })
    }

    fn base_backup_info() -> Value {
        json!({
            "format": "plain", "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:01:00Z", "server_version": "15.8", "timeline": 1,
            "start_lsn": "0/2000028", "end_lsn": "0/2000100",
            "databases": ["validator", "participant-0"], "dirs": ["base", "pg_wal"]
        })
    }

    fn staged() -> Value {
        json!({"role": "validator", "live": "v", "staging": "v__sdr_staging_1"})
    }

    fn kept_db() -> Value {
        json!({"role": "validator", "live": "v", "kept": "v__sdr_kept_1", "existed": true})
    }

    fn kept_storage() -> Value {
        json!({"target": "postgres", "live": "pg", "kept": "pg__sdr_kept_1", "bytes": 9})
    }

    fn target() -> Value {
        json!({"name": "dump", "path": "/x.json"})
    }

    /// Every request that only looks, as a plugin built against an earlier contract reads
    /// it: the C ABI's format is this JSON, so how the traits are organised in Rust must
    /// never show here.
    fn reads() -> Vec<Value> {
        vec![
            json!({"op": "kind"}),
            json!({"op": "capabilities"}),
            json!({"op": "kept_removal_command", "kept": "k"}),
            json!({"op": "components"}),
            json!({"op": "databases"}),
            json!({"op": "check_dump", "src": "/d"}),
            json!({"op": "leftovers"}),
            json!({"op": "check_base_backup", "src": "/b"}),
            json!({"op": "wal_slot", "slot": "splice_dr_v"}),
        ]
    }

    /// Every request that changes the node (or reads what only a write creates), as above.
    fn writes() -> Vec<Value> {
        let dump = dump_info();
        vec![
            json!({"op": "scale", "component": "validator", "replicas": 0}),
            json!({"op": "wait_ready", "component": "validator", "timeout_ms": 1500}),
            json!({"op": "dump", "role": "validator", "dest": "/d"}),
            json!({"op": "restore_staged", "role": "validator", "src": "/d", "expected": dump}),
            json!({"op": "swap_in", "staged": [staged()]}),
            json!({"op": "roll_back", "kept": [kept_db()]}),
            json!({"op": "drop_kept", "kept": [kept_db()]}),
            json!({"op": "drop_staged", "staged": [staged()]}),
            json!({
                "op": "check_staged", "staged": staged(), "queries": [{"name": "n", "sql": "1"}]
            }),
            json!({"op": "exec", "component": "postgres", "argv": ["true"], "stdin": "/in"}),
            json!({"op": "exec", "component": "postgres", "argv": [], "stdin": null}),
            json!({"op": "put_file", "target": target(), "src": "/f"}),
            json!({"op": "wipe", "target": target()}),
            json!({"op": "set_values", "values": {"migrating": true}}),
            json!({"op": "keep_storage", "target": target()}),
            json!({"op": "restore_kept_storage", "kept": kept_storage()}),
            json!({"op": "drop_kept_storage", "kept": kept_storage()}),
            json!({
                "op": "restore_into_empty", "role": "participant", "src": "/d", "expected": dump
            }),
            json!({"op": "base_backup", "dest": "/b"}),
            json!({
                "op": "restore_base_backup", "src": "/b", "expected": base_backup_info(),
                "timeout_ms": 60000
            }),
            json!({
                "op": "replay_base_backup", "src": "/b", "expected": base_backup_info(),
                "replay": {"segments": ["/r/000000010000000000000003"], "histories": [],
                           "target": {"kind": "time", "at": "2026-12-07T06:30:00Z"}},
                "timeout_ms": 60000
            }),
            json!({"op": "stream_wal", "slot": "splice_dr_v", "dir": "/w"}),
            json!({"op": "drop_wal_slot", "slot": "splice_dr_v"}),
            json!({
                "op": "drill_base_backup", "src": "/b", "expected": base_backup_info(),
                "scratch": "/s", "checks": [{"role": "validator", "queries": []}],
                "timeout_ms": 60000
            }),
        ]
    }

    /// Each request reads into a call and writes back as the same JSON, and the call
    /// names the same operation and effect: plugins built before still load and answer.
    #[test]
    fn every_request_keeps_its_json_op_and_effect() {
        let reads = reads().into_iter().map(|w| (w, Read));
        for (wire, effect) in reads.chain(writes().into_iter().map(|w| (w, Write))) {
            let call: BackendCall =
                serde_json::from_value(wire.clone()).unwrap_or_else(|e| panic!("{wire}: {e}"));
            assert_eq!(serde_json::to_value(&call).unwrap(), wire);
            assert_eq!(Some(call.op()), wire["op"].as_str(), "{wire}");
            assert_eq!(call.effect(), effect, "{wire}");
        }
    }
}
