//! `portico`: the gateway binary.
//!
//! `portico start [--config PATH]` runs in the foreground with the configuration file (default:
//! embedded defaults, or `$PORTICO_CONFIG`) plus `PORTICO_*` environment overrides, logs to
//! stderr, and shuts down cleanly on SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portico::Server;
use portico::config::{CONFIG_PATH_ENV, Config, LOG_FILTER_ENV, process_env};

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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Start { config } => start(config),
    }
}

fn start(config_path: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(config_path.as_deref(), process_env()) {
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
        let server = match Server::start(&config).await {
            Ok(server) => server,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                eprintln!("portico: cannot start: {error}");
                return ExitCode::FAILURE;
            }
        };
        for (name, addr) in server.listeners() {
            tracing::warn!(listener = %name, %addr, "MQTT listener ready");
        }
        let signal = wait_for_signal().await;
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

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
