//! The `splice-sim` binary: parse flags, start a validator (or an SV, or a participant's
//! health service), stop on SIGTERM/SIGINT.

use anyhow::Context as _;
use clap::Parser;
use splice_sim::cli::{Cli, Command};
use splice_sim::{Participant, Sim, Sv};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli).await {
        tracing::error!("{e:#}");
        eprintln!("splice-sim: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Sv(args)) => {
            let sv = Sv::start(args.into_config())
                .await
                .context("starting the simulated SV")?;
            println!("splice-sim sv listening on {}", sv.url());
            stop_on_signal(sv.cancel_token()).await?;
            sv.wait().await;
        }
        Some(Command::Participant(args)) => {
            let p = Participant::start(args.into_config())
                .await
                .context("starting the participant's health service")?;
            println!(
                "splice-sim participant gRPC health listening on {}",
                p.addr()
            );
            stop_on_signal(p.cancel_token()).await?;
            p.wait().await;
        }
        None => {
            let cfg = cli.validator.into_config()?;
            let node = Sim::start(cfg)
                .await
                .context("starting the simulated validator")?;
            println!("splice-sim validator listening on {}", node.api_url());
            if let Some(sv) = node.sv() {
                println!("splice-sim sv listening on {}", sv.url());
            }
            stop_on_signal(node.cancel_token()).await?;
            node.wait().await;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT, then cancels `token` (graceful shutdown).
async fn stop_on_signal(token: CancellationToken) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        r = tokio::signal::ctrl_c() => {
            r.context("installing the SIGINT handler")?;
            tracing::info!("SIGINT: shutting down");
        }
    }
    token.cancel();
    Ok(())
}
