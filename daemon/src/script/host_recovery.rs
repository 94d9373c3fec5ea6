//! Host functions for the recovery flows beyond a restore: the participant-id registry,
//! restarting a node with new settings, files onto the node's volumes, and identities
//! dumps decrypted for a re-onboard. See `scripts/README.md`.

use rhai::{Dynamic, Engine, Map};
use splice_dr_plugin_api::{BackendError, StorageTarget};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::host::{fail, to_dyn, BackupsApi, FlowEnv, NodeApi, RResult};
use crate::participants::Registry;
use crate::run_context::StepKind;

/// Prefix of the decrypted identities files this module creates (and alone may delete).
use crate::private_tmp::IDENTITIES_PREFIX;

/// The registry with everything known to be used merged in: the ids the config shows,
/// and what this node's local backups know (see [`merge_backups`]).
pub(super) fn seeded_registry(env: &FlowEnv) -> RResult<Registry> {
    let (state_dir, node) = (&env.node.state_dir, &env.node.name);
    let mut reg = Registry::load(state_dir, node).map_err(|e| fail(e.to_string()))?;
    let mut changed = false;
    for id in &env.node.configured_participant_ids {
        changed |= reg.mark_used(id, "config");
    }
    let (backups, _) = env.repo.list().unwrap_or_default();
    changed |= merge_backups(&mut reg, node, backups.iter());
    if changed {
        reg.save(state_dir, node).map_err(|e| fail(e.to_string()))?;
    }
    Ok(reg)
}

/// [`seeded_registry`] with the backups of every off-site repository merged in too: what
/// a fresh host (an empty state directory) must read before choosing an id, since the
/// ids another host burned are known only to its backups. Returns what could not be read
/// beside it (a repository that does not answer, an unreadable manifest), each also
/// logged in the run.
fn registry_everywhere(env: &FlowEnv) -> RResult<(Registry, Vec<String>)> {
    let mut reg = seeded_registry(env)?;
    if env.repo.offsite().is_empty() {
        return Ok((reg, Vec::new()));
    }
    let (all, problems) = env.repo.list_everywhere();
    for p in &problems {
        env.run.log(
            "warn",
            &format!("participant ids recorded there are unknown to this choice: {p}"),
        );
    }
    let node = &env.node.name;
    if merge_backups(&mut reg, node, all.iter().map(|l| &l.manifest)) && !env.run.dry_run() {
        reg.save(&env.node.state_dir, node)
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok((reg, problems))
}

/// Marks as used what `node`'s backups know: the participant id inside each one's
/// identities dump, and every id of the registry copy it carries (whichever host took it,
/// trusted or not: an id wrongly believed burned costs nothing, a burned one reused costs
/// a failed re-onboard). Returns whether anything was new.
fn merge_backups<'a>(
    reg: &mut Registry,
    node: &str,
    backups: impl Iterator<Item = &'a splice_dr_repo::Manifest>,
) -> bool {
    let mut changed = false;
    for m in backups.filter(|m| m.node == node) {
        let taker = m
            .host
            .as_ref()
            .map(|h| format!(", taken on {}", h.name))
            .unwrap_or_default();
        // The registry copy first: its sources say why an id was burned.
        for u in &m.participant_ids {
            let source = format!("{} (registry in backup {}{taker})", u.source, m.id);
            changed |= reg.mark_used(&u.id, &crate::util::truncate(&source, 300));
        }
        if let Some(ids) = &m.identities {
            let id = crate::participants::identifier_of(&ids.participant_id);
            changed |= reg.mark_used(id, &format!("backup {}", m.id));
        }
    }
    changed
}

/// The migration id and participant identifier the node runs now, from its registry: a
/// network DR or a re-onboard changes them before the operator edits the config file.
pub(super) fn running_ids(env: &FlowEnv) -> RResult<(u64, Option<String>)> {
    let reg =
        Registry::load(&env.node.state_dir, &env.node.name).map_err(|e| fail(e.to_string()))?;
    let migration = reg.running_migration_id(env.node.migration_id);
    Ok((migration, reg.current))
}

/// Adds what every start must pass since a re-onboard (the same `-P`, Splice's rule) or a
/// network DR (the new `-m`, and "migrating" until the node was seen healthy on it), even
/// before the config says so. Refuses a plain start of a node a re-onboard started with a
/// new id and never finished: Splice cannot resume one, and neither id is right for it.
fn complete_start_values(
    env: &FlowEnv,
    reg: &Registry,
    values: &mut serde_json::Value,
) -> RResult<()> {
    let reonboard = values.get("identities_dump").is_some();
    if let (Some(id), false) = (&reg.reonboarding, reonboard) {
        return Err(fail(format!(
            "node {} was started by a re-onboard as participant {id} that did not finish, and \
             Splice cannot resume a re-onboard: run `reonboard` again (a new id is chosen; {id} \
             stays burned), or wipe the node",
            env.node.name
        )));
    }
    if values.get("participant_id").is_none() {
        if let Some(current) = &reg.current {
            values["participant_id"] = serde_json::Value::String(current.clone());
        }
    }
    if values.get("migration_id").is_none() {
        if let Some(m) = reg.migration_id.filter(|m| *m > env.node.migration_id) {
            values["migration_id"] = serde_json::Value::from(m);
            if reg.migration_unproven && values.get("migrating").is_none() {
                values["migrating"] = serde_json::Value::Bool(true);
            }
        }
    }
    Ok(())
}

/// Records, before a start that changes what the node is, what every later start must
/// know: a migrating start to `m` makes `m` the migration id, "unproven" until the node
/// is seen healthy on it (see [`Registry::migration_unproven`]); a re-onboarding start as
/// a new id marks the node as re-onboarding until the flow proves it (see
/// [`Registry::reonboarding`]). A daemon killed during the start leaves the registry
/// saying what was started. `reg` is the registry as loaded for this start (the run holds
/// the node's lock, so it cannot have changed; loading it lists the repository).
fn record_start(
    env: &FlowEnv,
    mut reg: Registry,
    values: &serde_json::Value,
) -> Result<(), BackendError> {
    if env.run.dry_run() {
        return Ok(());
    }
    let migrating_to = values["migration_id"]
        .as_u64()
        .filter(|_| values["migrating"] == serde_json::Value::Bool(true));
    let reonboarding_as = values["participant_id"]
        .as_str()
        .filter(|_| values.get("identities_dump").is_some());
    if migrating_to.is_none() && reonboarding_as.is_none() {
        return Ok(());
    }
    if let Some(m) = migrating_to {
        reg.migration_id = Some(m);
        reg.migration_unproven = true;
        env.run.log(
            "info",
            &format!("every later start of the node passes migration id {m} (migrating until it is seen healthy)"),
        );
    }
    if let Some(id) = reonboarding_as {
        reg.reonboarding = Some(id.to_string());
    }
    reg.save(&env.node.state_dir, &env.node.name)
        .map_err(|e| BackendError::Plugin(e.to_string()))
}

/// Changes the node's registry in a journaled step; a dry run only says what it would do.
fn update_registry(
    env: &Arc<FlowEnv>,
    label: &str,
    change: impl FnOnce(&mut Registry),
) -> RResult<()> {
    if env.run.dry_run() {
        env.run.plan(&format!("would {label}"));
        return Ok(());
    }
    env.in_step(label, StepKind::UNDO, |_ctx| {
        let mut reg = seeded_registry(env).map_err(|e| BackendError::Plugin(e.to_string()))?;
        change(&mut reg);
        reg.save(&env.node.state_dir, &env.node.name)
            .map_err(|e| BackendError::Plugin(e.to_string()))
    })
}

/// `node.register_identities_file(path, party)`: checks an identities dump handed to a
/// re-onboard ([`crate::identities::check_dump_file`]) and records its participant id as
/// used, in a journaled step, so no later re-onboard chooses it. Called before anything is
/// chosen, burned or stopped: a bad file changes nothing. `party` is the backup's
/// validator party (`""` when unknown). Returns the participant identifier.
fn register_identities_file(env: &Arc<FlowEnv>, path: &str, party: &str) -> RResult<String> {
    let party = (!party.is_empty()).then_some(party);
    let uid = crate::identities::check_dump_file(Path::new(path), party).map_err(|e| {
        fail(format!(
            "params.identities_file {e}. Nothing was changed: give the file `splice-dr \
             identities export` wrote from this node's backup, or leave identities_file out \
             and give identity_key to use the backup's own dump"
        ))
    })?;
    let id = crate::participants::identifier_of(&uid).to_string();
    env.run.log(
        "info",
        &format!("identities file {path} holds participant {uid}"),
    );
    let label = format!("record participant id {id} of the identities file as used");
    update_registry(env, &label, |reg| {
        reg.mark_used(&id, &format!("identities file {path}"));
    })?;
    Ok(id)
}

fn registry_view(reg: &Registry) -> RResult<Dynamic> {
    to_dyn(&serde_json::json!({
        "current": reg.current,
        "used": reg.used.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
    }))
}

/// Registers the functions on `node` and `backups`.
pub(super) fn register(engine: &mut Engine) {
    register_participants(engine);
    register_restart(engine);
    register_identities(engine);
    register_snapshot(engine);
    register_drill(engine);
}

fn register_participants(engine: &mut Engine) {
    engine
        .register_fn("participant_ids", |n: &mut NodeApi| -> RResult<Dynamic> {
            registry_view(&registry_everywhere(&n.0)?.0)
        })
        .register_fn(
            "choose_participant_id",
            |n: &mut NodeApi, requested: &str, hint: &str| -> RResult<String> {
                let (reg, unread) = registry_everywhere(&n.0)?;
                let used: Vec<&str> = reg.used.iter().map(|u| u.id.as_str()).collect();
                n.0.run.log(
                    "info",
                    &format!(
                        "participant ids this node used (its registry, the config and the \
                         backups in every repository): {}",
                        if used.is_empty() { "none".into() } else { used.join(", ") }
                    ),
                );
                if requested.is_empty() {
                    if !unread.is_empty() {
                        return Err(fail(format!(
                            "cannot choose a participant id never used before: the ids burned \
                             according to part of the repositories are unknown ({}), and a \
                             burned id fails the re-onboard and burns another. Run again once \
                             they can be read, or give `participant_id` yourself (one you know \
                             this node never used). Nothing was changed",
                            unread.join("; ")
                        )));
                    }
                    return Ok(reg.next_free(hint));
                }
                if requested.contains("::") {
                    return Err(fail(format!(
                        "participant id `{requested}` is a uid: give the identifier alone (`{}`), as start.sh -P takes it",
                        crate::participants::identifier_of(requested)
                    )));
                }
                if let Some(u) = reg.used.iter().find(|u| u.id == requested) {
                    return Err(fail(format!(
                        "participant id `{requested}` was already used by this node ({}, since {}); \
                         Splice needs an id never used before: leave `participant_id` out to get \
                         `{}`, or choose another",
                        u.source,
                        u.since.format("%Y-%m-%d %H:%M"),
                        reg.next_free(hint)
                    )));
                }
                Ok(requested.to_string())
            },
        )
        .register_fn(
            "burn_participant_id",
            |n: &mut NodeApi, id: &str, reason: &str| -> RResult<()> {
                let label = format!("record participant id {id} as used");
                update_registry(&n.0, &label, |reg| {
                    reg.mark_used(id, reason);
                })
            },
        )
        .register_fn(
            "register_identities_file",
            |n: &mut NodeApi, path: &str, party: &str| -> RResult<String> {
                register_identities_file(&n.0, path, party)
            },
        )
        .register_fn("unproven_migration_id", |n: &mut NodeApi| -> RResult<Dynamic> {
            let reg = seeded_registry(&n.0)?;
            Ok(match reg.migration_id.filter(|_| reg.migration_unproven) {
                Some(m) => Dynamic::from(i64::try_from(m).map_err(|_| fail("migration id out of range"))?),
                None => Dynamic::UNIT,
            })
        })
        .register_fn("start_migration_id", |n: &mut NodeApi| -> RResult<i64> {
            let reg = seeded_registry(&n.0)?;
            let m = reg
                .migration_id
                .unwrap_or(0)
                .max(n.0.node.migration_id);
            i64::try_from(m).map_err(|_| fail("migration id out of range"))
        })
        .register_fn(
            "set_migration_id",
            |n: &mut NodeApi, id: i64| -> RResult<()> {
                let id = u64::try_from(id).map_err(|_| fail("migration id must be >= 0"))?;
                let label = format!("make {id} the migration id of every later start");
                update_registry(&n.0, &label, |reg| {
                    reg.migration_id = Some(id);
                    reg.migration_unproven = false;
                })
            },
        )
        .register_fn(
            "set_participant_id",
            |n: &mut NodeApi, id: &str| -> RResult<()> {
                let label = format!("make {id} the participant id of every later start");
                update_registry(&n.0, &label, |reg| {
                    reg.current = Some(id.to_string());
                    reg.reonboarding = None;
                })
            },
        );
}

fn register_restart(engine: &mut Engine) {
    engine
        .register_fn(
            "set_values",
            |n: &mut NodeApi, values: Map| -> RResult<()> {
                let env = n.0.clone();
                let mut values: serde_json::Value =
                    rhai::serde::from_dynamic(&Dynamic::from_map(values))
                        .map_err(|e| fail(format!("set_values: {e}")))?;
                let reg = seeded_registry(&env)?;
                complete_start_values(&env, &reg, &mut values)?;
                let backend = env.backend.clone();
                let label = format!("restart the node with {values}");
                env.in_step(&label, StepKind::Forward, |ctx| {
                    record_start(&env, reg, &values)?;
                    backend.set_values(ctx, &values)
                })?;
                // The node runs again, on purpose on what it has now: nothing for start-up
                // recovery to start or put back.
                env.run.note_restarted().map_err(fail)
            },
        )
        .register_fn(
            "put_file",
            |n: &mut NodeApi, target: &str, path: &str| -> RResult<()> {
                let env = n.0.clone();
                let backend = env.backend.clone();
                let t = StorageTarget {
                    name: target.into(),
                    path: None,
                };
                let label = format!("place {path} on the {target} volume");
                env.in_step(&label, StepKind::Forward, |ctx| {
                    backend.put_file(ctx, &t, Path::new(path))
                })
            },
        );
}

/// Decrypts backup `m`'s identities dump (its files in the local repository) with an age
/// key into a new private file under `state_dir/tmp`, owned by `uid` when given
/// (compose's validator runs as 1001).
fn decrypt_identities(
    env: &FlowEnv,
    m: &splice_dr_repo::Manifest,
    key: &Path,
    uid: i64,
) -> RResult<PathBuf> {
    let ids = m.identities.as_ref().ok_or_else(|| {
        fail(format!(
            "backup {} holds no identities dump (was [node.validator] configured when it was taken?)",
            m.id
        ))
    })?;
    let plain = crate::identities::decrypt_file(&env.repo.backup_dir(&m.id).join(&ids.file), key)
        .map_err(|e| fail(e.to_string()))?;
    // 0700 root: only the file itself is handed to the validator's uid below.
    let dir = crate::private_tmp::ensure(&env.node.state_dir).map_err(|e| {
        fail(format!(
            "preparing {}: {e}",
            env.node.state_dir.join("tmp").display()
        ))
    })?;
    let path = dir.join(format!(
        "{IDENTITIES_PREFIX}{}-{}.json",
        m.id,
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    crate::identities::write_private(&path, &plain).map_err(|e| fail(e.to_string()))?;
    if uid >= 0 {
        let uid = u32::try_from(uid).map_err(|_| fail("uid out of range"))?;
        if let Err(e) = std::os::unix::fs::chown(&path, Some(uid), Some(uid)) {
            let _ = std::fs::remove_file(&path);
            return Err(fail(format!(
                "cannot give the decrypted identities to uid {uid} (the validator reads them as \
                 that user): {e}; run the daemon as root"
            )));
        }
    }
    Ok(path)
}

fn register_identities(engine: &mut Engine) {
    engine
        .register_fn(
            "identities_file",
            |b: &mut BackupsApi, backup: &str, key: &str, uid: i64| -> RResult<String> {
                let env = b.0.clone();
                // Downloaded first when only off-site (a fresh host re-onboarding).
                let m = env.local_manifest(backup)?;
                let label = format!("decrypt the identities dump of backup {backup}");
                let out = env.in_step(&label, StepKind::Forward, |_ctx| {
                    decrypt_identities(&env, &m, Path::new(key), uid)
                        .map_err(|e| BackendError::Plugin(e.to_string()))
                })?;
                Ok(out.display().to_string())
            },
        )
        .register_fn(
            "remove_identities_file",
            |b: &mut BackupsApi, path: &str| -> RResult<()> {
                crate::private_tmp::remove_plaintext(
                    &b.0.node.state_dir,
                    Path::new(path),
                    IDENTITIES_PREFIX,
                )
                .map_err(fail)
            },
        );
}

/// Parses a snapshot timestamp: RFC 3339 in UTC with a `Z` (`2024-04-17T19:12:02Z`), not
/// in the future.
fn parse_snapshot_time(ts: &str) -> RResult<chrono::DateTime<chrono::Utc>> {
    let example = "e.g. 2024-04-17T19:12:02Z";
    if !ts.ends_with('Z') {
        return Err(fail(format!(
            "snapshot timestamp `{ts}` must be RFC 3339 in UTC ending in Z, {example}"
        )));
    }
    let at = chrono::DateTime::parse_from_rfc3339(ts)
        .map_err(|e| {
            fail(format!(
                "snapshot timestamp `{ts}` is not RFC 3339 ({e}), {example}"
            ))
        })?
        .with_timezone(&chrono::Utc);
    if at > chrono::Utc::now() {
        return Err(fail(format!("snapshot timestamp `{ts}` is in the future")));
    }
    Ok(at)
}

/// Asks for the snapshot until it is served, the participant is found pruned (400), the
/// short retry window passes on "not caught up" (429), or the run is cancelled. The answer
/// is streamed, as served, to a private file in `state_dir/tmp` (returned with its checked
/// small fields); it is removed when the fetch fails. 400 and 429 end the flow with the
/// runbook's advice: the network is down, so the participant will not catch up, and the
/// node must be re-onboarded.
fn fetch_snapshot(
    env: &FlowEnv,
    ts: &str,
    migration_id: u64,
    deadline: std::time::Duration,
) -> Result<(PathBuf, crate::validator::SnapshotFile), String> {
    let client = env.validator.clone().ok_or_else(|| {
        "the node has no [node.validator] table: the data snapshot comes from the admin API"
            .to_string()
    })?;
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| "internal: no async runtime for the validator API".to_string())?;
    let tmp = crate::private_tmp::ensure(&env.node.state_dir)
        .map_err(|e| format!("creating the private tmp directory: {e}"))?;
    let answer = tmp.join(format!(
        "{}{}-answer.json",
        crate::private_tmp::SNAPSHOT_PREFIX,
        env.node.name
    ));
    let fetched = ask_until_served(env, &handle, &client, ts, migration_id, deadline, &answer);
    if fetched.is_err() {
        let _ = std::fs::remove_file(&answer);
    }
    fetched.map(|file| (answer, file))
}

/// The asking of [`fetch_snapshot`]: one attempt after another into `answer`.
fn ask_until_served(
    env: &FlowEnv,
    handle: &tokio::runtime::Handle,
    client: &crate::validator::ValidatorClient,
    ts: &str,
    migration_id: u64,
    deadline: std::time::Duration,
    answer: &Path,
) -> Result<crate::validator::SnapshotFile, String> {
    use crate::validator::ValidatorError;
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_secs(1);
    loop {
        // An earlier attempt, or a daemon killed during one, may have left part of an answer.
        let _ = std::fs::remove_file(answer);
        match handle.block_on(client.data_snapshot_to_file(ts, migration_id, true, answer)) {
            Ok(file) => return Ok(file),
            Err(e @ ValidatorError::PrunedBeyond { .. }) => {
                return Err(cannot_dump(&e, &env.node.name, migration_id))
            }
            Err(e @ ValidatorError::NotCaughtUp { .. }) => {
                if start.elapsed() + pause > deadline {
                    let asked = format!(
                        "{e}; asked for {}s (params.deadline)",
                        start.elapsed().as_secs()
                    );
                    return Err(cannot_dump(&asked, &env.node.name, migration_id));
                }
                env.run.log(
                    "info",
                    &format!(
                        "the participant has not caught up to {ts} yet (429); asking again in {}s",
                        pause.as_secs()
                    ),
                );
                let until = std::time::Instant::now() + pause;
                while std::time::Instant::now() < until {
                    if let Some(reason) = env.run.guard().soft_stop() {
                        return Err(format!("stopped waiting for the snapshot: {reason}"));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                pause = (pause * 2).min(std::time::Duration::from_secs(15));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The end of a network DR whose snapshot the node cannot make (400 or 429), in the
/// runbook's words, with the command to run next.
fn cannot_dump(e: &dyn std::fmt::Display, node: &str, migration_id: u64) -> String {
    format!(
        "{e}. The runbook: a 400 means the participant was pruned beyond the timestamp, a 429 \
         that it had not caught up to it before the disaster; the network is down, so it will \
         not catch up and this node cannot make the dump. Nothing was changed. Recreate the \
         validator and recover its balance from the network with its identities backup: \
         splice-dr run reonboard --node {node} --param identity_key=<age key file> \
         --param migration_id={migration_id} --yes"
    )
}

/// Keeps the dump of the `answer` (see [`crate::snapshot_store`]): in the clear in the
/// node's private tmp, encrypted with its checksum under `snapshots/NODE/` in the
/// repository. The answer file is removed either way.
fn store_snapshot(
    env: &FlowEnv,
    ts: &str,
    migration_id: u64,
    answer: &Path,
) -> Result<crate::snapshot_store::StoredSnapshot, String> {
    let stored = crate::identities::parse_recipients(&env.node.identities_recipients)
        .map_err(|e| format!("the data snapshot is kept encrypted: {e}"))
        .and_then(|recipients| {
            let stamp: String = ts.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            let name = format!("domain_migration_dump-m{migration_id}-{stamp}.json");
            let at = crate::snapshot_store::Placement {
                answer,
                state_dir: &env.node.state_dir,
                repo_root: env.repo.root(),
                node: &env.node.name,
                name: &name,
            };
            crate::snapshot_store::store(&at, &recipients)
        });
    let _ = std::fs::remove_file(answer);
    stored
}

/// Registers `validator.fetch_data_snapshot` and `node.health_around`.
pub(super) fn register_snapshot(engine: &mut Engine) {
    engine
        .register_fn(
            "fetch_data_snapshot",
            |v: &mut super::host::ValidatorApi,
             ts: &str,
             migration_id: i64,
             deadline_secs: i64|
             -> RResult<Dynamic> {
                let env = v.0.clone();
                parse_snapshot_time(ts)?;
                let mid =
                    u64::try_from(migration_id).map_err(|_| fail("migration_id must be >= 0"))?;
                let deadline = std::time::Duration::from_secs(deadline_secs.max(0) as u64);
                let label = format!("fetch the data snapshot at {ts} for migration {mid}");
                let (stored, head) = env.in_step(&label, StepKind::Forward, |_ctx| {
                    let (answer, file) =
                        fetch_snapshot(&env, ts, mid, deadline).map_err(BackendError::Plugin)?;
                    let stored =
                        store_snapshot(&env, ts, mid, &answer).map_err(BackendError::Plugin)?;
                    Ok((stored, file.head.data_snapshot))
                })?;
                to_dyn(&serde_json::json!({
                    "path": stored.plain, "kept": stored.kept, "sha256": stored.sha256,
                    "bytes": stored.bytes, "migration_id": head.migration_id,
                    "acs_timestamp": head.acs_timestamp, "domain_id": head.domain_id,
                }))
            },
        )
        .register_fn(
            "remove_data_snapshot",
            |v: &mut super::host::ValidatorApi, path: &str| -> RResult<()> {
                crate::private_tmp::remove_plaintext(
                    &v.0.node.state_dir,
                    Path::new(path),
                    crate::private_tmp::SNAPSHOT_PREFIX,
                )
                .map_err(fail)
            },
        )
        .register_fn(
            "health_around",
            |n: &mut NodeApi, ts: &str, window_secs: i64| -> RResult<Dynamic> {
                let at = parse_snapshot_time(ts)?;
                let window = chrono::Duration::seconds(window_secs.max(0));
                match crate::events::health_log::down_around(
                    &n.0.node.state_dir,
                    &n.0.node.name,
                    at,
                    window,
                ) {
                    None => Ok(Dynamic::UNIT),
                    Some(down) => to_dyn(&down),
                }
            },
        );
}

/// Registers `backups.record_drill`: a drill's outcome goes into the backup's manifest.
pub(super) fn register_drill(engine: &mut Engine) {
    engine.register_fn(
        "record_drill",
        |b: &mut BackupsApi, id: &str, passed: bool, detail: &str, millis: i64| -> RResult<()> {
            let env = b.0.clone();
            if env.run.dry_run() {
                env.run.plan(&format!(
                    "would record the drill of backup {id} in its manifest"
                ));
                return Ok(());
            }
            let m = env.manifest(id)?;
            let drill = splice_dr_repo::DrillRecord {
                at: chrono::Utc::now(),
                result: splice_dr_repo::DrillResult::from_passed(passed),
                duration_ms: u64::try_from(millis).unwrap_or_default(),
                detail: detail.to_string(),
                run: env.run.id().to_string(),
            };
            env.repo
                .record_drill(&m.id, drill)
                .map(|_| ())
                .map_err(|e| fail(e.to_string()))
        },
    );
}
