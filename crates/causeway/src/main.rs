//! causeway: a PostgreSQL connection pooler and read/write router.

mod check;
mod cli;
mod import;
mod listener;
mod signals;
mod trim;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use causeway_config::{Config, LogFormat};
use clap::Parser;

use crate::cli::{Cli, Command};
use causeway_frontend::app::{App, Phase};
use causeway_frontend::secrets::Secrets;
use causeway_frontend::security::Security;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Import { file }) = &cli.command {
        return import::run(file);
    }
    let layers = match cli.layers() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("causeway: {e}");
            return ExitCode::from(2);
        }
    };
    let (config, warnings) = match causeway_config::load_with_warnings(&layers) {
        Ok(l) => (l.config, l.warnings),
        Err(e) => {
            eprintln!("causeway: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig { connect }) = cli.command {
        for w in &warnings {
            eprintln!("causeway: warning: {w}");
        }
        return check_config(&config, connect);
    }
    init_logging(&config);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let format = config.log_format;
    raise_fd_limit();
    let (secrets, security) = match preflight(&config) {
        Ok(x) => x,
        Err(e) => {
            fatal(format, &e);
            return ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        rt.worker_threads(config.workers);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            fatal(format, &format!("cannot start runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(layers, config, secrets, security)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(format, &e);
            ExitCode::FAILURE
        }
    }
}

/// What startup refuses beyond the settings themselves (the auth_file, the
/// listen addresses, TLS and hba files). `check-config` runs exactly this,
/// so it fails where startup would.
fn preflight(config: &Config) -> Result<(Secrets, Security), String> {
    let secrets = Secrets::load(config.auth_file.as_deref())?;
    causeway_net::listen_addrs(&config.listen_addr, config.listen_port)
        .map_err(|e| format!("invalid listen address: {e}"))?;
    let security = Security::load(config)?;
    Ok((secrets, security))
}

/// `causeway check-config`: exit 0 and print the merged configuration
/// (passwords masked) only if startup would accept it.
fn check_config(config: &Config, connect: bool) -> ExitCode {
    let (secrets, security) = match preflight(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("causeway: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match toml::to_string(&config.masked()) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("causeway: {e}");
            return ExitCode::from(2);
        }
    }
    if connect {
        check::connect(config, &secrets, &security)
    } else {
        ExitCode::SUCCESS
    }
}

/// An error that ends the process, once logging is set up: a log line,
/// plus the plain `causeway: ...` line on stderr in human mode (in JSON
/// mode every line on stderr stays JSON).
fn fatal(format: LogFormat, msg: &str) {
    tracing::error!("{msg}");
    if format == LogFormat::Human {
        eprintln!("causeway: {msg}");
    }
}

async fn serve(
    layers: causeway_config::Layers,
    config: Config,
    secrets: Secrets,
    security: Security,
) -> Result<(), String> {
    let listeners = listener::bind_all(&config)?;
    if matches!(
        config.auth_type,
        causeway_config::AuthType::Md5
            | causeway_config::AuthType::ScramSha256
            | causeway_config::AuthType::Plain
    ) && secrets.is_empty()
    {
        tracing::warn!(
            "auth_type needs passwords but no auth_file entries are loaded: every login will fail"
        );
    }
    let app = App::new(layers, config, secrets, security);
    for l in &listeners {
        tracing::info!(addr = %l.describe(), "listening");
    }
    tokio::spawn({
        let app = app.clone();
        async move {
            if let Err(e) = signals::run(app).await {
                tracing::error!(error = %e, "cannot install signal handlers");
            }
        }
    });
    tokio::spawn(maintenance(app.clone()));
    let metrics_addr = app.config().metrics_addr.clone();
    if !metrics_addr.is_empty() {
        let l = tokio::net::TcpListener::bind(&metrics_addr)
            .await
            .map_err(|e| format!("cannot listen for metrics on {metrics_addr}: {e}"))?;
        tracing::info!(addr = %metrics_addr, "metrics at /metrics, /health, /ready");
        let source = Arc::new(causeway_frontend::metrics::MetricsSource {
            app: app.clone(),
            started: std::time::Instant::now(),
        });
        let mut phase = app.watch_phase();
        tokio::spawn(causeway_metrics::serve(l, source, async move {
            while phase.changed().await.is_ok() {
                if *phase.borrow() == Phase::Stopping {
                    break;
                }
            }
        }));
    }
    listener::run(app.clone(), listeners).await;
    // Not accepting any more: wait for clients as the phase says.
    loop {
        if app.phase() == Phase::Stopping || app.client_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if app.client_count() > 0 {
        // Give sessions a moment to send their goodbye.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for db in app.databases.all() {
        for pool in db.pools() {
            pool.close();
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    tracing::info!("shut down");
    Ok(())
}

/// How long a client has sent no request before it parks.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// Pool upkeep (idle timeouts, lifetimes, min_pool_size) every second, and
/// the stats period: averages rolled and a PgBouncer-style log line.
async fn maintenance(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_roll = tokio::time::Instant::now();
    let mut trim = trim::Trim::default();
    loop {
        tick.tick().await;
        trim.tick(app.client_count() as usize);
        // Clients with no request for a second park without a task
        // (session/park.rs): a second's silence is no burst of
        // transactions, and parking and resuming (a few allocations and a
        // spawn) cost nothing beside it. Every idle client is parked
        // within two ticks.
        app.clients.park_idle(PARK_AFTER);
        let dbs = app.databases.all();
        for db in &dbs {
            for pool in db.pools() {
                pool.maintain();
            }
        }
        let period = Duration::from_secs_f64(app.config().stats_period.max(1.0));
        if last_roll.elapsed() >= period {
            let elapsed = last_roll.elapsed();
            last_roll = tokio::time::Instant::now();
            for db in &dbs {
                db.stats.roll(elapsed);
                let a = db.stats.averages();
                tracing::info!(
                    database = %db.name,
                    xacts_per_s = a.xacts,
                    queries_per_s = a.queries,
                    in_bytes_per_s = a.recv,
                    out_bytes_per_s = a.sent,
                    xact_us = a.xact_time_us,
                    query_us = a.query_time_us,
                    wait_us = a.wait_time_us,
                    "stats"
                );
            }
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: never in a file, a pipe
    // or journald (which is where stderr goes when it is not a terminal).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => {
            builder.json().init();
            // A panic is a log line too, not free text among JSON lines.
            std::panic::set_hook(Box::new(|info| {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let what = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, location = %at, "panic");
            }));
        }
        LogFormat::Human => builder.init(),
    }
}

/// PgBouncer fails at ~1000 clients under the default soft limit of 1024.
fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// jemalloc rather than glibc's malloc: no per-chunk header and tight size
/// classes (an idle client costs less), and no arenas pinned by a few live
/// chunks after a flood of clients leaves (trim.rs purges them).
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
