//! The set of flows in force: built-ins embedded in the binary, replaced by site scripts
//! of the same name.
//!
//! Every flow is compiled at load (and on every reload), so a syntax error is found by
//! `splice-dr check`, not at 3 a.m. when the flow is needed.

use rhai::AST;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

use super::engine::{hardened_engine, Limits};

/// The flows shipped inside the binary, so an installed binary works without the source tree.
pub const BUILTIN_FLOWS: &[(&str, &str)] = &[
    ("backup", include_str!("../../../scripts/backup.rhai")),
    ("restore", include_str!("../../../scripts/restore.rhai")),
    ("verify", include_str!("../../../scripts/verify.rhai")),
    ("reonboard", include_str!("../../../scripts/reonboard.rhai")),
    ("restart", include_str!("../../../scripts/restart.rhai")),
    (
        "dr_snapshot",
        include_str!("../../../scripts/dr_snapshot.rhai"),
    ),
    ("drill", include_str!("../../../scripts/drill.rhai")),
    (
        "onboard_user",
        include_str!("../../../scripts/onboard_user.rhai"),
    ),
];

/// The objects every flow sees in its scope (see `scripts/README.md`).
pub const SCRIPT_GLOBALS: &[&str] = &["node", "pg", "backups", "log", "params", "validator"];

/// A flow that failed to compile or load, located as `file:line:col`.
#[derive(Debug, Clone, Error)]
#[error("{location}: {message}")]
pub struct ScriptError {
    /// `file:line:col` (or just the file).
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// Where a flow's source came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum FlowSource {
    /// Embedded in the binary.
    Builtin,
    /// A file in the site scripts directory.
    Site(PathBuf),
}

impl std::fmt::Display for FlowSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowSource::Builtin => write!(f, "built-in"),
            FlowSource::Site(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A compiled flow and what the host needs to know before running it.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Name (file stem).
    pub name: String,
    /// Where it came from.
    pub source: FlowSource,
    /// First `//!` line of the script.
    pub description: String,
    /// Declared with `//! @destructive`: replaces live state, so it asks for confirmation.
    pub destructive: bool,
    /// Compiled script.
    pub ast: Arc<AST>,
    /// Whether a site script replaced a built-in of the same name.
    pub overrides_builtin: bool,
}

/// All flows in force, by name.
#[derive(Debug, Clone, Default)]
pub struct FlowCatalog {
    flows: BTreeMap<String, Flow>,
}

fn compile(name: &str, text: &str, source: FlowSource) -> Result<Flow, ScriptError> {
    let engine = hardened_engine(&Limits::default(), None);
    // Declaring the host objects lets strict-variables mode reject a misspelt name at
    // `check` time instead of in the middle of a restore.
    let mut scope = rhai::Scope::new();
    for name in SCRIPT_GLOBALS {
        scope.push(*name, ());
    }
    let ast = engine.compile_with_scope(&scope, text).map_err(|e| {
        let pos = e.position();
        let file = match &source {
            FlowSource::Builtin => format!("{name}.rhai (built-in)"),
            FlowSource::Site(p) => p.display().to_string(),
        };
        let location = match (pos.line(), pos.position()) {
            (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
            (Some(l), None) => format!("{file}:{l}"),
            _ => file,
        };
        ScriptError {
            location,
            message: e.0.to_string(),
        }
    })?;
    let header: Vec<&str> = text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .collect();
    Ok(Flow {
        name: name.into(),
        description: header
            .iter()
            .find(|l| !l.starts_with('@') && !l.is_empty())
            .map(|s| s.to_string())
            .unwrap_or_default(),
        destructive: header.contains(&"@destructive"),
        source,
        ast: Arc::new(ast),
        overrides_builtin: false,
    })
}

impl FlowCatalog {
    /// Compiles the built-ins, then every `*.rhai` in `site_dir` (replacing built-ins of
    /// the same name). Returns every error found, not just the first.
    pub fn load(site_dir: Option<&Path>) -> Result<Self, Vec<ScriptError>> {
        let mut flows = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, text) in BUILTIN_FLOWS {
            match compile(name, text, FlowSource::Builtin) {
                Ok(f) => {
                    flows.insert(name.to_string(), f);
                }
                Err(e) => errors.push(e),
            }
        }
        if let Some(dir) = site_dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut paths: Vec<PathBuf> = entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                        .collect();
                    paths.sort();
                    for path in paths {
                        let name = path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        // The flow name becomes part of run ids, i.e. journal file names.
                        if let Err(e) = crate::names::check("flow", &name) {
                            errors.push(ScriptError {
                                location: path.display().to_string(),
                                message: format!("{e}; rename the file"),
                            });
                            continue;
                        }
                        let text = match std::fs::read_to_string(&path) {
                            Ok(t) => t,
                            Err(e) => {
                                errors.push(ScriptError {
                                    location: path.display().to_string(),
                                    message: format!("cannot read: {e}"),
                                });
                                continue;
                            }
                        };
                        match compile(&name, &text, FlowSource::Site(path.clone())) {
                            Ok(mut f) => {
                                f.overrides_builtin = flows.contains_key(&name);
                                flows.insert(name, f);
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Err(e) => errors.push(ScriptError {
                    location: dir.display().to_string(),
                    message: format!("daemon.scripts_dir cannot be read: {e}"),
                }),
            }
        }
        if errors.is_empty() {
            Ok(FlowCatalog { flows })
        } else {
            Err(errors)
        }
    }

    /// A flow by name.
    pub fn get(&self, name: &str) -> Option<&Flow> {
        self.flows.get(name)
    }

    /// Every flow in force, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values()
    }

    /// Names of the flows in force, for error messages.
    pub fn names(&self) -> Vec<String> {
        self.flows.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flows ask the backend what it can do (`node.capabilities`), never who it is: a
    /// site plugin with the compose shape must take the compose path without editing a
    /// script, and a new backend must not fall into another's branch.
    #[test]
    fn builtin_flows_never_branch_on_the_backend_name() {
        for (name, text) in BUILTIN_FLOWS {
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                assert!(
                    !code.contains("node.backend"),
                    "scripts/{name}.rhai:{}: branches on node.backend; use node.capabilities",
                    n + 1
                );
            }
        }
    }

    #[test]
    fn a_site_flow_whose_name_is_no_safe_file_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("my flow.rhai"),
            "//! spaced
1",
        )
        .unwrap();
        let errors = FlowCatalog::load(Some(dir.path())).unwrap_err();
        assert!(
            errors[0].message.contains("flow name"),
            "{:?}",
            errors[0].message
        );
        assert!(errors[0].location.ends_with("my flow.rhai"));
    }

    #[test]
    fn builtins_compile_and_site_scripts_replace_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("backup.rhai"), "//! site backup\n42").unwrap();
        std::fs::write(dir.path().join("hello.rhai"), "//! hi\n//! @destructive\n1").unwrap();
        let cat = FlowCatalog::load(Some(dir.path())).unwrap();
        let b = cat.get("backup").unwrap();
        assert!(b.overrides_builtin);
        assert_eq!(b.description, "site backup");
        assert!(cat.get("hello").unwrap().destructive);
        assert!(cat.get("restore").unwrap().destructive);
        assert_eq!(cat.get("restore").unwrap().source, FlowSource::Builtin);
    }

    #[test]
    fn compile_errors_carry_file_line_col() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.rhai"), "let x = 1;\nlet y = ;\n").unwrap();
        let errs = FlowCatalog::load(Some(dir.path())).unwrap_err();
        assert_eq!(errs.len(), 1);
        let text = errs[0].to_string();
        assert!(text.contains("bad.rhai:2:"), "{text}");
    }
}
