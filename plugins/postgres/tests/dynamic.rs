//! (7) The crate's cdylib is a loadable splice-dr plugin: the same dump → restore → swap
//! cycle runs through `DynamicBackend` (JSON over the C ABI), and load failures are clear.

mod common;

use std::path::PathBuf;

use common::TestDbs;
use splice_dr_plugin_abi::load;
use splice_dr_plugin_api::{BackendError, BackendInfo, Databases, Storage};

/// `<target>/<profile>/libsplice_dr_postgres.so`: the test binary runs from
/// `<target>/<profile>/deps`, and cargo builds the package's cdylib for its integration tests.
fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("libsplice_dr_postgres.so"));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("libsplice_dr_postgres.so not found in {candidates:?}"))
}

#[test]
fn cdylib_runs_the_full_cycle() {
    let dbs = TestDbs::new("dylib");
    let b = load(&plugin_path(), &dbs.config()).expect("load plugin");
    assert_eq!(b.kind(), "postgres");
    common::full_cycle(&b, &dbs, 2000);
}

#[test]
fn plugin_errors_cross_the_abi() {
    let path = plugin_path();
    // The plugin's own config validation comes back as a typed error.
    match load(
        &path,
        &serde_json::json!({"url": "postgresql://u@h/db", "jobs": 0}),
    ) {
        Err(BackendError::Config(m)) => assert!(m.contains("jobs"), "{m}"),
        other => panic!("expected a config error: {other:?}"),
    }
    match load(&path, &serde_json::json!({"nope": 1})) {
        Err(BackendError::Config(m)) => assert!(m.contains("url") || m.contains("nope"), "{m}"),
        other => panic!("expected a config error: {other:?}"),
    }
    // A backend error from a call (unknown role) keeps its kind.
    let b = load(&path, &serde_json::json!({"url": common::pg_url()})).expect("load");
    let ctx = common::Recorder::new();
    let r = b.dump(
        &ctx.ctx,
        "sequencer",
        std::path::Path::new("/nonexistent/x"),
    );
    assert!(matches!(r, Err(BackendError::NotFound(_))), "{r:?}");
    // Unsupported operations stay the trait's default.
    assert!(matches!(
        b.wipe(
            &ctx.ctx,
            &splice_dr_plugin_api::StorageTarget {
                name: "x".into(),
                path: None
            }
        ),
        Err(BackendError::Unsupported { .. })
    ));
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    let Some(libc) = libc else {
        eprintln!("no libc.so.6 found; skipping");
        return;
    };
    match load(&libc, &serde_json::json!({})) {
        Err(BackendError::Plugin(m)) => assert!(m.contains("not a splice-dr plugin"), "{m}"),
        other => panic!("expected a plugin error: {other:?}"),
    }
    match load(
        std::path::Path::new("/nonexistent/libx.so"),
        &serde_json::json!({}),
    ) {
        Err(BackendError::Plugin(m)) => assert!(m.contains("cannot load"), "{m}"),
        other => panic!("expected a plugin error: {other:?}"),
    }
}
