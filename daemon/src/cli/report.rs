//! `report RUN`: reads the `show` answer as a run, builds its [`Report`] and prints it as
//! text or JSON, or writes the HTML page. The report of a failed run is still a report:
//! the exit code says whether the report was made, not how the run ended.

use serde::Deserialize;
use serde_json::Value;
use splice_dr_protocol::RunDetail;

use super::args::ReportArgs;
use super::exit;
use crate::report::{file, html, text, Report};

/// Prints (or writes) the report of the run in `result`; returns the exit code.
pub fn print(args: &ReportArgs, json: bool, result: &Value) -> u8 {
    let run = match RunDetail::deserialize(result) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: the daemon's answer for run {} is not a run record this CLI reads ({e}); \
                 use a CLI of the daemon's version",
                args.run_id
            );
            return exit::FAILED;
        }
    };
    let report = Report::from_run(&run);
    if let Some(path) = &args.html {
        if let Err(e) = file::write_page(path, &html::render(&report)) {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
        eprintln!("report of run {} written to {}", report.run, path.display());
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return exit::FAILED;
            }
        }
    } else if args.html.is_none() {
        print!("{}", text::summary(&report));
    } else {
        println!("{}", path_of(args));
    }
    exit::OK
}

fn path_of(args: &ReportArgs) -> String {
    args.html
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}
