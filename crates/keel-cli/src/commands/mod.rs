//! One module per command group; shared here: the global flags and loading the configuration.

pub mod config;
pub mod healthcheck;
pub mod jobs;
pub mod migrate;
mod offline;
pub mod serve;
pub mod task;
pub mod users;
pub mod version;
pub mod worker_run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use keel::config::{Config, LoadOptions};
use keel::placement::Placement;

/// Exit status for an invalid configuration (`serve`, `config check`, …).
pub const EXIT_CONFIG: u8 = 2;

/// Flags accepted by every command.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Directory holding default.toml, {env}.toml and local.toml.
    #[arg(long, global = true, env = "KEEL_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

/// Loads the configuration with `overrides` (key path, value) from command-line flags as the
/// last layer. On failure prints every problem to stderr and returns the exit code to use.
pub fn load_config(global: &Global, overrides: &[(&str, String)]) -> Result<Config, ExitCode> {
    load_config_with(&load_options(global, overrides))
}

/// Where the configuration comes from: the process's environment, the config directory and
/// `overrides`. `serve` keeps it to load the same layers again on SIGHUP.
pub fn load_options(global: &Global, overrides: &[(&str, String)]) -> LoadOptions {
    let mut options = LoadOptions::from_process(global.config_dir.clone());
    for (key, value) in overrides {
        options = options.with_override(key, value);
    }
    options
}

/// `load_config` from prepared options.
pub fn load_config_with(options: &LoadOptions) -> Result<Config, ExitCode> {
    keel::config::load(options).map_err(|error| {
        eprintln!("keel: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// What every long-running command starts before its work: telemetry (logs, traces) and the
/// async runtime, its workers placed on the CPUs as `[runtime]` says (`keel::placement`). On
/// failure prints why and returns the exit code to use.
pub fn start_process(
    config: &Config,
) -> Result<(keel::telemetry::TelemetryGuard, tokio::runtime::Runtime), ExitCode> {
    let telemetry = keel::telemetry::init(config).map_err(|e| {
        eprintln!("keel: {e}");
        ExitCode::FAILURE
    })?;
    let workers =
        keel::placement::worker_count(std::env::var_os("TOKIO_WORKER_THREADS").as_deref())
            .map_err(|e| {
                eprintln!("keel: {e}");
                ExitCode::from(EXIT_CONFIG)
            })?;
    let (placement, unpinned) = Placement::for_this_process(&config.runtime, workers);
    tracing::info!(
        workers,
        cpus = ?placement.cpus(),
        batch = placement.batch(),
        unpinned = unpinned.as_deref(),
        "async runtime workers"
    );
    let placement = Arc::new(placement);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .on_thread_park(move || {
            placement.on_park();
            crate::alloc::collect_retained();
        })
        .build()
        .map_err(|e| {
            eprintln!("keel: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })?;
    Ok((telemetry, runtime))
}
