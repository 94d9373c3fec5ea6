//! Backend calls as data.
//!
//! [`BackendCall`] is the JSON request format of the C ABI and [`dispatch`] turns one into
//! a trait call. The plugin side of the ABI and any in-process test use the same
//! function, so a site plugin is exercised through exactly the code a built-in uses.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

use crate::{
    Backend, BackendError, DumpInfo, KeptDb, KeptStorage, OpContext, StagedDb, StagedQuery,
    StorageTarget,
};

/// One call of the [`Backend`] trait, serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(missing_docs)] // each variant mirrors the trait method of the same name
pub enum BackendCall {
    Kind,
    Capabilities,
    Components,
    Scale {
        component: String,
        replicas: u32,
    },
    WaitReady {
        component: String,
        timeout_ms: u64,
    },
    Databases,
    Dump {
        role: String,
        dest: PathBuf,
    },
    CheckDump {
        src: PathBuf,
    },
    RestoreStaged {
        role: String,
        src: PathBuf,
        expected: DumpInfo,
    },
    SwapIn {
        staged: Vec<StagedDb>,
    },
    RollBack {
        kept: Vec<KeptDb>,
    },
    DropKept {
        kept: Vec<KeptDb>,
    },
    DropStaged {
        staged: Vec<StagedDb>,
    },
    Leftovers,
    KeptRemovalCommand {
        kept: String,
    },
    CheckStaged {
        staged: StagedDb,
        queries: Vec<StagedQuery>,
    },
    Exec {
        component: String,
        argv: Vec<String>,
        stdin: Option<PathBuf>,
    },
    PutFile {
        target: StorageTarget,
        src: PathBuf,
    },
    Wipe {
        target: StorageTarget,
    },
    SetValues {
        values: Value,
    },
    KeepStorage {
        target: StorageTarget,
    },
    RestoreKeptStorage {
        kept: KeptStorage,
    },
    DropKeptStorage {
        kept: KeptStorage,
    },
    RestoreIntoEmpty {
        role: String,
        src: PathBuf,
        expected: DumpInfo,
    },
}

fn to_value<T: Serialize>(v: T) -> Result<Value, BackendError> {
    serde_json::to_value(v).map_err(|e| BackendError::Plugin(format!("encoding a result: {e}")))
}

/// Performs `call` on `backend` and returns its result as JSON.
pub fn dispatch(
    backend: &dyn Backend,
    ctx: &OpContext,
    call: BackendCall,
) -> Result<Value, BackendError> {
    use BackendCall as C;
    match call {
        C::Kind => to_value(backend.kind()),
        C::Capabilities => to_value(backend.capabilities()),
        C::Components => to_value(backend.components(ctx)?),
        C::Scale {
            component,
            replicas,
        } => to_value(backend.scale(ctx, &component, replicas)?),
        C::WaitReady {
            component,
            timeout_ms,
        } => to_value(backend.wait_ready(ctx, &component, Duration::from_millis(timeout_ms))?),
        C::Databases => to_value(backend.databases(ctx)?),
        C::Dump { role, dest } => to_value(backend.dump(ctx, &role, &dest)?),
        C::CheckDump { src } => to_value(backend.check_dump(ctx, &src)?),
        C::RestoreStaged {
            role,
            src,
            expected,
        } => to_value(backend.restore_staged(ctx, &role, &src, &expected)?),
        C::SwapIn { staged } => to_value(backend.swap_in(ctx, &staged)?),
        C::RollBack { kept } => to_value(backend.roll_back(ctx, &kept)?),
        C::DropKept { kept } => to_value(backend.drop_kept(ctx, &kept)?),
        C::DropStaged { staged } => to_value(backend.drop_staged(ctx, &staged)?),
        C::Leftovers => to_value(backend.leftovers(ctx)?),
        C::KeptRemovalCommand { kept } => to_value(backend.kept_removal_command(&kept)),
        C::CheckStaged { staged, queries } => {
            to_value(backend.check_staged(ctx, &staged, &queries)?)
        }
        C::Exec {
            component,
            argv,
            stdin,
        } => to_value(backend.exec(ctx, &component, &argv, stdin.as_deref())?),
        C::PutFile { target, src } => to_value(backend.put_file(ctx, &target, &src)?),
        C::Wipe { target } => to_value(backend.wipe(ctx, &target)?),
        C::SetValues { values } => to_value(backend.set_values(ctx, &values)?),
        C::KeepStorage { target } => to_value(backend.keep_storage(ctx, &target)?),
        C::RestoreKeptStorage { kept } => to_value(backend.restore_kept_storage(ctx, &kept)?),
        C::DropKeptStorage { kept } => to_value(backend.drop_kept_storage(ctx, &kept)?),
        C::RestoreIntoEmpty {
            role,
            src,
            expected,
        } => to_value(backend.restore_into_empty(ctx, &role, &src, &expected)?),
    }
}
