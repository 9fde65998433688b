//! The command line: `serve` (the default), `check`, `diagnose` and `validate`, and the
//! mapping of every outcome to an exit code.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::stream::{self, StreamExt};

use crate::app::App;
use crate::checks::CheckSpec;
use crate::config::{self, CheckConfig, ConfigErrors};
use crate::metrics::RunRecord;
use crate::scheduler::run_once;
use crate::shard::Shard;
use crate::web::WebConfig;

/// Default address of the HTTP server. 9745 is not used by Prometheus or
/// any well-known exporter.
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9745";

/// Exit code: every check passed / the command succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: a check failed, or the server could not run.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: the config is invalid.
pub const EXIT_INVALID_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "runbook-exporter",
    version,
    about = "Runs the health checks of your troubleshooting guides on schedules and serves them as Prometheus metrics.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every check on its schedule and serve the results (the default).
    Serve(ServeArgs),
    /// Run the checks once, print a status table, exit 0 if all pass, 1 if
    /// any fails, 2 if the config is invalid.
    Check(CheckArgs),
    /// Run the checks once, all at the same time, and for every failing or
    /// degraded one print the reason, the evidence, the runbook and the
    /// next commands; exit codes as `check`.
    Diagnose(CheckArgs),
    /// Validate the config file and print every problem found; exit 2 if
    /// there is any.
    Validate(ConfigArg),
    /// Render the alert rules, PrometheusRule, promtool tests, Alertmanager
    /// example, runbooks and dashboards from a mixin config (like
    /// alerts/config.yaml) into a directory; exit 2 if the config is invalid.
    Mixin(MixinArgs),
}

#[derive(Debug, Args)]
struct MixinArgs {
    /// The mixin config: runbook base URL, selectors, thresholds,
    /// priorities, receivers (start from alerts/config.yaml).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// The directory to write into (created if missing); files keep the
    /// repository's layout (alerts/, dashboards/, docs/, deploy/).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The config file.
    #[arg(
        long,
        short = 'c',
        env = "RUNBOOK_CONFIG",
        default_value = "/etc/runbook-exporter/config.yaml"
    )]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Address to serve /metrics and the other endpoints on.
    #[arg(long = "web.listen-address", env = "RUNBOOK_LISTEN_ADDRESS", default_value = DEFAULT_LISTEN_ADDRESS)]
    listen_address: SocketAddr,
    /// Web config file (Prometheus exporter-toolkit format): TLS, client
    /// certificates and basic auth for every endpoint.
    #[arg(long = "web.config.file", env = "RUNBOOK_WEB_CONFIG_FILE")]
    web_config_file: Option<PathBuf>,
    /// Allow `POST /-/reload` (SIGHUP always reloads).
    #[arg(long = "web.enable-reload", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    enable_reload: bool,
    /// This replica's shard, from 0: it runs only the checks whose name
    /// hashes to it. `auto` takes the ordinal at the end of the host name
    /// (a StatefulSet pod `runbook-exporter-2` is shard 2).
    #[arg(
        long = "shard",
        env = "RUNBOOK_SHARD",
        default_value = "0",
        value_name = "N|auto"
    )]
    shard: String,
    /// How many shards share the checks (the StatefulSet's replicas).
    #[arg(
        long = "total-shards",
        env = "RUNBOOK_TOTAL_SHARDS",
        default_value_t = 1,
        value_name = "M"
    )]
    total_shards: u32,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Run only this check; repeat to select several. Default: all.
    #[arg(long = "check", value_name = "NAME")]
    checks: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The address `serve` listens on: http and tcp checks of this port on
    /// a loopback address are self-checks, which `check` skips (nothing
    /// serves the exporter's endpoints in `check` mode).
    #[arg(long = "web.listen-address", env = "RUNBOOK_LISTEN_ADDRESS", default_value = DEFAULT_LISTEN_ADDRESS)]
    listen_address: SocketAddr,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct LogArgs {
    /// Log level: error, warn, info, debug or trace (or a tracing filter).
    #[arg(
        long = "log.level",
        env = "RUNBOOK_LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    level: String,
    /// Log format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text, global = true)]
    format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Parse the command line, run the command, return the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Check(args)) => check(args).await,
            Some(Command::Diagnose(args)) => diagnose(args).await,
            Some(Command::Validate(args)) => validate(args),
            Some(Command::Mixin(args)) => mixin(args),
        }
    });
    ExitCode::from(code)
}

fn init_tracing(log: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn print_config_errors(errors: &ConfigErrors) {
    let mut err = std::io::stderr().lock();
    for e in &errors.0 {
        let _ = writeln!(err, "{e}");
    }
}

async fn serve(args: ServeArgs) -> u8 {
    let web = match &args.web_config_file {
        None => WebConfig::insecure(),
        Some(path) => match WebConfig::load(path) {
            Ok(w) => w,
            Err(errors) => {
                print_config_errors(&errors);
                return EXIT_INVALID_CONFIG;
            }
        },
    };
    // A pod's host name is its name; HOSTNAME is set in every container.
    let hostname = std::env::var("HOSTNAME").ok().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
    });
    let shard = match Shard::parse(&args.shard, args.total_shards, hostname.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("runbook-exporter: {e}");
            return EXIT_INVALID_CONFIG;
        }
    };
    let app = match App::start_shard(args.config.config, shard).await {
        Ok(app) => app,
        Err(errors) => {
            print_config_errors(&errors);
            return EXIT_INVALID_CONFIG;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen_address).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %args.listen_address, error = %e, "cannot listen");
            return EXIT_FAILURE;
        }
    };
    tracing::info!(
        address = %args.listen_address,
        tls = web.tls.is_some(),
        "serving /metrics"
    );

    let reloader = tokio::spawn(reload_on_sighup(app.clone()));
    let options = crate::server::Options {
        enable_reload: args.enable_reload,
        ..Default::default()
    };
    let result = crate::server::serve(listener, app.clone(), options, web, shutdown_signal()).await;
    reloader.abort();
    app.shutdown().await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            EXIT_OK
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            EXIT_FAILURE
        }
    }
}

async fn reload_on_sighup(app: Arc<App>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
        return;
    };
    while hup.recv().await.is_some() {
        // Errors are logged and exported by reload itself.
        let _ = app.reload().await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

fn mixin(args: MixinArgs) -> u8 {
    let config = match crate::mixin::MixinConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_INVALID_CONFIG;
        }
    };
    match crate::mixin::write_files(&config, &args.out) {
        Ok(written) => {
            println!(
                "{}: {} files rendered into {}, {} changed",
                args.config.display(),
                crate::mixin::render(&config).len(),
                args.out.display(),
                written.len()
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILURE
        }
    }
}

fn validate(args: ConfigArg) -> u8 {
    match config::load(&args.config) {
        Ok(config) => {
            println!(
                "{}: OK, {} checks",
                args.config.display(),
                config.checks.len()
            );
            EXIT_OK
        }
        Err(errors) => {
            print_config_errors(&errors);
            EXIT_INVALID_CONFIG
        }
    }
}

async fn check(args: CheckArgs) -> u8 {
    let (config, selected) = match select_checks(&args).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let results: Vec<(Arc<CheckConfig>, RunRecord)> = stream::iter(selected)
        .map(|c| async move {
            let record = run_once(c.check.clone(), c.timeout).await;
            (c, record)
        })
        .buffered(config.max_concurrent_runs)
        .collect()
        .await;
    let out = match args.output {
        Output::Table => render_table(&results),
        Output::Json => render_json(&results),
    };
    print!("{out}");
    if results.iter().all(|(_, r)| r.result.is_ok()) {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

/// The config and the checks `--check` selects (all by default); the exit
/// code when the config is invalid or names an unknown check.
async fn select_checks(args: &CheckArgs) -> Result<(config::Config, Vec<Arc<CheckConfig>>), u8> {
    let path = args.config.config.clone();
    let loaded = tokio::task::spawn_blocking(move || config::load(&path)).await;
    let mut config = match loaded {
        Ok(Ok(c)) => c,
        Ok(Err(errors)) => {
            print_config_errors(&errors);
            return Err(EXIT_INVALID_CONFIG);
        }
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let unknown: Vec<&String> = args
        .checks
        .iter()
        .filter(|n| !config.checks.iter().any(|c| &c.name == *n))
        .collect();
    if !unknown.is_empty() {
        for name in unknown {
            eprintln!("{}: no check named {name:?}", args.config.config.display());
        }
        return Err(EXIT_INVALID_CONFIG);
    }
    // Nothing serves the exporter's own endpoints outside `serve`, so
    // self-checks are skipped, and said so.
    let port = args.listen_address.port();
    let (skipped, selected): (Vec<Arc<CheckConfig>>, Vec<Arc<CheckConfig>>) =
        std::mem::take(&mut config.checks)
            .into_iter()
            .filter(|c| args.checks.is_empty() || args.checks.contains(&c.name))
            .partition(|c| is_self_check(c, port));
    for c in &skipped {
        eprintln!(
            "skipped {}: a self-check of the exporter's own port {port}, which nothing serves outside `serve` (it runs there)",
            c.name
        );
    }
    Ok((config, selected))
}

/// `diagnose`: every selected check at once, then [`crate::diagnose`]'s
/// report of what is broken.
async fn diagnose(args: CheckArgs) -> u8 {
    let (_, selected) = match select_checks(&args).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let results = crate::diagnose::run_all(selected).await;
    let report: Vec<_> = results
        .iter()
        .map(|(c, r)| crate::diagnose::diagnose(c, r))
        .collect();
    let out = match args.output {
        Output::Table => crate::diagnose::render_table(&report),
        Output::Json => crate::diagnose::render_json(&report),
    };
    print!("{out}");
    if results.iter().all(|(_, r)| r.result.is_ok()) {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

/// Whether `c` is an http or tcp check of the exporter's own `port` on a
/// loopback address (127.0.0.1, localhost, ::1): `check` skips those, as
/// it serves none of the exporter's endpoints.
fn is_self_check(c: &CheckConfig, port: u16) -> bool {
    matches!(c.kind(), "http" | "tcp")
        && c.spec.iter().flat_map(CheckSpec::endpoints).any(|e| {
            e.port == port
                && matches!(
                    e.host.trim_matches(['[', ']']),
                    "127.0.0.1" | "localhost" | "::1"
                )
        })
}

/// The `check` command's table: one row per check.
pub fn render_table(results: &[(Arc<CheckConfig>, RunRecord)]) -> String {
    let header = ["NAME", "KIND", "STATUS", "DURATION", "REASON", "MESSAGE"];
    let rows: Vec<[String; 6]> = results
        .iter()
        .map(|(c, r)| {
            let (status, reason, message) = match r.failure() {
                None if !r.notes.is_empty() => (
                    "ok".to_string(),
                    "-".to_string(),
                    first_line(&r.notes.join("; "), 100),
                ),
                None => ("ok".to_string(), "-".to_string(), "-".to_string()),
                Some(f) => (
                    "FAIL".to_string(),
                    f.reason.to_string(),
                    first_line(&f.message, 100),
                ),
            };
            [
                c.name.clone(),
                c.kind().to_string(),
                status,
                format!("{:.1}ms", r.duration.as_secs_f64() * 1000.0),
                reason,
                message,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// The `check` command's JSON: an array with one object per check.
pub fn render_json(results: &[(Arc<CheckConfig>, RunRecord)]) -> String {
    let items: Vec<serde_json::Value> = results
        .iter()
        .map(|(c, r)| {
            let failure = r.failure();
            serde_json::json!({
                "name": c.name,
                "kind": c.kind(),
                "status": if failure.is_none() { "ok" } else { "fail" },
                "duration_seconds": r.duration.as_secs_f64(),
                "reason": failure.map(|f| f.reason.as_str()),
                "message": failure.map(|f| f.message.as_str()),
                "notes": r.notes,
                "labels": c.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    match line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}
