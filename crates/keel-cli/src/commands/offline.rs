//! Shared by the commands that work on the store without serving (`task`, `jobs`): load the
//! configuration, start telemetry and a runtime, open the store, build the application's
//! background machinery (nothing started), run the command, then shut down cleanly. Ctrl-C or
//! SIGTERM cancels the command through the platform's shutdown token.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use keel::Platform;
use keel::shutdown::Shutdown;
use keel::shutdown::signals::Signals;
use keel::store::Store;
use keel_app::background::Background;

use super::Global;

const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run<F, Fut>(global: &Global, command: F) -> ExitCode
where
    F: FnOnce(Platform, Background) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let config = match super::load_config(global, &[]) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let (telemetry, runtime) = match super::start_process(&config) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(async move {
        let store = Store::connect(&config.database)
            .await
            .context("opening the store (database.url)")?;
        let shutdown = Shutdown::new();
        let child_program = std::env::current_exe().ok();
        let platform = Platform::new(config, shutdown.clone(), store.clone());
        let background = Background::new(&platform, keel_app::COMPONENTS, child_program);
        let mut signals = Signals::install().context("installing signal handlers")?;
        let result = tokio::select! {
            result = command(platform, background) => result,
            signal = signals.recv() => {
                tracing::warn!(signal, "interrupted; cancelling");
                shutdown.trigger();
                Ok(ExitCode::from(130))
            }
        };
        shutdown.trigger();
        shutdown.wait_for_tasks(HOOK_TIMEOUT).await;
        shutdown.run_hooks(HOOK_TIMEOUT).await;
        if let Err(e) = store.close().await {
            tracing::warn!(error = %e, "closing the store failed");
        }
        result
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    telemetry.shutdown();
    outcome.unwrap_or_else(|e| {
        eprintln!("keel: {e:#}");
        ExitCode::FAILURE
    })
}
