//! The one place a Rhai engine is hardened.
//!
//! Every engine splice-dr creates — for site rules here, and (through the daemon's script
//! host, which adds its cancellation hook) to compile or run a flow — starts from
//! [`hardened_engine`], so a limit cannot be forgotten on one path. Limits are set
//! explicitly (Rhai's defaults are unlimited, and differ between debug and release).

use rhai::Engine;

/// Resource limits for scripts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum Rhai operations per run (an endless loop hits this quickly; host calls
    /// such as a long restore count as one operation).
    pub max_operations: u64,
    /// Maximum function call depth.
    pub max_call_levels: usize,
    /// Maximum expression nesting at global level and inside functions.
    pub max_expr_depth: (usize, usize),
    /// Maximum string length in bytes.
    pub max_string_size: usize,
    /// Maximum array length.
    pub max_array_size: usize,
    /// Maximum map size.
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 5_000_000,
            max_call_levels: 32,
            max_expr_depth: (64, 32),
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 10_000,
        }
    }
}

/// Builds an engine with every limit set, `eval` disabled and no module or file access.
/// A caller that must stop a script on a deadline adds its own `on_progress` hook.
pub fn hardened_engine(limits: &Limits) -> Engine {
    let mut engine = Engine::new();
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth.0, limits.max_expr_depth.1);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(0);
    engine.set_strict_variables(true);
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_loop_is_stopped_by_the_operation_limit() {
        let engine = hardened_engine(&Limits::default());
        let err = engine.run("let x = 0; loop { x += 1; }").unwrap_err();
        assert!(err.to_string().contains("Too many operations"), "{err}");
    }

    #[test]
    fn eval_and_import_are_refused() {
        let engine = hardened_engine(&Limits::default());
        assert!(engine.compile(r#"eval("1")"#).is_err());
        let err = engine.run(r#"import "/etc/passwd" as p;"#).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("module"), "{err}");
    }
}
