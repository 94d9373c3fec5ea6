//! Reading a config file: TOML parsing, serde, path resolution, and turning every failure into
//! a [`ConfigError`] that points at `file:line:col` and the dotted key.
//!
//! The text is parsed once into toml's span-preserving [`DeTable`]; serde deserializes from
//! that tree, and the same tree answers "where is `node[1].postgres.url`?" for the semantic
//! checks in [`super::validate`] and "which key is at byte 812?" for serde's errors.

use super::schema::Config;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Why a configuration was refused, located as precisely as the failure allows.
///
/// Printed as ``FILE:LINE:COL: MESSAGE (key `node[1].postgres.url`)`` plus an indented
/// `hint:` line, the shape editors and terminals turn into clickable locations.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, as the caller named it.
    pub file: PathBuf,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) on that line, when known.
    pub col: Option<usize>,
    /// Dotted key path, e.g. `node[1].postgres.url` (`node[1]` is the second `[[node]]`).
    pub key: Option<String>,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it, when there is more to say than the message.
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error about `file` with no location yet.
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            col: None,
            key: None,
            message: message.into(),
            hint: None,
        }
    }

    /// The file could not be read at all (missing, permissions, not UTF-8).
    pub fn unreadable(file: &Path, why: impl fmt::Display) -> Self {
        ConfigError::new(file, format!("cannot read: {why}"))
    }

    /// Adds a fix-it hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds the dotted key path.
    pub fn with_key(mut self, key: &KeyPath) -> Self {
        self.key = (!key.is_empty()).then(|| key.to_string());
        self
    }

    /// Adds the 1-based line and column.
    pub fn with_position(mut self, (line, col): (usize, usize)) -> Self {
        self.line = Some(line);
        self.col = Some(col);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.col {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(key) = &self.key {
            write!(f, " (key `{key}`)")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key in a table.
    Key(String),
    /// An element of an array (`[[node]]` entries are array elements).
    Index(usize),
}

/// A path from the document root to a key, printed `node[1].postgres.url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The empty path (the document itself).
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// This path extended by an array index.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// Whether this is the root.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Answers position questions about one config text: byte offset → line:col, key path →
/// span, span → key path.
pub struct Locator<'a> {
    text: &'a str,
    root: Spanned<DeTable<'a>>,
    file: &'a Path,
}

impl<'a> Locator<'a> {
    /// The file the text came from, for building errors.
    pub fn file(&self) -> &Path {
        self.file
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // Offsets from toml are on char boundaries; be safe anyway.
        let mut at = offset;
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// The value at `path`, with its span.
    fn value(&self, path: &KeyPath) -> Option<&Spanned<DeValue<'a>>> {
        let mut segs = path.0.iter();
        let first = match segs.next()? {
            Seg::Key(k) => self.root.get_ref().get(k.as_str())?,
            Seg::Index(_) => return None,
        };
        segs.try_fold(first, |value, seg| match (seg, value.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => t.get(k.as_str()),
            (Seg::Index(i), DeValue::Array(a)) => a.get(*i),
            _ => None,
        })
    }

    /// Byte span of the value at `path` (for a table: where toml says it is defined).
    pub fn value_span(&self, path: &KeyPath) -> Option<Range<usize>> {
        self.value(path).map(Spanned::span)
    }

    /// Byte span of the last key of `path` as written (e.g. `plugin` in `[node.plugin]`).
    pub fn key_span(&self, path: &KeyPath) -> Option<Range<usize>> {
        let (last, parent) = path.0.split_last()?;
        let Seg::Key(k) = last else {
            return self.value_span(path);
        };
        let table = if parent.is_empty() {
            self.root.get_ref()
        } else {
            match self.value(&KeyPath(parent.to_vec()))?.get_ref() {
                DeValue::Table(t) => t,
                _ => return None,
            }
        };
        table.get_key_value(k.as_str()).map(|(key, _)| key.span())
    }

    /// An error located at the value of `path`, falling back to its key, then to no line.
    pub fn error_at_value(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let span = self.value_span(path).or_else(|| self.key_span(path));
        self.error_at(span, path, message)
    }

    /// An error located at the key of `path` (for "this table must not be here").
    pub fn error_at_key(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let span = self.key_span(path).or_else(|| self.value_span(path));
        self.error_at(span, path, message)
    }

    fn error_at(
        &self,
        span: Option<Range<usize>>,
        path: &KeyPath,
        message: impl Into<String>,
    ) -> ConfigError {
        let err = ConfigError::new(self.file, message).with_key(path);
        match span {
            Some(span) => err.with_position(self.line_col(span.start)),
            None => err,
        }
    }

    /// The most specific key path whose key or value span contains `span`.
    pub fn path_at(&self, span: &Range<usize>) -> KeyPath {
        let mut best: Option<(usize, KeyPath)> = None;
        let mut path = KeyPath::root();
        walk_table(self.root.get_ref(), &mut path, span, &mut best);
        best.map(|(_, p)| p).unwrap_or_default()
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end.max(outer.start + 1)
}

fn consider(
    candidate: &Range<usize>,
    path: &KeyPath,
    target: &Range<usize>,
    best: &mut Option<(usize, KeyPath)>,
) {
    if !contains(candidate, target) {
        return;
    }
    let len = candidate.end.saturating_sub(candidate.start);
    let better = match best {
        None => true,
        // Smaller span wins; on a tie the deeper path (a value inside its key's line) wins.
        Some((best_len, best_path)) => {
            len < *best_len || (len == *best_len && path.0.len() > best_path.0.len())
        }
    };
    if better {
        *best = Some((len, path.clone()));
    }
}

fn walk_table(
    table: &DeTable<'_>,
    path: &mut KeyPath,
    target: &Range<usize>,
    best: &mut Option<(usize, KeyPath)>,
) {
    for (k, v) in table.iter() {
        path.0.push(Seg::Key(k.get_ref().to_string()));
        consider(&k.span(), path, target, best);
        walk_value(v, path, target, best);
        path.0.pop();
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &mut KeyPath,
    target: &Range<usize>,
    best: &mut Option<(usize, KeyPath)>,
) {
    consider(&value.span(), path, target, best);
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, path, target, best),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.0.push(Seg::Index(i));
                walk_value(item, path, target, best);
                path.0.pop();
            }
        }
        _ => {}
    }
}

/// Reads and parses the config file at `path`.
///
/// A file that cannot be read yields `FILE: cannot read: …` with no line; everything else is
/// reported as [`parse`] does.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError::unreadable(path, e))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]);
            let line = prefix.matches('\n').count() + 1;
            let col = prefix[prefix.rfind('\n').map_or(0, |i| i + 1)..]
                .chars()
                .count()
                + 1;
            return Err(ConfigError::unreadable(path, "the file is not UTF-8 text")
                .with_position((line, col)));
        }
    };
    parse(&text, path)
}

/// Parses config `text` that came from `origin` (used for error messages and to resolve
/// relative paths against `origin`'s directory), then validates it.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let loc = Locator {
        text,
        root,
        file: origin,
    };
    if let Some(e) = syntax_errors.first() {
        return Err(toml_error(&loc, e));
    }

    let de = toml::de::Deserializer::from(loc.root.clone());
    let mut config = Config::deserialize(de).map_err(|e| toml_error(&loc, &e))?;
    config.source = origin.to_path_buf();

    super::validate::check(&config, &loc)?;
    resolve_paths(&mut config, &base_dir(origin));
    super::validate::check_resolved(&config, &loc)?;
    Ok(config)
}

/// Turns a toml/serde error into a located [`ConfigError`], with hints for the usual slips.
fn toml_error(loc: &Locator<'_>, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let mut err = ConfigError::new(loc.file(), message.clone());
    let Some(span) = e.span() else {
        return err;
    };
    err = err.with_position(loc.line_col(span.start));
    let mut path = loc.path_at(&span);
    if let Some(field) = missing_field(&message) {
        path = path.key(field);
        err = err.with_hint(format!(
            "add `{field} = …` to this table; docs/CONFIG.md lists every key"
        ));
    } else if message.starts_with("unknown field") {
        err = err.with_hint(
            "keys are case-sensitive and use underscores; docs/CONFIG.md lists every key",
        );
    } else if message.starts_with("unknown variant") {
        err = err.with_hint("the value must be one of the quoted strings listed");
    }
    err.with_key(&path)
}

/// The field name in serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// The directory relative paths are resolved against: the config file's, made absolute
/// without touching the filesystem (a later `chdir` must not change what paths mean).
pub fn base_dir(origin: &Path) -> PathBuf {
    let absolute = std::path::absolute(origin).unwrap_or_else(|_| origin.to_path_buf());
    absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `base/p` for a relative `p` (dropping `./` steps), `p` itself when absolute.
fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        let mut joined = base.to_path_buf();
        joined.extend(p.components().filter(|c| *c != Component::CurDir));
        *p = joined;
    }
}

/// Resolves the file paths of a `[node.k8s]` table (`helm` only when it is a path, not a
/// bare name looked up on PATH).
fn resolve_k8s_paths(k: &mut splice_dr_k8s::K8sConfig, base: &Path) {
    for f in [&mut k.kubeconfig, &mut k.password_file, &mut k.overlay_dir]
        .into_iter()
        .flatten()
    {
        resolve(base, f);
    }
    if k.helm.components().count() > 1 {
        resolve(base, &mut k.helm);
    }
    for r in [&mut k.releases.validator, &mut k.releases.participant] {
        for f in &mut r.values {
            resolve(base, f);
        }
    }
}

/// Resolves every path in the config against `base` (the config file's directory).
fn resolve_paths(config: &mut Config, base: &Path) {
    let d = &mut config.daemon;
    resolve(base, &mut d.socket);
    resolve(base, &mut d.state_dir);
    if let Some(s) = d.scripts_dir.as_mut() {
        resolve(base, s);
    }
    d.input_dirs.iter_mut().for_each(|p| resolve(base, p));
    if let Some(k) = d
        .leader_election
        .as_mut()
        .and_then(|l| l.kubeconfig.as_mut())
    {
        resolve(base, k);
    }
    resolve(base, &mut config.repository.path);
    if let Some(key) = &mut config.repository.signing_key {
        resolve(base, key);
    }
    super::offsite::resolve_paths(&mut config.repository.offsite, &|p| resolve(base, p));
    for node in &mut config.nodes {
        if let Some(pg) = node.postgres.as_mut() {
            if let Some(f) = pg.password_file.as_mut() {
                resolve(base, f);
            }
            if let Some(b) = pg.bin_dir.as_mut() {
                resolve(base, b);
            }
            for c in pg.components.values_mut() {
                if let Some(f) = c.health_ca_file.as_mut() {
                    resolve(base, f);
                }
            }
        }
        if let Some(c) = node.compose.as_mut() {
            if let Some(f) = c.password_file.as_mut() {
                resolve(base, f);
            }
            if let Some(b) = c.bundle.as_mut() {
                resolve(base, &mut b.dir);
            }
        }
        if let Some(k) = node.k8s.as_mut() {
            resolve_k8s_paths(k, base);
        }
        if let Some(plugin) = node.plugin.as_mut() {
            resolve(base, &mut plugin.path);
        }
        if let Some(v) = node.validator.as_mut() {
            super::validator::resolve_paths(v, base);
        }
    }
    super::integrations::resolve_paths(config, base);
    // `automation.rules_script` is resolved where it is read (`rules_script_path`).
}
