//! `keel serve`: the whole system in one process, until a signal stops it.
//!
//! Order matters: configuration (invalid → exit 2 before anything listens), telemetry,
//! signal handlers, the store, the application, then the listener. On SIGTERM/SIGINT:
//! readiness goes down, the listener closes, in-flight requests drain within
//! `server.shutdown_timeout`, background tasks stop, shutdown hooks run (newest first, the
//! store last), telemetry is flushed, exit 0. A second signal exits at once with 130.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use keel::Platform;
use keel::config::{Config, LoadOptions};
use keel::reload::Reloader;
use keel::shutdown::Shutdown;
use keel::shutdown::signals::Signals;
use keel::store::{DatabaseConfig, Store, StoreError};
use keel::telemetry::LogFilter;
use keel_app::Role;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};

use super::Global;

/// How long each shutdown hook may take.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest the first look at the database may delay the start.
const FIRST_CHECK_BOUND: Duration = Duration::from_secs(5);

/// The `/api/ready` component that is down while a database that was unreachable at start has
/// not answered yet.
const DATABASE_COMPONENT: &str = "database";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// What this process runs; repeat for several (`--role api --role jobs`). Default: all.
    #[arg(long = "role", value_enum, value_name = "ROLE")]
    pub roles: Vec<RoleArg>,
    /// Listen address, overriding server.host.
    #[arg(long)]
    pub host: Option<String>,
    /// Listen port, overriding server.port.
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The HTTP API.
    Api,
    /// Scheduled tasks.
    Scheduler,
    /// Change-stream watchers.
    Watchers,
    /// Workers of the durable job queue.
    Jobs,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Api => Role::Api,
            RoleArg::Scheduler => Role::Scheduler,
            RoleArg::Watchers => Role::Watchers,
            RoleArg::Jobs => Role::Jobs,
        }
    }
}

pub fn run(global: &Global, args: ServeArgs) -> ExitCode {
    let mut overrides = Vec::new();
    if let Some(host) = &args.host {
        overrides.push(("server.host", host.clone()));
    }
    if let Some(port) = args.port {
        overrides.push(("server.port", port.to_string()));
    }
    let options = super::load_options(global, &overrides);
    let mut config = match super::load_config_with(&options) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut roles: Vec<Role> = args.roles.into_iter().map(Role::from).collect();
    if roles.is_empty() {
        roles = Role::ALL.to_vec();
    }
    roles.sort();
    roles.dedup();

    let (telemetry, runtime) = match super::start_process(&config) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let reload = Reload {
        options,
        log_filter: telemetry.log_filter(),
    };
    if let Err(code) = runtime.block_on(fill_secrets(&mut config, &reload.options)) {
        return code;
    }
    let outcome = runtime.block_on(serve(config, roles, reload));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "keel stopped on an error");
            eprintln!("keel: {e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// Fills the secrets the environment left unset from `secrets.provider` (directory, Vault),
/// then applies the production rules again. Failure: every problem on stderr, exit 2.
async fn fill_secrets(config: &mut Config, options: &LoadOptions) -> Result<(), ExitCode> {
    match keel::secrets::startup::fill_from_provider(config, &options.env_vars).await {
        Ok(filled) if !filled.is_empty() => {
            let provider = config.secrets.provider;
            tracing::info!(keys = ?filled, provider = ?provider, "secrets filled from the provider");
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(error = %error, "cannot read the secrets from the provider");
            eprintln!("keel: secrets: {error}");
            return Err(ExitCode::from(super::EXIT_CONFIG));
        }
    }
    let mut problems = config.validate();
    problems.extend(keel::secrets::startup::still_missing(config));
    if problems.is_empty() {
        return Ok(());
    }
    eprintln!("keel: {}", keel::config::ConfigError::Invalid(problems));
    Err(ExitCode::from(super::EXIT_CONFIG))
}

/// What a SIGHUP reload needs: the layers the configuration was loaded from, the log filter.
struct Reload {
    options: LoadOptions,
    log_filter: LogFilter,
}

async fn serve(config: Config, roles: Vec<Role>, reload: Reload) -> anyhow::Result<()> {
    let mut signals = Signals::install().context("installing signal handlers")?;
    // Installed before the listener opens: SIGHUP's default action would end the process.
    let hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let role_names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        env = %config.env,
        roles = ?role_names,
        "keel starting"
    );
    tracing::debug!(config = ?config, "effective configuration");

    let shutdown = Shutdown::new();
    let database = config.database.clone();
    let store = Store::connect_lazily(&database)
        .await
        .context("opening the store (database.url)")?;
    let closing = store.clone();
    shutdown.on_shutdown("store", move || async move {
        if let Err(e) = closing.close().await {
            tracing::warn!(error = %e, "closing the store failed");
        }
    });
    let reachable = first_check(&store, &database).await;
    match &reachable {
        Ok(()) => {
            tracing::info!(backend = store.backend_name(), "store opened");
            finish_store_start(&store, &database).await?;
        }
        Err(e) if e.is_retryable() => tracing::warn!(
            backend = store.backend_name(),
            error = %e,
            "the database is not reachable at start: serving with /api/ready 503 (component \"database\") until it answers; no restart needed"
        ),
        Err(_) => {
            return reachable.context("opening the store (database.url)");
        }
    }

    let drain_timeout = config.server.shutdown_timeout;
    let address = SocketAddr::new(config.server.host, config.server.port);
    let reuse_port = config.server.reuse_port;
    let limits = keel::http::ConnectionLimits::from(&config.server);
    let platform = Platform::new(config, shutdown.clone(), store.clone());
    if reachable.is_err() {
        wait_for_database(&platform, store, database);
    }
    let app = keel_app::build(platform.clone(), &roles);
    let reloader = Reloader::new(platform.clone(), reload.options, Some(reload.log_filter));
    spawn_reload_on_sighup(&shutdown, hangups, reloader);

    let (listener, origin) = keel::http::listen::open(address.ip(), address.port(), reuse_port)
        .with_context(|| format!("opening the listener for {address}"))?;
    let listener = TcpListener::from_std(listener).context("registering the listener")?;
    let local = listener
        .local_addr()
        .context("reading the listen address")?;
    tracing::info!(addr = %local, origin = ?origin, "listening");
    let mut server = tokio::spawn(keel::http::serve(
        listener,
        app.router,
        shutdown.clone(),
        drain_timeout,
        limits,
    ));

    let signal = tokio::select! {
        name = signals.recv() => name,
        result = &mut server => {
            // The accept loop only ends on its own if something broke.
            result.context("the HTTP server task failed")?.context("serving HTTP")?;
            anyhow::bail!("the HTTP server stopped unexpectedly");
        }
    };
    let started = Instant::now();
    tracing::info!(
        signal,
        drain_timeout_ms = drain_timeout.as_millis() as u64,
        "shutdown started"
    );
    signals.exit_on_next();
    platform.readiness().mark_shutting_down();
    shutdown.trigger();
    // Background tasks stop while the listener drains; both are bounded by the drain timeout.
    match server.await {
        Ok(Ok(())) => tracing::info!("HTTP server drained"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
    let remaining = drain_timeout.saturating_sub(started.elapsed());
    shutdown.wait_for_tasks(remaining).await;
    shutdown.run_hooks(HOOK_TIMEOUT).await;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shutdown complete"
    );
    Ok(())
}

/// The first look at the database, bounded so a server that is down delays the start by
/// seconds, not by the driver's whole server-selection timeout.
async fn first_check(store: &Store, database: &DatabaseConfig) -> Result<(), StoreError> {
    let bound = FIRST_CHECK_BOUND.min(Duration::from_millis(database.server_selection_timeout_ms));
    match tokio::time::timeout(bound, store.check_server(database)).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable {
            reason: format!(
                "no answer from {} within {} ms",
                store.location_for_logs(),
                bound.as_millis()
            ),
        }),
    }
}

/// What start-up does once the database answers: create the declared indexes.
async fn finish_store_start(store: &Store, database: &DatabaseConfig) -> anyhow::Result<()> {
    if database.migrate_on_start {
        keel_app::indexes::create_all(store)
            .await
            .context("creating the declared indexes (database.migrate_on_start)")?;
    }
    Ok(())
}

/// Keel started while the database was down: `/api/ready` reports the component `database`
/// down, and a task retries (with backoff) until the database answers and the start-up work
/// is done, then marks it up. Requests meanwhile answer 503 from the store's errors; the
/// watchers and the job runner retry on their own.
fn wait_for_database(platform: &Platform, store: Store, database: DatabaseConfig) {
    let readiness = platform.readiness().clone();
    readiness.set_down(DATABASE_COMPONENT, "not reachable yet since start");
    let token = platform.shutdown().token();
    let backoff = keel::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    platform.shutdown().spawn("database-start", async move {
        for attempt in 1_u32.. {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(backoff.delay(attempt)) => {}
            }
            let outcome = match first_check(&store, &database).await {
                Ok(()) => finish_store_start(&store, &database).await,
                Err(e) => Err(e.into()),
            };
            match outcome {
                Ok(()) => {
                    readiness.remove(DATABASE_COMPONENT);
                    tracing::info!(
                        backend = store.backend_name(),
                        attempts = attempt,
                        "the database answers: start-up finished"
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!(
                        error = format!("{e:#}"),
                        attempt,
                        "the database still does not answer"
                    );
                    readiness.set_down(DATABASE_COMPONENT, format!("{e:#}"));
                }
            }
        }
    });
}

/// Reloads the non-secret settings on every SIGHUP until shutdown (`keel::reload`).
fn spawn_reload_on_sighup(shutdown: &Shutdown, mut hangups: UnixSignal, reloader: Reloader) {
    let reloader = Arc::new(reloader);
    let token = shutdown.token();
    shutdown.spawn("config-reload", async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                received = hangups.recv() => {
                    if received.is_none() {
                        break;
                    }
                    tracing::info!(signal = "SIGHUP", "reloading the configuration");
                    // Reading files and parsing: off the async workers.
                    let reloader = Arc::clone(&reloader);
                    match tokio::task::spawn_blocking(move || reloader.reload()).await {
                        Ok(outcome) => keel::reload::log_outcome(&outcome),
                        Err(e) => tracing::error!(error = %e, "configuration reload task failed"),
                    }
                }
            }
        }
    });
}
