//! Host functions for the validator's users: onboarding (the party the validator answers
//! is recorded, see `crate::users`), offboarding, and what the daemon recorded about them.
//! A restore uses them to bring the users back as they were just before it: users
//! onboarded after the backup with their party ids, users offboarded after it offboarded
//! again. See `scripts/README.md`.

use rhai::{Dynamic, Engine};
use splice_dr_plugin_api::BackendError;
use std::sync::Arc;

use super::host::{fail, to_dyn, FlowEnv, RResult, ValidatorApi};
use crate::run_context::StepKind;

/// Registers the user calls on `validator` and `time_before`.
pub(super) fn register(engine: &mut Engine) {
    engine
        .register_fn(
            "recorded_users",
            |v: &mut ValidatorApi| -> RResult<Dynamic> {
                // `()` when the daemon never read the list: scripts test it with `== ()`.
                match crate::users::load(&v.0.node.state_dir, &v.0.node.name) {
                    Some(r) => to_dyn(&r),
                    None => Ok(Dynamic::UNIT),
                }
            },
        )
        .register_fn(
            "recorded_party",
            |v: &mut ValidatorApi, name: &str| -> Dynamic {
                crate::users::load_parties(&v.0.node.state_dir, &v.0.node.name)
                    .remove(name)
                    .map_or(Dynamic::UNIT, Dynamic::from)
            },
        )
        .register_fn(
            "onboard_user",
            |v: &mut ValidatorApi, name: &str, party: &str| -> RResult<String> {
                onboard(&v.0, name, party)
            },
        )
        .register_fn(
            "offboard_user",
            |v: &mut ValidatorApi, name: &str| -> RResult<()> { offboard(&v.0, name) },
        )
        .register_fn("time_before", time_before);
}

/// `POST /v0/admin/users {name, party_id?}` in a journaled step; the party the validator
/// answers is recorded for the node, so a later restore can give it back.
fn onboard(env: &Arc<FlowEnv>, name: &str, party: &str) -> RResult<String> {
    let label = format!("onboard user {name}");
    if env.run.dry_run() {
        env.run.plan(&format!("would {label}"));
        return Ok(String::new());
    }
    let (user, wanted) = (name.to_string(), party.to_string());
    let answered = env.in_step(&label, StepKind::Forward, |_ctx| {
        env.call_validator(move |c| {
            Box::pin(async move {
                let party = (!wanted.is_empty()).then_some(wanted);
                c.onboard_user(&user, party.as_deref()).await
            })
        })
        .map_err(|e| BackendError::Plugin(e.to_string()))
    })?;
    if let Err(e) = crate::users::record_party(&env.node.state_dir, &env.node.name, name, &answered)
    {
        env.run.log(
            "warn",
            &format!("user {name} is onboarded as {answered}, but its party was not recorded: {e}"),
        );
    }
    Ok(answered)
}

/// `POST /v0/admin/users/offboard?username=NAME` in a journaled step.
fn offboard(env: &Arc<FlowEnv>, name: &str) -> RResult<()> {
    let label = format!("offboard user {name}");
    if env.run.dry_run() {
        env.run.plan(&format!("would {label}"));
        return Ok(());
    }
    let user = name.to_string();
    env.in_step(&label, StepKind::Forward, |_ctx| {
        env.call_validator(move |c| Box::pin(async move { c.offboard_user(&user).await }))
            .map_err(|e| BackendError::Plugin(e.to_string()))
    })
}

/// `time_before(a, b)`: whether RFC 3339 timestamp `a` is earlier than `b` (string order
/// is not time order once fractions of seconds differ in length).
fn time_before(a: &str, b: &str) -> RResult<bool> {
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
            fail(format!(
                "time_before: `{t}` is not an RFC 3339 timestamp ({e})"
            ))
        })
    };
    Ok(parse(a)? < parse(b)?)
}

#[cfg(test)]
mod tests {
    use super::time_before;

    #[test]
    fn time_before_compares_instants_not_strings() {
        assert!(time_before("2026-12-06T10:00:09.5Z", "2026-12-06T10:00:10Z").unwrap());
        assert!(time_before("2026-12-06T10:00:09Z", "2026-12-06T10:00:09.5Z").unwrap());
        assert!(!time_before("2026-12-06T11:00:00+01:00", "2026-12-06T10:00:00Z").unwrap());
        assert!(time_before("yesterday", "2026-12-06T10:00:00Z").is_err());
    }
}
