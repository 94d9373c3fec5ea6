//! The metrics layer on the call path: every backend call of a node is timed and counted
//! by operation and outcome, so an operator sees how long dumps, restores and readiness
//! waits take on their node and which operation fails, without any backend measuring
//! itself.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use splice_dr_plugin_api::{
    Backend, BackendCall, BackendError, CallClient, CallService, Capabilities, Dispatch, OpContext,
};

use crate::metrics;

/// `backend` with every call measured under `node`'s name.
pub fn metered(node: &str, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(CallClient(Metered {
        node: node.to_string(),
        inner: Dispatch(backend),
    }))
}

/// A [`CallService`] layer that records each call's duration and outcome.
pub struct Metered<S> {
    node: String,
    inner: S,
}

impl<S: CallService> CallService for Metered<S> {
    fn kind(&self) -> String {
        self.inner.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn call(&self, ctx: &OpContext, call: BackendCall) -> Result<Value, BackendError> {
        let op = call.op();
        let started = Instant::now();
        let result = self.inner.call(ctx, call);
        metrics::backend_call(&self.node, op, outcome(&result), started.elapsed());
        result
    }
}

/// The bounded label of a call's result: `ok`, or the error's kind.
fn outcome(result: &Result<Value, BackendError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.kind_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_is_ok_or_the_errors_kind_never_its_message() {
        assert_eq!(outcome(&Ok(Value::Null)), "ok");
        let e = BackendError::Timeout {
            what: "validator at https://user:secret@host".into(),
            seconds: 3,
        };
        assert_eq!(outcome(&Err(e)), "timeout");
    }
}
