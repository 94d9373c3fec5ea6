//! Site rules in Rhai: `[automation] rules_script = "rules.rhai"`.
//!
//! The script's top level registers handlers:
//!
//! ```rhai
//! on("health.*.down", |e| {
//!     if e.node == "validator-1" { run("restore", #{ backup: "latest" }) }
//! });
//! ```
//!
//! A handler sees the event as a map (`name`, `node` — `()` when none —, `labels`,
//! `message`, `at` as RFC 3339 text) and may call `run(flow)`, `run(flow, params)` or
//! `run(flow, params, node)` to request runs; nothing else of the host is reachable. The
//! engine is [`hardened_engine`]'s, so an endless loop in a handler stops at the operation
//! limit with an error instead of hanging the daemon. The daemon reads the file and
//! hands the text to [`RuleScript::compile`].

use crate::config::check_event_pattern;
use crate::event::{matches, Event};
use crate::hardening::{hardened_engine, Limits};
use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, Position, AST};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Why a rules script did not compile or its top level failed, located in the script
/// (`file:line:col: message`); the daemon reports it as a config error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", Located(file, *line, *col))]
pub struct ScriptError {
    /// The script (the `origin` given to [`RuleScript::compile`]).
    pub file: PathBuf,
    /// 1-based line, when Rhai knows it.
    pub line: Option<usize>,
    /// 1-based column, when Rhai knows it.
    pub col: Option<usize>,
    /// What went wrong.
    pub message: String,
}

/// `file`, `file:line` or `file:line:col`.
struct Located<'a>(&'a Path, Option<usize>, Option<usize>);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())?;
        if let Some(line) = self.1 {
            write!(f, ":{line}")?;
            if let Some(col) = self.2 {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

/// A run a handler asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// Flow name.
    pub flow: String,
    /// Params (a JSON object).
    pub params: serde_json::Value,
    /// Node named by the handler, if any (otherwise the event's node is used).
    pub node: Option<String>,
}

/// `(pattern, handler, where `on(…)` was called)`.
type Handler = (String, FnPtr, Position);
type Handlers = Arc<Mutex<Vec<Handler>>>;
type Requests = Arc<Mutex<Vec<RunRequest>>>;

/// A compiled rules script with its registered handlers.
pub struct RuleScript {
    path: PathBuf,
    engine: Engine,
    ast: AST,
    handlers: Vec<Handler>,
    requests: Requests,
    in_handler: Arc<AtomicBool>,
}

impl std::fmt::Debug for RuleScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleScript")
            .field("path", &self.path)
            .field(
                "patterns",
                &self.handlers.iter().map(|(p, _, _)| p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn located(path: &Path, pos: Position, message: impl Into<String>) -> ScriptError {
    ScriptError {
        file: path.to_path_buf(),
        line: pos.line(),
        // A line without a column reads as its first column.
        col: pos.line().map(|_| pos.position().unwrap_or(1)),
        message: message.into(),
    }
}

impl RuleScript {
    /// Compiles `text` and runs its top level (registering its handlers); `origin` (the
    /// script's path, which the caller read) names it in errors, located `file:line:col`.
    pub fn compile(text: &str, origin: &Path) -> Result<RuleScript, ScriptError> {
        let mut engine = hardened_engine(&Limits::default());
        let handlers: Handlers = Arc::default();
        let requests: Requests = Arc::default();
        let in_handler = Arc::new(AtomicBool::new(false));

        let h = handlers.clone();
        engine.register_fn(
            "on",
            move |ctx: NativeCallContext,
                  pattern: &str,
                  f: FnPtr|
                  -> Result<(), Box<EvalAltResult>> {
                check_event_pattern(pattern).map_err(|m| -> Box<EvalAltResult> { m.into() })?;
                lock(&h).push((pattern.to_string(), f, ctx.call_position()));
                Ok(())
            },
        );
        let (r, ih) = (requests.clone(), in_handler.clone());
        engine.register_fn(
            "run",
            move |flow: &str, params: Map, node: &str| -> Result<(), Box<EvalAltResult>> {
                request(&r, &ih, flow, params, Some(node))
            },
        );
        let (r, ih) = (requests.clone(), in_handler.clone());
        engine.register_fn(
            "run",
            move |flow: &str, params: Map| -> Result<(), Box<EvalAltResult>> {
                request(&r, &ih, flow, params, None)
            },
        );
        let (r, ih) = (requests.clone(), in_handler.clone());
        engine.register_fn("run", move |flow: &str| -> Result<(), Box<EvalAltResult>> {
            request(&r, &ih, flow, Map::new(), None)
        });

        let ast = engine
            .compile(text)
            .map_err(|e| located(origin, e.position(), e.0.to_string()))?;
        engine.run_ast(&ast).map_err(|mut e| {
            let pos = e.take_position();
            located(origin, pos, e.to_string())
        })?;
        let handlers = std::mem::take(&mut *lock(&handlers));
        Ok(RuleScript {
            path: origin.to_path_buf(),
            engine,
            ast,
            handlers,
            requests,
            in_handler,
        })
    }

    /// The registered patterns, in registration order (duplicates kept).
    pub fn patterns(&self) -> Vec<&str> {
        self.handlers.iter().map(|(p, _, _)| p.as_str()).collect()
    }

    /// Runs every handler whose pattern matches `ev`; one result per matching handler:
    /// `(pattern, the runs it requested or its error as `file:line:col: message`)`.
    pub fn handle(&self, ev: &Event) -> Vec<(String, Result<Vec<RunRequest>, String>)> {
        let arg = event_map(ev);
        let mut out = Vec::new();
        for (pattern, f, registered_at) in &self.handlers {
            if !matches(pattern, &ev.name) {
                continue;
            }
            lock(&self.requests).clear();
            self.in_handler.store(true, Ordering::SeqCst);
            let result = f.call::<Dynamic>(&self.engine, &self.ast, (arg.clone(),));
            self.in_handler.store(false, Ordering::SeqCst);
            let requested = std::mem::take(&mut *lock(&self.requests));
            out.push((
                pattern.clone(),
                result
                    .map(|_| requested)
                    .map_err(|e| self.describe(pattern, *registered_at, *e)),
            ));
        }
        out
    }

    fn describe(&self, pattern: &str, registered_at: Position, e: EvalAltResult) -> String {
        // The innermost position is where the script went wrong; errors without one
        // (the operation limit) point at the handler's `on(…)`.
        let mut pos = registered_at;
        let mut root = e;
        while let EvalAltResult::ErrorInFunctionCall(_, _, inner, p) = root {
            if !p.is_none() {
                pos = p;
            }
            root = *inner;
        }
        let own = root.take_position();
        if !own.is_none() {
            pos = own;
        }
        let at = Located(&self.path, pos.line(), pos.position());
        format!("{at}: handler of on(\"{pattern}\") failed: {root}")
    }
}

fn request(
    requests: &Requests,
    in_handler: &AtomicBool,
    flow: &str,
    params: Map,
    node: Option<&str>,
) -> Result<(), Box<EvalAltResult>> {
    if !in_handler.load(Ordering::SeqCst) {
        return Err("run() may only be called inside an on(…) handler".into());
    }
    if flow.trim().is_empty() {
        return Err("run(): the flow name is empty".into());
    }
    let params: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(params))?;
    lock(requests).push(RunRequest {
        flow: flow.to_string(),
        params,
        node: node.map(str::to_string),
    });
    Ok(())
}

fn event_map(ev: &Event) -> Dynamic {
    let mut m = Map::new();
    m.insert("name".into(), ev.name.clone().into());
    m.insert(
        "node".into(),
        ev.node.clone().map_or(Dynamic::UNIT, Dynamic::from),
    );
    let labels: Map = ev
        .labels
        .iter()
        .map(|(k, v)| (k.as_str().into(), v.clone().into()))
        .collect();
    m.insert("labels".into(), labels.into());
    m.insert("message".into(), ev.message.clone().into());
    m.insert("at".into(), ev.at.to_rfc3339().into());
    m.into()
}
