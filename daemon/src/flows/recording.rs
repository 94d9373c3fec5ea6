//! The layer used by `--dry-run`: reads pass through to the real backend, every call that
//! would change the world is written to the plan instead and answered with a plausible
//! value, so the flow runs to the end and the operator sees each step.
//!
//! It is a [`CallService`] layer: it looks at each [`BackendCall`] as data, so it holds no
//! copy of the backend trait. What passes through is decided by the operation's declared
//! [`Effect`], not by a list here: a new read passes untouched, and a new write is recorded
//! with its arguments and answered with nothing (a write whose result the flow needs gets
//! a plausible answer below; without one the dry run stops at it, never performing it).

use serde::Serialize;
use serde_json::Value;
use splice_dr_plugin_api::{
    Backend, BackendCall, BackendError, CallClient, CallService, Capabilities, DatabaseInfo,
    Dispatch, DumpInfo, Effect, ExecOutput, KeptDb, KeptStorage, OpContext, StagedCheck, StagedDb,
};
use std::sync::Arc;

use crate::run_context::RunContext;

/// The dry-run backend of a run: the recorder layer around `inner`, typed again.
pub fn recording_backend(inner: Arc<dyn Backend>, run: Arc<RunContext>) -> Arc<dyn Backend> {
    Arc::new(CallClient(Recorder {
        inner: Dispatch(inner),
        plan: Box::new(move |line: &str| run.plan(line)),
    }))
}

/// Where the recorder writes each plan line (the run's plan).
type PlanSink = Box<dyn Fn(&str) + Send + Sync>;

/// A [`CallService`] that changes nothing.
pub struct Recorder<S> {
    inner: S,
    plan: PlanSink,
}

impl<S: CallService> CallService for Recorder<S> {
    fn kind(&self) -> String {
        self.inner.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn call(&self, ctx: &OpContext, call: BackendCall) -> Result<Value, BackendError> {
        if call.effect() == Effect::Read {
            return self.inner.call(ctx, call);
        }
        let (plan, answer) = self.planned(ctx, &call);
        (self.plan)(&plan);
        answer
    }
}

fn answer<T: Serialize>(v: T) -> Result<Value, BackendError> {
    serde_json::to_value(v).map_err(|e| BackendError::Plugin(format!("dry run answer: {e}")))
}

impl<S: CallService> Recorder<S> {
    /// For a call that would change the world: the plan line and the plausible answer.
    fn planned(
        &self,
        ctx: &OpContext,
        call: &BackendCall,
    ) -> (String, Result<Value, BackendError>) {
        use BackendCall as C;
        match call {
            C::Scale {
                component,
                replicas,
            } => (format!("would scale {component} to {replicas}"), answer(())),
            // The wire carries the timeout in milliseconds.
            C::WaitReady { component, timeout } => (
                format!(
                    "would wait up to {}s for {component} to be ready",
                    timeout / 1000
                ),
                answer(()),
            ),
            C::Dump { role, dest } => {
                let database = self.live_name(ctx, role);
                let plan = format!(
                    "would dump database {database} ({role}) to {}",
                    dest.display()
                );
                (plan, answer(empty_dump(role, database)))
            }
            C::RestoreStaged {
                role,
                src,
                expected,
            } => {
                let live = self.live_name(ctx, role);
                let plan = format!(
                    "would restore {} into a new database next to {live} and check {} tables' row counts",
                    src.display(),
                    expected.tables.len()
                );
                let staged = StagedDb {
                    role: role.clone(),
                    staging: format!("{live}__sdr_staging_dryrun"),
                    live,
                };
                (plan, answer(staged))
            }
            C::SwapIn { staged } => swap_in(staged),
            C::RollBack { kept } => (
                format!("would put back {} kept database(s)", kept.len()),
                answer(()),
            ),
            C::DropKept { kept } => {
                let names: Vec<&str> = kept.iter().map(|k| k.kept.as_str()).collect();
                let plan = format!("would drop the replaced databases {}", names.join(", "));
                (plan, answer(()))
            }
            C::DropStaged { staged } => (
                format!("would drop {} staged database(s)", staged.len()),
                answer(()),
            ),
            C::CheckStaged { staged, queries } => check_staged(staged, queries.len()),
            C::Exec {
                component, argv, ..
            } => {
                let plan = format!("would run `{}` in {component}", argv.join(" "));
                let out = ExecOutput {
                    code: 0,
                    stdout: String::new(),
                    stderr: String::new(),
                };
                (plan, answer(out))
            }
            C::PutFile { target, src } => (
                format!("would copy {} into {}", src.display(), target.name),
                answer(()),
            ),
            C::Wipe { target } => (format!("would wipe {}", target.name), answer(())),
            C::SetValues { values } => (format!("would apply values {values}"), answer(())),
            C::KeepStorage { target } => {
                let plan = format!("would copy storage {} aside before wiping it", target.name);
                let kept = KeptStorage {
                    target: target.name.clone(),
                    live: target.name.clone(),
                    kept: format!("{}__sdr_kept_dry_run", target.name),
                    bytes: 0,
                };
                (plan, answer(kept))
            }
            C::RestoreKeptStorage { kept } => (
                format!("would put {} back from {}", kept.live, kept.kept),
                answer(()),
            ),
            C::DropKeptStorage { kept } => (
                format!("would delete the kept copy {}", kept.kept),
                answer(()),
            ),
            C::RestoreIntoEmpty { role, src, .. } => (
                format!(
                    "would restore {} into the emptied {role} database and verify its row counts",
                    src.display()
                ),
                answer(()),
            ),
            C::RestoreBaseBackup { src, expected, .. } => {
                let plan = format!(
                    "would stop the database server, keep its data directory aside, lay down \
                     the base backup {} and start the server (recovery to {})",
                    src.display(),
                    expected.end_lsn
                );
                let kept = KeptStorage {
                    target: "data_dir".into(),
                    live: "data_dir".into(),
                    kept: "data_dir.sdr_kept_dry_run".into(),
                    bytes: 0,
                };
                (plan, answer(kept))
            }
            C::ReplayBaseBackup { src, replay, .. } => {
                let plan = format!(
                    "would stop the database server, keep its data directory aside, lay down \
                     the base backup {} with {} stored WAL segments and start the server \
                     (recovery to {})",
                    src.display(),
                    replay.segments.len(),
                    match replay.target {
                        splice_dr_plugin_api::RecoveryTarget::Latest => "latest".to_string(),
                        splice_dr_plugin_api::RecoveryTarget::Time(t) => t.to_rfc3339(),
                    }
                );
                let kept = KeptStorage {
                    target: "data_dir".into(),
                    live: "data_dir".into(),
                    kept: "data_dir.sdr_kept_dry_run".into(),
                    bytes: 0,
                };
                (plan, answer(kept))
            }
            other => unplanned(other),
        }
    }

    /// The physical name of the live database of `role`, read from the real backend.
    fn live_name(&self, ctx: &OpContext, role: &str) -> String {
        self.inner
            .call(ctx, BackendCall::Databases {})
            .ok()
            .and_then(|v| serde_json::from_value::<Vec<DatabaseInfo>>(v).ok())
            .and_then(|dbs| dbs.into_iter().find(|d| d.role == role))
            .map(|d| d.name)
            .unwrap_or_else(|| role.to_string())
    }
}

/// A write with no plan of its own: recorded with its arguments, answered with nothing.
fn unplanned(call: &BackendCall) -> (String, Result<Value, BackendError>) {
    let mut args = serde_json::to_value(call).unwrap_or(Value::Null);
    if let Some(fields) = args.as_object_mut() {
        fields.remove("op");
    }
    (format!("would {} {args}", call.op()), answer(()))
}

fn empty_dump(role: &str, database: String) -> DumpInfo {
    let now = chrono::Utc::now();
    DumpInfo {
        role: role.into(),
        database,
        format: "directory".into(),
        started_at: now,
        finished_at: now,
        server_version: String::new(),
        tables: Vec::new(),
    }
}

fn swap_in(staged: &[StagedDb]) -> (String, Result<Value, BackendError>) {
    let names: Vec<&str> = staged.iter().map(|s| s.live.as_str()).collect();
    let plan = format!(
        "would swap the restored databases in atomically, keeping the current {}",
        names.join(" and ")
    );
    let kept: Vec<KeptDb> = staged
        .iter()
        .map(|s| KeptDb {
            role: s.role.clone(),
            live: s.live.clone(),
            kept: format!("{}__sdr_kept_dryrun", s.live),
            existed: true,
        })
        .collect();
    (plan, answer(kept))
}

fn check_staged(staged: &StagedDb, queries: usize) -> (String, Result<Value, BackendError>) {
    let plan = format!(
        "would check every B-tree index of {} with amcheck and run {queries} site queries",
        staged.staging
    );
    let check = StagedCheck {
        database: staged.staging.clone(),
        amcheck_note: Some("dry run: nothing checked".into()),
        ..StagedCheck::default()
    };
    (plan, answer(check))
}

#[cfg(test)]
mod tests {
    use super::*;
    use splice_dr_plugin_api::StorageTarget;
    use std::sync::Mutex;

    /// Answers every call with `null` and remembers which operations reached it.
    #[derive(Default)]
    struct Seen(Arc<Mutex<Vec<&'static str>>>);

    impl CallService for Seen {
        fn kind(&self) -> String {
            "seen".into()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn call(&self, _: &OpContext, call: BackendCall) -> Result<Value, BackendError> {
            self.0.lock().unwrap().push(call.op());
            Ok(Value::Array(Vec::new()))
        }
    }

    /// Reads reach the backend, writes reach only the plan, and a write without a plan of
    /// its own is still recorded with its arguments rather than performed.
    #[test]
    fn only_reads_reach_the_backend_and_every_write_is_planned() {
        let seen = Seen::default();
        let reached = seen.0.clone();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let recorder = Recorder {
            inner: seen,
            plan: Box::new(move |l: &str| sink.lock().unwrap().push(l.to_string())),
        };
        let ctx = OpContext::new(|| false, |_| {});
        recorder.call(&ctx, BackendCall::Leftovers {}).unwrap();
        let target = StorageTarget {
            name: "pgdata".into(),
            path: None,
        };
        recorder.call(&ctx, BackendCall::Wipe { target }).unwrap();
        assert_eq!(*reached.lock().unwrap(), vec!["leftovers"]);
        assert_eq!(*lines.lock().unwrap(), vec!["would wipe pgdata"]);

        let (plan, answer) = unplanned(&BackendCall::Scale {
            component: "validator".into(),
            replicas: 0,
        });
        assert_eq!(
            plan,
            r#"would scale {"component":"validator","replicas":0}"#
        );
        assert_eq!(answer.unwrap(), Value::Null);
    }
}
