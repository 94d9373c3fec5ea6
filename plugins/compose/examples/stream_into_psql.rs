//! Benchmark helper (bench/compose-bench.sh): streams a dump file into `psql` inside a
//! compose project's postgres container through the backend's exec path, the code a
//! restore uses, and prints the elapsed seconds and bytes streamed.
//!
//! Usage: stream_into_psql PROJECT DATABASE DUMP.sql

use std::time::Instant;

use splice_dr_compose::{ComposeBackend, ComposeConfig};
use splice_dr_plugin_api::{OpContext, Workloads};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [project, db, dump] = args.as_slice() else {
        return Err("usage: stream_into_psql PROJECT DATABASE DUMP.sql".into());
    };
    let backend = ComposeBackend::new(ComposeConfig::with_project(project), 0)?;
    let ctx = OpContext::detached(Default::default());
    let argv: Vec<String> = [
        "psql",
        "--quiet",
        "--no-psqlrc",
        "--set=ON_ERROR_STOP=1",
        "--output=/dev/null",
        "--username=cnadmin",
        &format!("--dbname={db}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let bytes = std::fs::metadata(dump)?.len();
    let start = Instant::now();
    let out = backend.exec(&ctx, "postgres", &argv, Some(std::path::Path::new(dump)))?;
    let secs = start.elapsed().as_secs_f64();
    if out.code != 0 {
        return Err(format!("psql exited {}: {}", out.code, out.stderr).into());
    }
    println!("{secs:.3} {bytes}");
    Ok(())
}
