//! Fuzzing of every parser of outside input (issue #12), on the stable toolchain with
//! `proptest`: manifests, socket request lines, the config file, Alertmanager webhook
//! bodies, the validator API's answers (data snapshot, identities, users, validator user,
//! balance, OAuth2 token endpoint), identities dumps, signatures and trusted-key lines,
//! names, damaged run files and participant registries, cron expressions, event patterns
//! and durations.
//!
//! Each property feeds a parser both random input and structure-aware mutations of a valid
//! sample (truncation, flipped and inserted bytes, swapped types, huge numbers, deep
//! nesting, long strings, `..`/absolute paths, unicode, NUL) and asserts: no panic, and an
//! error that locates the problem (a field, a key, a line/column or the file).
//!
//! Cases per property: `SPLICE_DR_FUZZ_CASES` (default 256, cheap enough for CI). A long
//! run, with the per-property counts printed:
//!
//! ```text
//! SPLICE_DR_FUZZ_CASES=100000 cargo nextest run -p splice-dr-e2e --test fuzz_parsers --no-capture
//! ```

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------------------
// Harness: case counts and one runner per property.

/// Cases per property: `SPLICE_DR_FUZZ_CASES`, else 256.
fn cases() -> u32 {
    std::env::var("SPLICE_DR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

/// Runs `check` over `cases()` inputs of `strategy`; prints the count, panics with the
/// smallest failing input.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    fuzz_n(name, cases(), strategy, check)
}

/// [`fuzz`] with an explicit case count (for properties that cost a connection per case).
fn fuzz_n<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let config = RunnerConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 512,
        // Shrinking stops after 30 s (a hanging input costs its whole timeout per attempt).
        max_shrink_time: 30_000,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    // Panics are caught and reported with the input by the runner; while it shrinks, the
    // default hook would print every one of them.
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = runner.run(&strategy, check);
    drop(std::panic::take_hook());
    match outcome {
        Ok(()) => println!(
            "fuzz_parsers: {name}: {cases} cases passed in {:.1?}",
            started.elapsed()
        ),
        Err(e) => panic!("fuzz_parsers: {name}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Mutations: bytes, JSON trees, TOML lines.

/// Text fragments hostile input is made of.
const EVIL: &[&str] = &[
    "\0",
    "..",
    "../../../../etc/passwd",
    "/etc/cron.d/x",
    "\\",
    "ünï\u{202e}\u{1F4A3}",
    "\u{feff}",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "=",
    "\n",
    "\r\n",
    "#",
    "'''",
    "18446744073709551616",
    "-9223372036854775809",
    "1e999",
    "-0",
    "NaN",
    "[[node]]",
    "\u{0}\u{1}\u{7f}",
];

/// One raw byte-level edit; indices are scaled to the input at hand.
#[derive(Debug, Clone)]
enum ByteOp {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Duplicate(Index, usize),
}

fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(EVIL).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..16),
        1 => ".*".prop_map(String::into_bytes),
    ]
}

fn byte_op() -> impl Strategy<Value = ByteOp> {
    prop_oneof![
        any::<Index>().prop_map(ByteOp::Truncate),
        (any::<Index>(), 1..=255u8).prop_map(|(i, x)| ByteOp::Flip(i, x)),
        (any::<Index>(), fragment()).prop_map(|(i, f)| ByteOp::Insert(i, f)),
        (any::<Index>(), 1..64usize).prop_map(|(i, n)| ByteOp::Delete(i, n)),
        (any::<Index>(), 1..64usize).prop_map(|(i, n)| ByteOp::Duplicate(i, n)),
    ]
}

fn apply_bytes(sample: &[u8], ops: &[ByteOp]) -> Vec<u8> {
    let mut b = sample.to_vec();
    for op in ops {
        let at = |i: &Index, b: &Vec<u8>| {
            if b.is_empty() {
                0
            } else {
                i.index(b.len() + 1)
            }
        };
        match op {
            ByteOp::Truncate(i) => {
                let n = at(i, &b);
                b.truncate(n)
            }
            ByteOp::Flip(i, x) if !b.is_empty() => {
                let n = i.index(b.len());
                b[n] ^= x;
            }
            ByteOp::Flip(..) => {}
            ByteOp::Insert(i, f) => {
                let n = at(i, &b);
                b.splice(n..n, f.iter().copied());
            }
            ByteOp::Delete(i, len) => {
                let n = at(i, &b);
                let end = (n + len).min(b.len());
                b.drain(n..end);
            }
            ByteOp::Duplicate(i, len) => {
                let n = at(i, &b);
                let end = (n + len).min(b.len());
                let copy = b[n..end].to_vec();
                b.splice(end..end, copy);
            }
        }
    }
    b
}

/// Raw JSON text put in place of one value: swapped types, extreme numbers, hostile
/// strings, deep nesting, long strings.
fn evil_json() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "null", "true", "false", "0", "-1", "1.5", "-0", "1e308", "1e999", "-1e999",
            "18446744073709551615", "18446744073709551616", "-9223372036854775809",
            "\"\"", "\" \"", "\"../../../../etc/passwd\"", "\"/etc/cron.d/x\"", "\"a/../../b\"",
            "\"a\\u0000b\"", "\"\\u0000\"", "\"ünï\\u202e\"", "\"\\ud800\"", "\".incomplete\"",
            "[]", "{}", "[null]", "{\"\":null}", "\"2026-13-45T99:99:99Z\"",
            "\"0001-01-01T00:00:00Z\"", "\"9999-12-31T23:59:59Z\"", "\"+275760-09-13T00:00:00Z\"",
        ][..]).prop_map(str::to_string),
        1 => (1..3000usize).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => (1..3000usize).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
        1 => (1..200_000usize).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        2 => any::<String>().prop_map(|s| Value::String(s).to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| Value::from(f).to_string()),
    ]
}

/// One structure-aware edit of a JSON document; `Index` picks the node among all of them.
#[derive(Debug, Clone)]
enum JsonOp {
    Replace(Index, String),
    Remove(Index),
    AddKey(Index, String, String),
}

fn json_op() -> impl Strategy<Value = JsonOp> {
    prop_oneof![
        4 => (any::<Index>(), evil_json()).prop_map(|(i, v)| JsonOp::Replace(i, v)),
        2 => any::<Index>().prop_map(JsonOp::Remove),
        1 => (any::<Index>(), prop_oneof![".{0,12}", Just("id".to_string()), Just("cmd".to_string())], evil_json())
            .prop_map(|(i, k, v)| JsonOp::AddKey(i, k, v)),
    ]
}

/// JSON pointers of every node of `v`, in document order.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            let k = k.replace('~', "~0").replace('/', "~1");
            pointers(c, format!("{at}/{k}"), out)
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// A placeholder no sample contains; replaced by raw text after serializing.
const SLOT: &str = "\u{1}fuzz-slot\u{1}";

fn apply_json(sample: &Value, ops: &[JsonOp]) -> Vec<u8> {
    let mut v = sample.clone();
    let mut raws = Vec::new();
    for op in ops {
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        match op {
            JsonOp::Replace(i, raw) => {
                let p = &all[i.index(all.len())];
                if let Some(node) = v.pointer_mut(p) {
                    *node = Value::String(format!("{SLOT}{}", raws.len()));
                    raws.push(raw.clone());
                }
            }
            JsonOp::Remove(i) => {
                let p = all[i.index(all.len())].clone();
                if let Some((parent, last)) = p.rsplit_once('/') {
                    match v.pointer_mut(parent) {
                        Some(Value::Object(m)) => {
                            m.remove(&last.replace("~1", "/").replace("~0", "~"));
                        }
                        Some(Value::Array(a)) => {
                            if let Ok(n) = last.parse::<usize>() {
                                if n < a.len() {
                                    a.remove(n);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            JsonOp::AddKey(i, k, raw) => {
                let p = &all[i.index(all.len())];
                if let Some(Value::Object(m)) = v.pointer_mut(p) {
                    m.insert(k.clone(), Value::String(format!("{SLOT}{}", raws.len())));
                    raws.push(raw.clone());
                }
            }
        }
    }
    let mut text = v.to_string();
    // Later slots first: `…10` must not be matched by `…1`.
    for (n, raw) in raws.iter().enumerate().rev() {
        let quoted = Value::String(format!("{SLOT}{n}")).to_string();
        text = text.replace(&quoted, raw);
    }
    text.into_bytes()
}

/// Bytes shown as (lossy) text when a case fails.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        if text.chars().count() > 2000 {
            let head: String = text.chars().take(2000).collect();
            write!(f, "{head:?}… ({} bytes)", self.0.len())
        } else {
            write!(f, "{text:?}")
        }
    }
}

/// Input for a JSON parser: random bytes, random text, or a mutated valid sample.
fn json_input(samples: Vec<Value>) -> impl Strategy<Value = Bytes> {
    let samples = Arc::new(samples);
    let s1 = samples.clone();
    let s2 = samples.clone();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => ".*".prop_map(String::into_bytes),
        4 => (any::<Index>(), prop::collection::vec(json_op(), 1..4))
            .prop_map(move |(i, ops)| apply_json(&s1[i.index(s1.len())], &ops)),
        2 => (any::<Index>(), prop::collection::vec(byte_op(), 1..4))
            .prop_map(move |(i, ops)| apply_bytes(s2[i.index(s2.len())].to_string().as_bytes(), &ops)),
    ]
    .prop_map(Bytes)
}

/// Raw TOML text put in place of one value.
fn evil_toml() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "0", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
            "1e400", "inf", "nan", "-0.0", "true", "\"\"", "\" \"", "\"../../../../etc/passwd\"",
            "\"/\"", "\"a\\u0000b\"", "\"ünï\u{202e}\"", "[]", "{}", "[1, \"a\"]", "\"-1\"",
            "1979-05-27T07:32:00Z", "\"0s\"", "\"0\"", "\"18446744073709551615s\"",
            "\"999999999999y\"", "\"1ns\"", "\"*/0 * * * *\"", "\"0 0 31 2 *\"", "\"@yearly\"",
            "\"L W # ? * *\"", "\"60 24 32 13 8\"", "\"postgresql://\"", "\"http://[::1\"",
            "\"0o777\"", "\"77777777777\"", "\"age1\"", "\"ed25519:00\"", "\"**.x\"", "\"a..b\"",
            "\"0.0.0.0:99999\"", "\"256.1.1.1:80\"",
        ][..]).prop_map(str::to_string),
        1 => (1..2000usize).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => (1..2000usize).prop_map(|n| format!("{}1{}", "{a=".repeat(n), "}".repeat(n))),
        1 => (1..100_000usize).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        2 => any::<String>().prop_map(|s| Value::String(s).to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

/// One line-level edit of a TOML document.
#[derive(Debug, Clone)]
enum TomlOp {
    SetValue(Index, String),
    RenameKey(Index, String),
    DupLine(Index),
    DelLine(Index),
    InsertLine(Index, String),
}

fn toml_op() -> impl Strategy<Value = TomlOp> {
    prop_oneof![
        5 => (any::<Index>(), evil_toml()).prop_map(|(i, v)| TomlOp::SetValue(i, v)),
        1 => (any::<Index>(), prop_oneof!["[a-z_]{1,12}", ".{1,8}"]).prop_map(|(i, k)| TomlOp::RenameKey(i, k)),
        1 => any::<Index>().prop_map(TomlOp::DupLine),
        1 => any::<Index>().prop_map(TomlOp::DelLine),
        1 => (any::<Index>(), prop::sample::select(&[
            "[daemon]", "[repository]", "[[node]]", "[node.postgres]", "[node.validator]",
            "[automation]", "[[rule]]", "[[schedule]]", "[retention]", "[alertmanager]",
            "[notify]", "[metrics]", "[[repository.offsite]]", "[x]", "x = 1", "name = \"n2\"",
            "[node]", "node = 1", "[[daemon]]",
        ][..]).prop_map(str::to_string)).prop_map(|(i, l)| TomlOp::InsertLine(i, l)),
    ]
}

fn apply_toml(sample: &str, ops: &[TomlOp]) -> String {
    let mut lines: Vec<String> = sample.lines().map(str::to_string).collect();
    for op in ops {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let assignments: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains(" = "))
            .collect();
        match op {
            TomlOp::SetValue(i, v) if !assignments.is_empty() => {
                let n = assignments[i.index(assignments.len())];
                let key = lines[n].split(" = ").next().unwrap_or_default().to_string();
                lines[n] = format!("{key} = {v}");
            }
            TomlOp::RenameKey(i, k) if !assignments.is_empty() => {
                let n = assignments[i.index(assignments.len())];
                let value = lines[n]
                    .split_once(" = ")
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                lines[n] = format!("{k} = {value}");
            }
            TomlOp::SetValue(..) | TomlOp::RenameKey(..) => {}
            TomlOp::DupLine(i) => {
                let n = i.index(lines.len());
                lines.insert(n, lines[n].clone());
            }
            TomlOp::DelLine(i) => {
                lines.remove(i.index(lines.len()));
            }
            TomlOp::InsertLine(i, l) => {
                lines.insert(i.index(lines.len() + 1), l.clone());
            }
        }
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------
// Manifests read from a repository or a bucket.

fn manifest_sample() -> Value {
    let at = "2026-11-24T10:15:00Z";
    json!({
        "format": 1, "id": "n1-20261124-101500", "node": "n1", "migration_id": 0,
        "tool_version": "0.1.0", "server_version": "15.4",
        "created_at": at, "completed_at": at,
        "dumps": [{"dir": "validator",
            "role": "validator", "database": "validator", "format": "custom",
            "started_at": at, "finished_at": at, "server_version": "15.4",
            "tables": [{"schema": "public", "table": "t", "rows": 3}]}],
        "files": [
            {"path": "validator/toc.dat", "size": 10, "sha256": "a".repeat(64)},
            {"path": "identities.json.age", "size": 1, "sha256": "b".repeat(64)}],
        "identities": {"file": "identities.json.age", "participant_id": "p::1220",
            "recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]},
        "validator_party": "op::1220", "users": ["alice"],
        "last_drill": {"at": at, "result": "passed", "duration_ms": 5, "detail": "ok", "run": "r1"},
        "host": {"id": "0123456789abcdef0123456789abcdef", "name": "vm-a",
            "node_url": "http://validator-a.example:5003"},
        "participant_ids": [{"id": "p", "since": at, "source": "config"}],
    })
}

/// A physical backup's manifest: a base backup instead of dumps, its directories created
/// under the server's data directory by a restore.
fn physical_manifest_sample() -> Value {
    let at = "2026-11-24T10:15:00Z";
    let mut m = manifest_sample();
    m["kind"] = json!("physical");
    m["dumps"] = json!([]);
    m["base_backup"] = json!({"dir": "cluster", "format": "plain",
        "started_at": at, "finished_at": at, "server_version": "15.4", "timeline": 1,
        "start_lsn": "0/2000028", "end_lsn": "0/2000100",
        "databases": ["validator", "participant-0"],
        "dirs": ["base", "base/1", "pg_wal", "pg_wal/archive_status"]});
    m["files"] = json!([
        {"path": "cluster/base/1/1259", "size": 10, "sha256": "a".repeat(64)},
        {"path": "identities.json.age", "size": 1, "sha256": "b".repeat(64)}]);
    m
}

#[test]
fn manifest_from_untrusted() {
    use splice_dr_repo::untrusted::check_relative_path;
    use splice_dr_repo::Manifest;
    let sample = manifest_sample();
    let bytes = serde_json::to_vec(&sample).unwrap();
    Manifest::from_untrusted(&bytes, "n1-20261124-101500").expect("the sample is valid");
    let physical = physical_manifest_sample();
    let m = Manifest::from_untrusted(
        &serde_json::to_vec(&physical).unwrap(),
        "n1-20261124-101500",
    )
    .expect("the physical sample is valid");
    assert_eq!(m.kind, splice_dr_plugin_api::BackupKind::Physical);
    let ids = prop_oneof![
        8 => Just("n1-20261124-101500".to_string()),
        1 => ".{0,20}",
        1 => prop::sample::select(&["..", "/etc", ".incomplete", "a/b", ""][..]).prop_map(str::to_string),
    ];
    fuzz(
        "manifest",
        (json_input(vec![sample, physical]), ids),
        |(bytes, id)| {
            match Manifest::from_untrusted(&bytes.0, &id) {
                Ok(m) => {
                    // Whatever is accepted names nothing outside the backup.
                    prop_assert_eq!(&m.id, &id);
                    // What listings compute from an accepted manifest must not panic.
                    let _ = m.total_bytes();
                    for p in m
                        .files
                        .iter()
                        .map(|f| &f.path)
                        .chain(m.dumps.iter().map(|d| &d.dir))
                        .chain(m.base_backup.iter().map(|b| &b.dir))
                        .chain(m.base_backup.iter().flat_map(|b| &b.info.dirs))
                    {
                        prop_assert!(check_relative_path(p).is_ok(), "accepted {p:?}");
                    }
                    // The taking host is shown to operators and its address probed.
                    if let Some(h) = &m.host {
                        prop_assert!(!h.name.chars().any(char::is_control), "{h:?}");
                        if let Some(url) = &h.node_url {
                            prop_assert!(
                                splice_dr_repo::untrusted::check_node_url(url).is_ok(),
                                "accepted {url:?}"
                            );
                        }
                    }
                }
                Err(e) => {
                    prop_assert!(!e.field.is_empty() && !e.message.is_empty(), "{e}");
                    let located = e.field != "(whole file)"
                        || e.message.contains("column")
                        || e.message.contains("MiB");
                    prop_assert!(located, "unlocated: {e}");
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// Socket request lines.

fn request_samples() -> Vec<Value> {
    vec![
        json!({"cmd": "ping"}),
        // The CLI says its protocol; a newer client's unknown names are a version skew.
        json!({"cmd": "status", "protocol": 1}),
        json!({"cmd": "cancel", "run": "r1", "protocol": 2}),
        json!({"cmd": "runs", "limit": 10}),
        json!({"cmd": "show", "run": "20261124-101500-backup-ab12"}),
        json!({"cmd": "backups", "node": "n1"}),
        json!({"cmd": "prune", "node": "n1", "dry_run": true}),
        json!({"cmd": "run", "flow": "restore", "node": "n1",
               "params": {"backup": "latest", "n": 1, "deep": {"a": [1, 2]}},
               "dry_run": false, "follow": true, "confirmed": true}),
        json!({"cmd": "follow", "run": "r1"}),
        json!({"cmd": "trigger", "event": "operator.restore-now", "node": "n1", "message": "m"}),
        json!({"cmd": "reset", "rule": "r"}),
        json!({"cmd": "approve", "run": "r1"}),
        json!({"cmd": "cancel", "run": "r1"}),
    ]
}

#[test]
fn socket_request_lines() {
    use splice_dr::socket::protocol::parse_request;
    for s in request_samples() {
        parse_request(&s.to_string()).expect("the sample is valid");
    }
    fuzz(
        "socket request line",
        json_input(request_samples()),
        |bytes| {
            // The server reads lines of UTF-8 (LinesCodec); other bytes never reach the parser.
            let line = String::from_utf8_lossy(&bytes.0);
            if let Err(message) = parse_request(&line) {
                let why = ["column", "field `", "not a JSON object", "command `"];
                prop_assert!(
                    why.iter().any(|w| message.contains(w)),
                    "unlocated: {message}"
                );
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// The config file.

/// The complete example of docs/CONFIG.md (every table), the richest valid sample.
fn full_config() -> &'static str {
    let doc = include_str!("../docs/CONFIG.md");
    let section = doc
        .split("## Complete example")
        .nth(1)
        .expect("docs/CONFIG.md has a complete example");
    section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block")
}

fn config_samples() -> Vec<&'static str> {
    vec![
        full_config(),
        include_str!("../config/minimal.toml"),
        include_str!("../config/postgres.toml"),
        include_str!("../config/compose.toml"),
    ]
}

#[test]
fn config_file() {
    let origin = Path::new("/etc/splice-dr/splice-dr.toml");
    for s in config_samples() {
        if let Err(e) = splice_dr::config::parse(s, origin) {
            panic!("sample does not parse: {e}");
        }
    }
    let samples = Arc::new(config_samples());
    let s1 = samples.clone();
    let s2 = samples.clone();
    let input = prop_oneof![
        1 => ".*",
        1 => prop::collection::vec("[a-z_\\[\\]\\.]{1,10} = .{0,12}", 0..8).prop_map(|l| l.join("\n")),
        6 => (any::<Index>(), prop::collection::vec(toml_op(), 1..4))
            .prop_map(move |(i, ops)| apply_toml(s1[i.index(s1.len())], &ops)),
        2 => (any::<Index>(), prop::collection::vec(byte_op(), 1..4)).prop_map(move |(i, ops)| {
            String::from_utf8_lossy(&apply_bytes(s2[i.index(s2.len())].as_bytes(), &ops)).into_owned()
        }),
    ];
    fuzz("config", input, |text| {
        let parsed = splice_dr::config::parse(&text, origin);
        if let Ok(c) = &parsed {
            prop_assert!(
                deadline_ok(c.daemon.run_timeout),
                "run_timeout {:?}",
                c.daemon.run_timeout
            );
        }
        if let Err(e) = parsed {
            let shown = e.to_string();
            prop_assert!(!e.message.trim().is_empty(), "empty message: {shown}");
            prop_assert!(e.file == origin, "{shown}");
            prop_assert!(e.line.is_some() || e.key.is_some(), "unlocated: {shown}");
        }
        Ok(())
    });
}

/// Whether `now + d` can be computed both as an `Instant` (flow runner deadlines) and as
/// a `DateTime` (rule windows, cooldowns, approval timeouts).
fn deadline_ok(d: std::time::Duration) -> bool {
    let instant = std::time::Instant::now().checked_add(d).is_some();
    let date = chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
        .is_some();
    instant && date
}

/// The config file as bytes from disk (`config::load`): invalid UTF-8 is located too.
#[test]
fn config_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("splice-dr.toml");
    let samples = Arc::new(config_samples());
    let input =
        (any::<Index>(), prop::collection::vec(byte_op(), 1..4)).prop_map(move |(i, ops)| {
            Bytes(apply_bytes(
                samples[i.index(samples.len())].as_bytes(),
                &ops,
            ))
        });
    fuzz("config file bytes", input, |bytes| {
        std::fs::write(&file, &bytes.0).unwrap();
        if let Err(e) = splice_dr::config::load(&file) {
            prop_assert!(e.file == file, "{e}");
            prop_assert!(e.line.is_some() || e.key.is_some(), "unlocated: {e}");
        }
        Ok(())
    });
}

#[test]
fn cron_expressions() {
    use splice_dr::config::CronExpr;
    let field = prop::sample::select(
        &[
            "*",
            "*/0",
            "*/1",
            "*/61",
            "0",
            "59",
            "60",
            "-1",
            "1-5",
            "5-1",
            "0-59/15",
            "L",
            "W",
            "15W",
            "5L",
            "5#5",
            "5#0",
            "?",
            "JAN",
            "MON-FRI",
            "SUN#6",
            ",",
            "1,,2",
            "99999999999",
            "0/0",
            "1-",
            "-",
            "#",
            "LW",
            "L-3",
            "31",
            "2",
            "29",
            "0x1",
            "ünï",
        ][..],
    );
    let input = prop_oneof![
        4 => prop::collection::vec(field, 0..8).prop_map(|f| f.join(" ")),
        1 => prop::sample::select(&["@yearly", "@reboot", "@every 5m", "@", "@hourly x"][..]).prop_map(str::to_string),
        1 => ".{0,40}",
    ];
    fuzz("cron expression", input, |text| {
        // A config load must not hang on an expression: parse on a thread, wait 5 s.
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = text.clone();
        std::thread::spawn(move || tx.send(CronExpr::parse(&owned).map(drop)));
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => prop_assert!(e.contains("cron"), "{e}"),
            Err(_) => prop_assert!(false, "CronExpr::parse({text:?}) still runs after 5 s"),
        }
        Ok(())
    });
}

#[test]
fn event_patterns_and_durations() {
    let input = prop_oneof![".{0,40}", "[a-z*\\. ]{0,20}", "[0-9]{1,30}[a-zA-Zµ ]{0,4}"];
    fuzz("event pattern / duration", input, |text| {
        if let Err(e) = splice_dr::config::check_event_pattern(&text) {
            prop_assert!(e.contains("pattern"), "{e}");
        }
        match splice_dr::config::duration::parse(&text) {
            // Config durations become deadlines: `now + d` must be computable.
            Ok(d) => prop_assert!(
                deadline_ok(d),
                "{text:?} parses to {d:?}, past any deadline"
            ),
            Err(e) => prop_assert!(e.contains("duration"), "{e}"),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// Alertmanager webhook bodies, through the receiver's router as Alertmanager reaches it.

fn alert_sample() -> Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"PostgresDown\"}", "status": "firing",
        "receiver": "splice-dr", "groupLabels": {"alertname": "PostgresDown"},
        "commonLabels": {"severity": "critical"}, "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "PostgresDown", "node": "n1", "instance": "db:5432"},
            "annotations": {"summary": "postgres is down"},
            "startsAt": "2026-11-24T10:15:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph", "fingerprint": "abc"
        }, {"status": "resolved", "labels": {"alertname": "Disk.Full", "node": "other"}}]
    })
}

#[test]
fn alertmanager_bodies() {
    use axum::body::Body;
    use axum::http::Request;
    use splice_dr::events::{alertmanager, EventBus};
    use tower::ServiceExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bus = EventBus::default();
    let rx = std::cell::RefCell::new(bus.subscribe());
    let nodes: alertmanager::NodeFilter = Arc::new(|n: &str| n == "n1");
    let router = alertmanager::router_for("t0ken", bus, Some(nodes));
    fuzz(
        "alertmanager body",
        json_input(vec![alert_sample()]),
        |body| {
            let request = Request::post("/api/v1/alerts")
                .header("authorization", "Bearer t0ken")
                .header("content-type", "application/json")
                .body(Body::from(body.0))
                .unwrap();
            let (status, answer) = rt.block_on(async {
                let response = router.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, bytes)
            });
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            match status.as_u16() {
                200 => {}
                400 | 413 => {
                    let message = answer["error"].as_str().unwrap_or_default();
                    prop_assert!(
                        message.contains("column") || status == 413,
                        "unlocated: {message}"
                    );
                }
                other => prop_assert!(false, "status {other}: {answer}"),
            }
            while let Ok(ev) = rx.borrow_mut().try_recv() {
                prop_assert!(ev.name.starts_with("alert."), "{}", ev.name);
                // Rules match event names against patterns.
                splice_dr::events::matches("alert.**", &ev.name);
                splice_dr::events::matches("alert.*.resolved", &ev.name);
                prop_assert!(
                    ev.node.is_none() || ev.node.as_deref() == Some("n1"),
                    "{:?}",
                    ev.node
                );
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// Validator API answers, through the client against a server that answers the fuzz body.

/// A server answering every request with status 200 and the current body.
struct FakeValidator {
    rt: tokio::runtime::Runtime,
    body: Arc<Mutex<Vec<u8>>>,
    url: String,
}

impl FakeValidator {
    fn start() -> FakeValidator {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let body = Arc::new(Mutex::new(Vec::new()));
        let served = body.clone();
        let app = axum::Router::new().fallback(move || {
            let bytes = served.lock().unwrap().clone();
            async move { ([("content-type", "application/json")], bytes) }
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        FakeValidator { rt, body, url }
    }

    fn answer(&self, bytes: Vec<u8>) {
        *self.body.lock().unwrap() = bytes;
    }
}

fn validator_config(
    url: &str,
    auth: splice_dr::config::ValidatorAuth,
) -> splice_dr::config::ValidatorConfig {
    splice_dr::config::ValidatorConfig {
        url: url.to_string(),
        public_url: None,
        timeout: std::time::Duration::from_secs(10),
        snapshot_timeout: std::time::Duration::from_secs(60),
        retries: 0,
        retry_backoff: std::time::Duration::from_millis(1),
        auth,
    }
}

fn no_auth() -> splice_dr::config::ValidatorAuth {
    splice_dr::config::ValidatorAuth::SelfSigned(splice_dr::config::SelfSignedAuth {
        secret_file: None,
        secret: Some("unsafe".into()),
        user: "administrator".into(),
        audience: "https://validator.example.com".into(),
    })
}

fn identities_sample() -> Value {
    json!({
        "id": "acme-1::1220ab", "keys": [{"keyPair": "UFJJVkFURQ==", "name": "signing"},
                                         {"type": "encryption", "keyId": "kms-1"}],
        "authorizedStoreSnapshot": "c25hcA==", "version": "3.3.0"
    })
}

fn validator_samples() -> Vec<Value> {
    vec![
        json!({"data_snapshot": {
            "participant": identities_sample(), "participant_users": {"users": []},
            "acs_snapshot": "QUNT", "acs_timestamp": "2026-01-01T00:00:00Z",
            "dars": [{"hash": "h", "content": "Y29udGVudA=="}], "migration_id": 0,
            "domain_id": "global::1220", "created_at": "2026-01-01T00:00:00Z"},
            "migration_id": 0}),
        identities_sample(),
        json!({"usernames": ["alice", "bob"]}),
        json!({"party_id": "op::1220", "user_name": "administrator", "featured": false}),
        json!({"round": 7, "effective_unlocked_qty": "1.0", "effective_locked_qty": "0.0",
               "total_holding_fees": "0.1"}),
        json!({"error": "boom"}),
    ]
}

/// A validator error locates the problem: it names the validator and what was wrong.
fn located(e: &splice_dr::validator::ValidatorError, url: &str) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    prop_assert!(shown.contains(url), "no url: {shown}");
    let why = ["column", "field", "migration_id", "not a JSON object"];
    prop_assert!(why.iter().any(|w| shown.contains(w)), "unlocated: {shown}");
    Ok(())
}

#[test]
fn validator_answers() {
    use splice_dr::validator::ValidatorClient;
    let fake = FakeValidator::start();
    let client = ValidatorClient::from_config(&validator_config(&fake.url, no_auth())).unwrap();
    let url = fake.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let answer = dir.path().join("answer.json");
    fuzz(
        "validator answers",
        json_input(validator_samples()),
        |body| {
            fake.answer(body.0);
            fake.rt.block_on(async {
                let _ = std::fs::remove_file(&answer);
                if let Err(e) = client
                    .data_snapshot_to_file("2026-01-01T00:00:00Z", 0, true, &answer)
                    .await
                {
                    located(&e, &url)?;
                }
                if let Err(e) = client.identities_raw().await {
                    located(&e, &url)?;
                }
                for result in [
                    client.users().await.map(drop),
                    client.validator_user().await.map(drop),
                    client.balance().await.map(drop),
                ] {
                    if let Err(e) = result {
                        located(&e, &url)?;
                    }
                }
                Ok(())
            })
        },
    );
}

// ---------------------------------------------------------------------------------------
// Identities dumps (stored in backups, read back on re-onboard).

#[test]
fn identities_dumps() {
    splice_dr::identities::validate_dump(identities_sample().to_string().as_bytes()).unwrap();
    fuzz(
        "identities dump",
        json_input(vec![identities_sample()]),
        |bytes| {
            if let Err(e) = splice_dr::identities::validate_dump(&bytes.0) {
                let shown = e.to_string();
                let why = ["column", "field `", "not a JSON object", "command `"];
                prop_assert!(why.iter().any(|w| shown.contains(w)), "unlocated: {shown}");
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// Signatures and trusted-key lines.

#[test]
fn signatures_and_key_lines() {
    use ed25519_dalek::SigningKey;
    use splice_dr_repo::trust::{canonical_bytes, parse_public, public_line, Keyring};
    use splice_dr_repo::Manifest;
    let key = SigningKey::from_bytes(&[7; 32]);
    let ring = Keyring::from_keys(Some(key.clone()), vec![]);
    let now = chrono::Utc::now();
    let mut signed: Manifest = serde_json::from_value(manifest_sample()).unwrap();
    ring.sign(&mut signed);
    assert_eq!(ring.untrusted_because(&signed, now), None);
    let sample = serde_json::to_value(&signed).unwrap();
    let line = public_line(&key.verifying_key());
    let lines = prop_oneof![
        ".{0,80}",
        (prop::collection::vec(byte_op(), 1..3)).prop_map(move |ops| {
            String::from_utf8_lossy(&apply_bytes(line.as_bytes(), &ops)).into_owned()
        }),
    ];
    fuzz(
        "signed manifest / key line",
        (json_input(vec![sample]), lines),
        |(bytes, line)| {
            if let Err(e) = parse_public(&line) {
                prop_assert!(e.contains("ed25519"), "{e}");
            }
            if let Ok(m) = Manifest::from_untrusted(&bytes.0, "n1-20261124-101500") {
                // Any change to what is signed (everything but the signature) that survives
                // parsing is caught. The signature's own spelling may vary: hex digits in
                // upper case name the same key and signature.
                if canonical_bytes(&m) != canonical_bytes(&signed) {
                    prop_assert!(
                        ring.untrusted_because(&m, now).is_some(),
                        "changed yet trusted"
                    );
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// Names that become path components.

#[test]
fn names() {
    let input = prop_oneof![
        ".{0,140}",
        "[A-Za-z0-9._/-]{0,140}",
        prop::sample::select(EVIL).prop_map(str::to_string)
    ];
    fuzz("names", input, |name| {
        match splice_dr::names::check("node", &name) {
            Ok(()) => {
                prop_assert!(!name.is_empty() && name.len() <= 128, "{name:?}");
                prop_assert!(
                    !name.starts_with('.') && !name.contains(['/', '\0', '\\']),
                    "{name:?}"
                );
            }
            Err(e) => prop_assert!(e.to_string().starts_with("node name "), "{e}"),
        }
        if let Ok(()) = splice_dr_repo::untrusted::check_name(&name) {
            prop_assert!(splice_dr::names::check("backup", &name).is_ok(), "{name:?}");
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// Damaged files in the state directory: run records, participant registries.

#[test]
fn damaged_run_files() {
    use splice_dr::journal::{Journal, JournalError, RunRecord};
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let mut run = RunRecord::new(
        "20261124-101500-backup-ab12".into(),
        "backup",
        Some("n1".into()),
    );
    run.begin_step("dump", "d1");
    run.end_step(0, Ok("done".into()));
    journal.save(&run).unwrap();
    let file = journal.dir().join(format!("{}.json", run.id));
    let sample: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    fuzz("run file", json_input(vec![sample]), |bytes| {
        std::fs::write(&file, &bytes.0).unwrap();
        match journal.get(&run.id) {
            Ok(_) => {}
            Err(JournalError::Corrupt { path, message }) => {
                prop_assert_eq!(&path, &file);
                let why = ["column", "field `", "not a JSON object", "command `"];
                prop_assert!(
                    why.iter().any(|w| message.contains(w)),
                    "unlocated: {message}"
                );
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
        // Listing skips what it cannot read.
        journal.list().unwrap();
        Ok(())
    });
}

#[test]
fn damaged_participant_registries() {
    use splice_dr::participants::{registry_path, Registry};
    let dir = tempfile::tempdir().unwrap();
    let file = registry_path(dir.path(), "n1");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sample = json!({"current": "acme-2", "used": [
        {"id": "acme-1", "since": "2026-11-24T10:15:00Z", "source": "config"}], "migration_id": 1});
    fuzz("participant registry", json_input(vec![sample]), |bytes| {
        std::fs::write(&file, &bytes.0).unwrap();
        if let Err(e) = Registry::load(dir.path(), "n1") {
            let shown = e.to_string();
            prop_assert!(
                shown.contains("n1.json") && shown.contains("column"),
                "unlocated: {shown}"
            );
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// OAuth2 token endpoint answers (an identity provider is outside input too).

/// A fake server answering both the token endpoint and the validator, and a config using
/// OAuth2 against it (client secret `s3cret`, in the returned directory).
fn oauth2_fake() -> (
    FakeValidator,
    splice_dr::config::ValidatorConfig,
    tempfile::TempDir,
) {
    let fake = FakeValidator::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let auth = splice_dr::config::ValidatorAuth::OAuth2(splice_dr::config::OAuth2Auth {
        token_url: format!("{}/oauth/token", fake.url),
        client_id: "splice-dr".into(),
        client_secret_file: secret,
        audience: "https://validator.example.com".into(),
        scope: None,
    });
    let cfg = validator_config(&fake.url, auth);
    (fake, cfg, dir)
}

#[test]
fn oauth2_token_answers() {
    use splice_dr::validator::ValidatorClient;
    let (fake, cfg, _dir) = oauth2_fake();
    let samples = vec![
        json!({"access_token": "eyJ.x.y", "expires_in": 3600, "token_type": "Bearer"}),
        json!({"usernames": ["alice"], "access_token": "t", "expires_in": 60}),
    ];
    // A client per case (tokens are cached per client) costs ~30 ms: a quarter of the cases.
    let n = cases().div_ceil(4);
    fuzz_n("oauth2 token answer", n, json_input(samples), |body| {
        fake.answer(body.0);
        // A fresh client: tokens are cached per client.
        let client = ValidatorClient::from_config(&cfg).unwrap();
        if let Err(e) = fake.rt.block_on(client.users()) {
            let shown = e.to_string();
            prop_assert!(!shown.contains("s3cret"), "secret leaked: {shown}");
            let why = ["/oauth/token", "column", "field"];
            prop_assert!(why.iter().any(|w| shown.contains(w)), "unlocated: {shown}");
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// Regressions: one test per finding, each failing without its fix.

/// Finding: a token endpoint answering `expires_in` near `u64::MAX` made the client compute
/// `Instant + lifetime`, which panics on overflow (fixed: lifetimes are capped at
/// `OAUTH2_MAX_LIFETIME`).
#[test]
fn regression_oauth2_huge_expires_in_does_not_panic() {
    use splice_dr::validator::ValidatorClient;
    let (fake, cfg, _dir) = oauth2_fake();
    for expires_in in [u64::MAX, 9_223_372_036_854_773_290, 1 << 40] {
        fake.answer(
            json!({"access_token": "t", "expires_in": expires_in, "usernames": ["a"]})
                .to_string()
                .into_bytes(),
        );
        let client = ValidatorClient::from_config(&cfg).unwrap();
        let users = fake
            .rt
            .block_on(client.users())
            .expect("a long-lived token is used");
        assert_eq!(users, vec!["a".to_string()]);
    }
}

/// Finding: a well-formed request object with a wrongly typed field was refused with
/// "invalid type: string \"x\", expected a boolean" and no field or position (serde drops
/// positions inside internally tagged enums). Fixed: the reply names the field.
#[test]
fn regression_socket_request_errors_name_the_field() {
    use splice_dr::socket::protocol::parse_request;
    for (line, field) in [
        (
            r#"{"cmd":"prune","dry_run":"x","node":"n1"}"#,
            "field `dry_run`",
        ),
        (r#"{"cmd":"runs","limit":-1}"#, "field `limit`"),
        (
            r#"{"cmd":"run","flow":"backup","params":[1]}"#,
            "field `params`",
        ),
        (r#"{"cmd":"show","run":7}"#, "field `run`"),
        (r#"{"cmd":"nope"}"#, "field `cmd`"),
        (r#"{"cmd":1}"#, "field `cmd`"),
        (r#"{"cmd":"show"}"#, "missing field `run`"),
        (r#"{"cmd":"show","run":"r","x":1}"#, "unknown field `x`"),
        (r#"[1]"#, "not a JSON object"),
        (r#"{"cmd":"#, "column"),
    ] {
        let e = parse_request(line).unwrap_err();
        assert!(e.contains(field), "{line}: {e}");
        assert!(e.starts_with("malformed request: "), "{e}");
    }
}

/// Finding: an identities dump whose optional `version` had the wrong type was refused as
/// "the dump does not parse (invalid type: integer `0`, expected a string)", naming no
/// field. Fixed: `version` is checked like the required fields.
#[test]
fn regression_identities_dump_version_type_names_the_field() {
    for version in [json!(0), json!(true), json!([]), json!({})] {
        let mut dump = identities_sample();
        dump["version"] = version;
        let e = splice_dr::identities::validate_dump(dump.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("field `version`"), "{e}");
    }
    let mut dump = identities_sample();
    dump["version"] = Value::Null;
    splice_dr::identities::validate_dump(dump.to_string().as_bytes()).expect("null is absent");
}

/// Finding: an access token with a control character was accepted, and the next validator
/// call failed as "request to the validator … failed: builder error", blaming the
/// validator. Fixed: the token endpoint's answer is refused, naming the endpoint.
#[test]
fn regression_oauth2_unusable_token_names_the_token_endpoint() {
    use splice_dr::validator::{ValidatorClient, ValidatorError};
    let (fake, cfg, _dir) = oauth2_fake();
    for token in ["a\u{0}b", "a\nb", "a\u{7f}b"] {
        fake.answer(
            json!({"access_token": token, "expires_in": 60})
                .to_string()
                .into_bytes(),
        );
        let client = ValidatorClient::from_config(&cfg).unwrap();
        let e = fake.rt.block_on(client.users()).unwrap_err();
        assert!(matches!(e, ValidatorError::TokenEndpoint { .. }), "{e}");
        assert!(
            e.to_string().contains("/oauth/token") && !e.to_string().contains(token),
            "{e}"
        );
    }
}

/// Finding: config durations had no upper bound; `run_timeout = "18446744073709551615s"`
/// loaded, then `Instant::now() + run_timeout` panicked every run (and a rule `window`
/// past year 262143 panicked the rule engine). Fixed: durations are at most 100 years.
#[test]
fn regression_config_durations_are_bounded() {
    let origin = Path::new("/etc/splice-dr/splice-dr.toml");
    let minimal = include_str!("../config/minimal.toml");
    for (text, key) in [
        (
            format!("[daemon]\nrun_timeout = \"18446744073709551615s\"\n{minimal}"),
            "daemon.run_timeout",
        ),
        (
            full_config().replace("window = \"1h\"", "window = \"1000000y\""),
            "rule[0].window",
        ),
    ] {
        let e = splice_dr::config::parse(&text, origin).expect_err("refused");
        assert!(e.message.contains("100 years"), "{e}");
        assert!(e.line.is_some(), "{e}");
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
    }
    assert!(splice_dr::config::duration::parse("100y").is_ok());
    assert!(splice_dr::config::duration::parse("101y").is_err());
}

/// Finding: a manifest whose file sizes add up past `u64::MAX` was accepted, and
/// `Manifest::total_bytes` (listings, progress, free-space checks) panicked with "attempt
/// to add with overflow" in debug builds (wrapped in release). Fixed: such a manifest is
/// refused at `files[i].size`, and `total_bytes` saturates.
#[test]
fn regression_manifest_sizes_that_overflow() {
    use splice_dr_repo::Manifest;
    let mut sample = manifest_sample();
    sample["files"][0]["size"] = json!(u64::MAX);
    let e = Manifest::from_untrusted(sample.to_string().as_bytes(), "n1-20261124-101500")
        .expect_err("refused");
    assert_eq!(e.field, "files[1].size", "{e}");
    let m: Manifest = serde_json::from_value(sample).unwrap();
    assert_eq!(m.total_bytes(), u64::MAX);
}

/// Finding: `deny_unknown_fields` does not reach the field-less commands of the internally
/// tagged `Request`, so `{"cmd":"pause","node":"n1"}` was accepted and paused every node,
/// not n1. Fixed: a field-less command with another field is refused, naming the field.
#[test]
fn regression_socket_fieldless_commands_refuse_fields() {
    use splice_dr::socket::protocol::{parse_request, Request};
    for cmd in ["ping", "status", "repo_check", "pause", "resume"] {
        let e = parse_request(&format!(r#"{{"cmd":"{cmd}","node":"n1"}}"#)).unwrap_err();
        assert!(e.contains("unknown field `node`"), "{cmd}: {e}");
        parse_request(&format!(r#"{{"cmd":"{cmd}"}}"#)).expect("the bare command");
    }
    assert_eq!(parse_request(r#"{"cmd":"pause"}"#), Ok(Request::Pause));
}
