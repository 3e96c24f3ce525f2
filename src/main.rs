//! The command line: parses arguments, sets up logging and calls the library. Nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use citrix_harvester::backfill::{
    self, BackfillOptions, ProgressStyle, parse_instant, parse_since,
};
use citrix_harvester::config::Config;
use citrix_harvester::demo::{DemoOptions, run_demo};
use citrix_harvester::scheduler::{RunReport, format_summary, run_report, spooled_bytes};
use citrix_harvester::shard::Shard;
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
    #[command(flatten)]
    backfill: BackfillArgs,
    /// Take only shard K of N of the tenants (0 <= K < N, by a stable hash of customer_id);
    /// overrides harvester.shard. N instances with 0/N .. N-1/N split the tenants.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// Log format: text for terminals, json for journald/Loki.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Reload the configuration when its file or a file of harvester.tenants_dir changes
    /// (SIGHUP always reloads); same as harvester.watch_config = true.
    #[arg(long, global = true)]
    watch_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Harvest (the default when no subcommand is given).
    Run {
        /// Run one cycle for every tenant, print a summary, exit 0 only if every point was delivered.
        #[arg(long)]
        once: bool,
        /// Write line protocol to stdout instead of the configured output.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        backfill: BackfillArgs,
        /// Take only shard K of N of the tenants; overrides harvester.shard.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Check the configuration: secrets, a token and one tiny Monitor request per tenant, and
    /// the output (nothing is written). Prints a table; exit 0 if all passed, 1 if not, 2 if
    /// the configuration does not load.
    Check {
        /// Check only shard K of N of the tenants; overrides harvester.shard.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Print a shell completion script to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per command into a directory.
    Man {
        /// Write citrix-harvester.1 and citrix-harvester-<command>.1 here instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
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
        /// Days of history the data covers (up to now); fractions are fine (0.05 ≈ 72 min).
        #[arg(long, default_value_t = 2.0)]
        history_days: f64,
        #[command(flatten)]
        behaviour: SimBehaviour,
    },
    /// Ask a running harvester's `/readyz` (harvester.listen) whether it is ready; exit 0 if so.
    /// For container health checks: the image needs no curl.
    Health {
        #[arg(
            long,
            env = "CITRIX_HARVESTER_HEALTH_URL",
            default_value = "http://127.0.0.1:9464/readyz"
        )]
        url: String,
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
        /// An incident at the first tenant (repeatable): logon_storm, deregistration,
        /// failure_spike[:<category>], harvest_stop.
        #[arg(long = "incident", value_parser = citrix_harvester::demo::parse_incident)]
        incidents: Vec<citrix_harvester::sim::Incident>,
        /// One more simulated tenant, served as an on-premises site (Delivery Controller path,
        /// NTLM handshake; the simulator itself does not check Windows credentials).
        #[arg(long)]
        onprem_site: bool,
    },
}

/// Backfill: with `--once --since`, read a past range instead of one live cycle.
#[derive(clap::Args, Clone, Default)]
struct BackfillArgs {
    /// Backfill from this date (2026-10-01), time (2026-10-01T08:00:00Z) or duration ago (14d).
    /// Needs --once. Resumes where an interrupted backfill with the same --since stopped.
    #[arg(long, requires = "once")]
    since: Option<String>,
    /// End of the backfill range (exclusive; date, time or duration ago). Default: now.
    #[arg(long, requires = "since")]
    until: Option<String>,
    /// Backfill only this tenant (by name; repeat for several). Default: every tenant.
    #[arg(long = "tenant", requires = "since", value_name = "NAME")]
    tenants: Vec<String>,
    /// Backfill only this entity kind (connections, logon_summaries, ...; repeat for several).
    #[arg(long = "entity", requires = "since", value_name = "KIND")]
    entities: Vec<String>,
    /// Length of one backfill window (each is a query per job, saved when delivered).
    #[arg(long, default_value = "1d", requires = "since")]
    window: String,
}

impl BackfillArgs {
    fn options(&self) -> anyhow::Result<Option<BackfillOptions>> {
        let Some(since) = &self.since else {
            return Ok(None);
        };
        let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0);
        let window = citrix_harvester::config::parse_duration(&self.window)
            .map_err(|e| anyhow::anyhow!("--window {e}"))?;
        let since = parse_since(since, now, window).map_err(|e| anyhow::anyhow!("--since {e}"))?;
        let until = match &self.until {
            Some(u) => parse_instant(u, now).map_err(|e| anyhow::anyhow!("--until {e}"))?,
            None => now,
        };
        Ok(Some(BackfillOptions {
            since,
            until,
            window,
            tenants: self.tenants.clone(),
            entities: self.entities.clone(),
            progress: ProgressStyle::detect(),
        }))
    }
}

async fn health(url: &str) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .no_proxy()
        .build()?;
    match client.get(url).send().await {
        Ok(r) => {
            let ok = r.status().is_success();
            let status = r.status();
            print!("{}", r.text().await.unwrap_or_default());
            if !ok {
                eprintln!("{url} answered {status}");
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!(
                "{url}: {e}; is harvester.listen set (e.g. CITRIX_HARVESTER__HARVESTER__LISTEN=127.0.0.1:9464)?"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Cancels the returned token on SIGINT or SIGTERM. SIGHUP asks `reload` for a configuration
/// reload; without one (`--once`, `simulate`) it is logged and ignored — never the default,
/// which would kill the process on the spot (the way a reload signal once took Telegraf down).
/// The handlers are installed before this returns, so before systemd is told READY.
fn shutdown_on_signals(
    reload: Option<tokio::sync::mpsc::Sender<citrix_harvester::reload::Cause>>,
) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let hup = signal(SignalKind::hangup());
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            let (mut term, mut hup) = (term.ok(), hup.ok());
            loop {
                tokio::select! {
                    _ = &mut ctrl_c => break,
                    Some(_) = async { term.as_mut()?.recv().await } => break,
                    Some(_) = async { hup.as_mut()?.recv().await } => match &reload {
                        // Full: a reload is pending already and will read the newest files.
                        Some(tx) => {
                            tracing::info!("SIGHUP received: reloading the configuration.");
                            let _ = tx.try_send(citrix_harvester::reload::Cause::Signal);
                        }
                        None => tracing::warn!("SIGHUP received: this command does not reload its \
                            configuration; ignored."),
                    },
                }
            }
            tracing::info!("Shutdown requested: finishing the current page, then stopping.");
            t.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Shutdown requested: finishing the current page, then stopping.");
        t.cancel();
    });
    token
}

/// The harvest's command-line switches.
struct HarvestOpts {
    once: bool,
    dry_run: bool,
    shard: Option<Shard>,
    watch: bool,
}

/// Reads the configuration as the command line asks: the file, its overrides, the shard and
/// the switches that replace settings. The same function serves the start and every reload.
fn load_config(path: &std::path::Path, o: &HarvestOpts) -> Result<Config, String> {
    let mut cfg = Config::load(path).map_err(|e| e.to_string())?;
    cfg.take_shard(o.shard);
    cfg.harvester.watch_config |= o.watch;
    if o.dry_run {
        cfg.output = SinkConfig {
            kind: SinkKind::Stdout,
            ..cfg.output
        };
    }
    Ok(cfg)
}

async fn harvest(
    cli_config: PathBuf,
    o: HarvestOpts,
    backfill: BackfillArgs,
) -> anyhow::Result<ExitCode> {
    let backfill = backfill.options()?;
    let once = o.once;
    let cfg = load_config(&cli_config, &o)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("configuration {}", cli_config.display()))?;
    // A daemon reloads on SIGHUP (and on file changes with watch_config); `--once` does not.
    let (reload_tx, reload) = if once || backfill.is_some() {
        (None, None)
    } else {
        let (tx, rx) = citrix_harvester::reload::channel();
        let path = cli_config.clone();
        let load: citrix_harvester::reload::Loader = Box::new(move || load_config(&path, &o));
        let reload = citrix_harvester::reload::Reload { requests: rx, load };
        (Some(tx), Some(reload))
    };
    let shutdown = shutdown_on_signals(reload_tx.clone());
    if let (Some(tx), true) = (reload_tx, cfg.harvester.watch_config) {
        tokio::spawn(citrix_harvester::reload::watch(
            cli_config.clone(),
            cfg.harvester.tenants_dir.clone(),
            std::time::Duration::from_secs(2),
            tx,
            shutdown.clone(),
        ));
    }
    let grace = cfg.harvester.shutdown_grace;
    let overdue = {
        let s = shutdown.clone();
        async move {
            s.cancelled().await;
            tokio::time::sleep(grace).await;
        }
    };
    let work = async {
        match &backfill {
            Some(opts) => Ok::<_, anyhow::Error>(RunReport {
                summaries: backfill::run(&cfg, opts, shutdown).await?,
                sink: Default::default(),
                peak_requests_in_flight: 0,
                budget: Default::default(),
            }),
            None => Ok(run_report(&cfg, once, shutdown, reload).await?),
        }
    };
    let report = tokio::select! {
        r = work => r?,
        _ = overdue => {
            // Nothing is lost: watermarks only move after acknowledgement, so the pages being
            // fetched are read again at the next start.
            tracing::warn!(grace_ms = grace.as_millis() as u64,
                "Shutdown grace period over; exiting without waiting for the current requests.");
            return Ok(ExitCode::from(3));
        }
    };
    if once {
        eprint!("{}", format_summary(&report.summaries));
        if report.sink.spool_corrupt_bytes > 0 {
            eprintln!(
                "{} bytes of acknowledged points in the spool were corrupt or missing and are lost (see the ERROR lines).",
                report.sink.spool_corrupt_bytes
            );
        }
        let spooled = spooled_bytes(&cfg);
        if spooled > 0 {
            eprintln!(
                "{spooled} bytes of points are still in the spool (the server was away); the next run replays them."
            );
        }
        let ok = spooled == 0 && report.ok();
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(cli_config: PathBuf, cli_shard: Option<Shard>) -> anyhow::Result<ExitCode> {
    let shown = cli_config.display().to_string();
    let checked = match Config::load_for_check(&cli_config) {
        Ok(c) => c,
        Err(e) => {
            print!(
                "{}",
                citrix_harvester::check::config_failure(&shown, &e).render()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let report = citrix_harvester::check::run(checked, &shown, cli_shard).await;
    print!("{}", report.render());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn man(out_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match out_dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("write man pages into {}", dir.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The simulator's size, latency and clock (`simulate`); docs/performance.md, "Simulated
/// latency", says what each does.
#[derive(clap::Args, Debug)]
struct SimBehaviour {
    /// Machines per tenant (medium: 500); default 20–60. Users: five per machine.
    #[arg(long)]
    machines_per_tenant: Option<usize>,
    /// Every tenant the size of tenant 0 instead of 0.35–1.2 times it.
    #[arg(long)]
    equal_tenants: bool,
    /// Generate only N data sets and let tenant i serve set i mod N (its own identity,
    /// statistics and latency), so that 10,000 tenants fit in memory; default: one per tenant.
    #[arg(long, value_name = "N")]
    data_sets: Option<usize>,
    /// Drop raw resource samples and summary rows older than this on every advance (at
    /// least 1h), so a long run on the real clock stays the same size; default: keep all.
    #[arg(long, value_name = "DUR", value_parser = citrix_harvester::config::parse_duration)]
    retain: Option<std::time::Duration>,
    /// Median wait before the first byte of every Monitor and token request (simulated
    /// time), e.g. 1s or 800ms; 0 = none.
    #[arg(long, value_name = "DUR", value_parser = citrix_harvester::config::parse_duration, default_value = "0")]
    latency_p50: std::time::Duration,
    /// 99th percentile of that wait (lognormal, σ = ln(p99/p50)/2.326); default: the p50.
    #[arg(long, value_name = "DUR", value_parser = citrix_harvester::config::parse_duration)]
    latency_p99: Option<std::time::Duration>,
    /// Share of tenants (0..1, chosen from the seed) that are slower.
    #[arg(long, default_value_t = 0.0)]
    slow_share: f64,
    /// How much slower: their wait times this, their stream rate divided by it.
    #[arg(long, default_value_t = 3.0)]
    slow_factor: f64,
    /// Bytes per second of each response body (simulated time); 0 = at once.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 0)]
    stream_rate: u64,
    /// Monitor requests in flight across all tenants beyond which the answer is 429 with
    /// Retry-After: 1; 0 = no budget.
    #[arg(long, default_value_t = 0)]
    api_budget: u64,
    /// `manual`: time moves only on POST /_sim/advance; `real`: it follows the wall clock
    /// (times --time-scale), advancing every --tick.
    #[arg(long, value_enum, default_value = "manual")]
    clock: SimClock,
    /// Simulated seconds per wall second: waits and streaming take simulated/F of wall time,
    /// the real clock advances F simulated seconds per wall second.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    time_scale: f64,
    /// How often (wall time) the real clock advances.
    #[arg(long, value_name = "DUR", value_parser = citrix_harvester::config::parse_duration, default_value = "5s")]
    tick: std::time::Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SimClock {
    Manual,
    Real,
}

impl SimBehaviour {
    fn apply(self, opts: SimOptions) -> anyhow::Result<SimOptions> {
        if self.latency_p50.is_zero() && self.latency_p99.is_some_and(|d| !d.is_zero()) {
            anyhow::bail!("simulate: --latency-p99 needs --latency-p50");
        }
        let p50_ms = self.latency_p50.as_secs_f64() * 1000.0;
        let latency = citrix_harvester::sim::Latency {
            p50_ms,
            p99_ms: self
                .latency_p99
                .map_or(p50_ms, |d| d.as_secs_f64() * 1000.0),
            slow_share: self.slow_share,
            slow_factor: self.slow_factor,
            stream_rate: self.stream_rate,
            api_budget: self.api_budget,
            ..Default::default()
        };
        let opts = SimOptions {
            machines_per_tenant: self.machines_per_tenant,
            equal_tenants: self.equal_tenants,
            data_sets: self.data_sets,
            retain: self
                .retain
                .map(|r| chrono::Duration::from_std(r).unwrap_or(chrono::Duration::MAX)),
            latency,
            time_scale: self.time_scale,
            real_clock: (self.clock == SimClock::Real).then_some(self.tick),
            ..opts
        };
        opts.validate()
            .map_err(|e| anyhow::anyhow!("simulate: {e}"))?;
        Ok(opts)
    }
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
    println!(
        "Admin:          http://{listen}/_sim/stats, POST /_sim/faults, POST /_sim/latency, POST /_sim/advance"
    );
    println!("Simulated tenants (test credentials, not secrets):");
    for t in sim.tenants() {
        println!(
            "  {:<28} customer_id={} client_id={} client_secret={} utc_offset={}min",
            t.name, t.customer_id, t.client_id, t.client_secret, t.utc_offset_minutes
        );
    }
    sim.serve(regional_l, fallback_l, shutdown_on_signals(None))
        .await?;
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        None => {
            let o = HarvestOpts {
                once: cli.once,
                dry_run: cli.dry_run,
                shard: cli.shard,
                watch: cli.watch_config,
            };
            harvest(cli.config, o, cli.backfill).await
        }
        Some(Command::Run {
            once,
            dry_run,
            backfill,
            shard,
        }) => {
            let backfill = if backfill.since.is_some() {
                backfill
            } else {
                cli.backfill
            };
            let o = HarvestOpts {
                once: once || cli.once,
                dry_run: dry_run || cli.dry_run,
                shard: shard.or(cli.shard),
                watch: cli.watch_config,
            };
            harvest(cli.config, o, backfill).await
        }
        Some(Command::Health { url }) => health(&url).await,
        Some(Command::Check { shard }) => check(cli.config, shard.or(cli.shard)).await,
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "citrix-harvester",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man { out_dir }) => man(out_dir),
        Some(Command::Simulate {
            listen,
            fallback_listen,
            tenants,
            seed,
            page_size,
            sessions_per_day,
            history_days,
            behaviour,
        }) => {
            let opts = SimOptions {
                tenants,
                seed,
                page_size,
                sessions_per_day,
                history: chrono::Duration::seconds((history_days.max(0.0) * 86_400.0) as i64),
                ..SimOptions::default()
            };
            match behaviour.apply(opts) {
                Ok(opts) => simulate(listen, fallback_listen, opts).await,
                Err(e) => Err(e),
            }
        }
        Some(Command::Demo {
            tenants,
            seed,
            out,
            state_dir,
            incidents,
            onprem_site,
        }) => run_demo(DemoOptions {
            tenants,
            seed,
            out,
            state_dir,
            incidents,
            onprem_site,
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
