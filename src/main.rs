//! The command line: parses arguments, sets up logging and calls the library. Nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use citrix_harvester::config::Config;
use citrix_harvester::demo::{DemoOptions, run_demo};
use citrix_harvester::scheduler::{format_summary, run, spooled_bytes};
use citrix_harvester::sim::{SimOptions, Simulator};
use citrix_harvester::sink::{SinkConfig, SinkKind};
use citrix_harvester::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "citrix-harvester",
    version,
    about = "Harvests Citrix Monitor Service OData data into InfluxDB line protocol"
)]
struct Cli {
    /// Configuration file (TOML); environment variables CITRIX_HARVESTER__SECTION__KEY override it.
    #[arg(
        long,
        short,
        global = true,
        env = "CITRIX_HARVESTER_CONFIG",
        default_value = "/etc/citrix-harvester/citrix-harvester.toml"
    )]
    config: PathBuf,
    /// Run one cycle for every tenant, print a summary, exit 0 only if every point was delivered.
    #[arg(long)]
    once: bool,
    /// Write line protocol to stdout instead of the configured output.
    #[arg(long)]
    dry_run: bool,
    /// Log format: text for terminals, json for journald/Loki.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Harvest (the default when no subcommand is given).
    Run {
        #[arg(long)]
        once: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the Citrix Monitor API simulator (token hosts + OData) until Ctrl-C.
    Simulate {
        /// Address of the regional host (token endpoint + /monitorodata).
        #[arg(long, default_value = "127.0.0.1:8400")]
        listen: SocketAddr,
        /// Address of the fallback token host (default: the next port).
        #[arg(long)]
        fallback_listen: Option<SocketAddr>,
        #[arg(long, default_value_t = 3)]
        tenants: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Server-driven page size (Citrix: 100 on-premises, up to 1000 in the cloud).
        #[arg(long, default_value_t = 100)]
        page_size: usize,
        /// Sessions per day of tenant 0 (others 0.35–1.2 times that); about 2 connections
        /// per session. Scales the data volume, e.g. for benchmarks.
        #[arg(long, default_value_t = 300)]
        sessions_per_day: usize,
        /// Days of history the data covers (up to now).
        #[arg(long, default_value_t = 2.0)]
        history_days: f64,
    },
    /// Start the simulator in-process, harvest every simulated tenant once into a file, print a summary.
    Demo {
        #[arg(long, default_value_t = 3)]
        tenants: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Line-protocol output file.
        #[arg(long, default_value = "citrix-demo.lp")]
        out: PathBuf,
        /// Keep state (checkpoints) here instead of a temporary directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("Shutdown requested: finishing the current page, then stopping.");
        t.cancel();
    });
    token
}

async fn harvest(cli_config: PathBuf, once: bool, dry_run: bool) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(&cli_config)
        .with_context(|| format!("configuration {}", cli_config.display()))?;
    if dry_run {
        cfg.output = SinkConfig {
            kind: SinkKind::Stdout,
            ..cfg.output
        };
    }
    let shutdown = shutdown_on_signals();
    let grace = cfg.harvester.shutdown_grace;
    let overdue = {
        let s = shutdown.clone();
        async move {
            s.cancelled().await;
            tokio::time::sleep(grace).await;
        }
    };
    let summaries = tokio::select! {
        r = run(&cfg, once, shutdown) => r?,
        _ = overdue => {
            // Nothing is lost: watermarks only move after acknowledgement, so the pages being
            // fetched are read again at the next start.
            tracing::warn!(grace_ms = grace.as_millis() as u64,
                "Shutdown grace period over; exiting without waiting for the current requests.");
            return Ok(ExitCode::from(3));
        }
    };
    if once {
        eprint!("{}", format_summary(&summaries));
        let spooled = spooled_bytes(&cfg);
        if spooled > 0 {
            eprintln!(
                "{spooled} bytes of points are still in the spool (the server was away); the next run replays them."
            );
        }
        let ok = spooled == 0 && summaries.iter().all(|s| s.ok());
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    Ok(ExitCode::SUCCESS)
}

async fn simulate(
    listen: SocketAddr,
    fallback: Option<SocketAddr>,
    opts: SimOptions,
) -> anyhow::Result<ExitCode> {
    let fallback =
        fallback.unwrap_or_else(|| SocketAddr::new(listen.ip(), listen.port().wrapping_add(1)));
    let regional_l = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let fallback_l = tokio::net::TcpListener::bind(fallback)
        .await
        .with_context(|| format!("bind {fallback}"))?;
    let sim = Simulator::new(opts);
    println!(
        "Regional host:  http://{listen}  (token: /cctrustoauth2/{{customer_id}}/tokens/clients, data: /monitorodata)"
    );
    println!("Fallback host:  http://{fallback}");
    println!("Admin:          http://{listen}/_sim/stats, POST /_sim/faults");
    println!("Simulated tenants (test credentials, not secrets):");
    for t in sim.tenants() {
        println!(
            "  {:<28} customer_id={} client_id={} client_secret={} utc_offset={}min",
            t.name, t.customer_id, t.client_id, t.client_secret, t.utc_offset_minutes
        );
    }
    sim.serve(regional_l, fallback_l, shutdown_on_signals())
        .await?;
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        None => harvest(cli.config, cli.once, cli.dry_run).await,
        Some(Command::Run { once, dry_run }) => {
            harvest(cli.config, once || cli.once, dry_run || cli.dry_run).await
        }
        Some(Command::Simulate {
            listen,
            fallback_listen,
            tenants,
            seed,
            page_size,
            sessions_per_day,
            history_days,
        }) => {
            let opts = SimOptions {
                tenants,
                seed,
                page_size,
                sessions_per_day,
                history: chrono::Duration::seconds((history_days.max(0.0) * 86_400.0) as i64),
                ..SimOptions::default()
            };
            simulate(listen, fallback_listen, opts).await
        }
        Some(Command::Demo {
            tenants,
            seed,
            out,
            state_dir,
        }) => run_demo(DemoOptions {
            tenants,
            seed,
            out,
            state_dir,
        })
        .await
        .map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
