//! The daemon's modules in layers, and a test that no module imports one above it.
//!
//! The chain a newcomer should see in the code — front end → service → rules → run →
//! script → host API → backend → world — is only real while every `crate::` path points
//! down it. This table is the map: a module may use modules of a lower layer only. A
//! change that needs an upward import is a design question (move the shared piece down,
//! or pass it in through a context), not a line to add here. Test code (`tests.rs` files
//! and the `#[cfg(test)]` module at the end of a file) and comments are not checked.

/// Each module of `daemon/src` with its layer; a module may use modules of lower layers
/// only (numbers leave room for a module to be placed between two others).
const LAYERS: &[(&str, u8)] = &[
    // Front ends: the binary's entry points.
    ("main", 120),
    ("lib", 120),
    ("demo", 120),
    ("cli", 110),
    ("daemon", 110),
    ("check", 100),
    ("socket", 100),
    ("report", 100),
    // The service every front end talks to, and what builds it from a config.
    ("service", 90),
    ("prepare", 80),
    // Automation: rules, schedules, reactions to finished runs.
    ("autopilot", 70),
    ("drills", 60),
    ("interrupted", 60),
    ("prune", 60),
    ("repo_check", 60),
    ("runway", 60),
    ("notify", 60),
    ("wal", 60),
    // A run: the runner, its flow script, the host API the script calls.
    ("flows", 30),
    ("script", 25),
    ("backends", 20),
    ("run_context", 20),
    ("users", 20),
    // The world: journal, the validator API, events (the repository is its own crate,
    // splice-dr-repo, below all of these).
    ("snapshot_store", 18),
    ("identities", 15),
    ("journal", 10),
    ("leader", 10),
    ("lock", 10),
    ("participants", 10),
    ("host_identity", 10),
    ("private_tmp", 10),
    ("drill_scratch", 12),
    ("metrics", 10),
    ("events", 10),
    ("validator", 10),
    ("access", 10),
    ("layering", 10),
    // Foundations every layer may use.
    ("http_limits", 4),
    ("config", 3),
    ("names", 0),
    ("util", 0),
    ("logging", 0),
    ("status_state", 0),
    ("orphans", 0),
    ("tls", 0),
    ("build_info", 0),
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::path::{Path, PathBuf};

    fn layer(module: &str) -> Option<u8> {
        LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
    }

    /// Every `.rs` file under `dir`, recursively.
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The lines of a file that count, numbered from 1: without its trailing test module
    /// and comments.
    fn production_lines(text: &str) -> Vec<(usize, &str)> {
        let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
        text[..end]
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim_start().starts_with("//"))
            .map(|(i, l)| (i + 1, l))
            .collect()
    }

    /// The modules a line names as `crate::<module>`.
    fn imported(line: &str) -> Vec<&str> {
        line.match_indices("crate::")
            .filter(|(i, _)| !line[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
            .map(|(i, _)| {
                let rest = &line[i + "crate::".len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .filter(|m| m.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
            .collect()
    }

    #[test]
    fn no_module_imports_one_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut problems = Vec::new();
        for path in all {
            let rel = path.strip_prefix(&src).expect("under src");
            if rel.file_name().is_some_and(|f| f == "tests.rs") {
                continue;
            }
            let first = rel.components().next().expect("component");
            let module = first.as_os_str().to_str().expect("utf-8");
            let module = module.strip_suffix(".rs").unwrap_or(module);
            let Some(own) = layer(module) else {
                problems.push(format!("{}: module `{module}` has no layer", rel.display()));
                continue;
            };
            let text = std::fs::read_to_string(&path).expect("read");
            for (n, line) in production_lines(&text) {
                for used in imported(line) {
                    match layer(used) {
                        Some(l) if used == module || l < own => {}
                        Some(l) => problems.push(format!(
                            "{}:{n}: `{module}` (layer {own}) uses `{used}` (layer {l})",
                            rel.display()
                        )),
                        None => problems.push(format!(
                            "{}:{n}: `crate::{used}` is not in the layer table",
                            rel.display()
                        )),
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_scan_sees_paths_not_words() {
        assert_eq!(
            imported("use crate::repo::{a, b}; x = crate::util::f();"),
            ["repo", "util"]
        );
        assert!(imported("let s = splice_dr_crate::x;").is_empty());
        assert!(imported("crate::Foo::new()").is_empty());
    }
}
