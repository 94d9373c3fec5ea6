//! The `splice-dr` binary: parse the command line, load the config, dispatch.

use clap::Parser;
use splice_dr::cli::{completions, exit, man, run_client, Cli, Command, LogFormatArg};
use splice_dr::config::{self, LogFormat};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // What needs no config file and no daemon: it runs before the config is read.
    match cli.command {
        Command::Demo { keep } => return demo(keep, cli.json),
        Command::Completions { shell } => return ExitCode::from(completions(shell)),
        Command::Man => return ExitCode::from(man()),
        _ => {}
    }
    let config = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    // Every program a flow starts carries this process's mark, so a successor can end
    // what it leaves running if it is killed (see `orphans`).
    splice_dr::orphans::mark_children(&config.daemon.state_dir);
    let json_logs = match cli.log_format {
        Some(f) => f == LogFormatArg::Json,
        None => matches!(config.daemon.log_format, Some(LogFormat::Json)),
    };
    let quiet_cli = !matches!(cli.command, Command::Daemon);
    if !quiet_cli || std::env::var_os("RUST_LOG").is_some() || cli.log_format.is_some() {
        splice_dr::logging::init(json_logs);
    }
    if let Command::Check = cli.command {
        return match splice_dr::check::check(&config) {
            Ok(report) => {
                print!("{report}");
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(exit::USAGE)
            }
        };
    }
    if let Command::Keys(_) = cli.command {
        return ExitCode::from(splice_dr::cli::keys(&cli, &config));
    }
    if let Command::Identities(_) = cli.command {
        return ExitCode::from(splice_dr::cli::export_identities(&cli, &config));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    runtime.block_on(async {
        if let Command::Daemon = cli.command {
            return match splice_dr::daemon::run(config).await {
                Ok(()) => ExitCode::from(exit::OK),
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::from(exit::FAILED)
                }
            };
        }
        ExitCode::from(run_client(&cli, &config).await)
    })
}

/// Without the `demo` feature the binary carries no simulator: say how to get one.
#[cfg(not(feature = "demo"))]
fn demo(_keep: bool, _json: bool) -> ExitCode {
    eprintln!(
        "error: this splice-dr was built without the demo (it carries no simulated validator); \
         build it from the source tree with: cargo run --release -p splice-dr --features demo -- demo"
    );
    ExitCode::from(exit::USAGE)
}

#[cfg(feature = "demo")]
fn demo(keep: bool, json: bool) -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        splice_dr::logging::init(false);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(splice_dr::demo::run(keep)) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!("{report}");
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::from(exit::FAILED)
        }
    }
}
