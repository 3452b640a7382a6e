//! `portico`: the gateway binary.
//!
//! `portico start [--config PATH]` runs in the foreground with the configuration file (default:
//! embedded defaults, or `$PORTICO_CONFIG`) plus `PORTICO_*` environment overrides, logs to
//! stderr, applies changed listener settings on SIGHUP, and shuts down cleanly on SIGINT or
//! SIGTERM. `portico ctl <command>` operates a running node over its local control socket (see
//! `ctl.rs` and `docs/cli.md`).

mod ctl;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portico::Server;
use portico::config::{CONFIG_PATH_ENV, Config, ConfigSource, LOG_FILTER_ENV};

// jemalloc handles tokio's 128-byte-aligned task and I/O allocations far better than glibc
// (measured in docs/hot-path.md: ~0.5 KB less per idle connection).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Portico: a multi-protocol IoT gateway (MQTT today; MQTT-SN, CoAP, LwM2M, STOMP planned)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway in the foreground.
    Start {
        /// Configuration file (TOML). Without it, the embedded defaults apply.
        #[arg(long, short, env = CONFIG_PATH_ENV)]
        config: Option<PathBuf>,
        /// Keep everything in memory (`durable_sessions.mode = "memory"`): nothing is written to
        /// disk, and a restart loses sessions, retained and delayed messages.
        #[arg(long)]
        memory: bool,
    },
    /// Operate the running node over its local control socket (as `emqx ctl`).
    Ctl(ctl::CtlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Start { config, memory } => start(config, memory),
        Command::Ctl(args) => ctl::run(args),
    }
}

fn start(config_path: Option<PathBuf>, memory: bool) -> ExitCode {
    let config = match load_config(config_path.as_deref(), memory) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("portico: the configuration is invalid:\n{errors}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portico: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut server = match Server::start(&config).await {
            Ok(server) => server,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                eprintln!("portico: cannot start: {error}");
                return ExitCode::FAILURE;
            }
        };
        for (name, addr) in server.listeners() {
            tracing::warn!(listener = %name, %addr, "listener ready");
        }
        let signal = serve_until_stopped(&mut server, config_path.as_deref(), memory).await;
        tracing::warn!(signal, "shutting down");
        server.shutdown().await;
        tracing::warn!("stopped");
        ExitCode::SUCCESS
    })
}

fn init_logging(config: &Config) {
    // PORTICO_LOG (a tracing filter such as `portico_mqtt=debug`) wins over log.console.level.
    let filter = std::env::var(LOG_FILTER_ENV)
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(config.log.console.level.tracing_directive()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Serves until SIGINT or SIGTERM (returns its name). On SIGHUP the configuration file and
/// environment are read again and their listener settings applied (see `Server::reload`).
/// The configuration from the file and environment, with the command line's `--memory`.
fn load_config(config_path: Option<&Path>, memory: bool) -> Result<Config, portico::config::ConfigErrors> {
    let source = ConfigSource {
        path: config_path.map(Path::to_path_buf),
        process_env: true,
        memory,
        ..ConfigSource::default()
    };
    source.load()
}

async fn serve_until_stopped(server: &mut Server, config_path: Option<&Path>, memory: bool) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return "none";
    };
    loop {
        tokio::select! {
            _ = term.recv() => return "SIGTERM",
            _ = int.recv() => return "SIGINT",
            _ = hup.recv() => reload(server, config_path, memory).await,
        }
    }
}

async fn reload(server: &mut Server, config_path: Option<&Path>, memory: bool) {
    let config = match load_config(config_path, memory) {
        Ok(config) => config,
        Err(errors) => {
            tracing::error!("configuration not reloaded, it is invalid:\n{errors}");
            return;
        }
    };
    match server.reload(&config).await {
        Ok(report) => tracing::warn!(
            started = ?report.started,
            restarted = ?report.restarted,
            stopped = ?report.stopped,
            failed = ?report.failed,
            "configuration reloaded (SIGHUP)"
        ),
        Err(error) => tracing::error!(%error, "configuration not reloaded"),
    }
}
