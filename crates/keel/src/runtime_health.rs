//! Runtime health: the guides' event-loop lag, for tokio.
//!
//! A probe task asks to wake up every second and measures how late it actually runs. On a
//! healthy runtime that is well under a millisecond; when something blocks a runtime thread
//! (CPU work that should be on the worker pool, a blocking call outside `spawn_blocking`) or the
//! runtime is saturated, every task waits — the probe included — and the delay shows it. The
//! latest delay is the gauge `keel_runtime_scheduling_delay_seconds`, every sample goes to a
//! histogram, and a delay above `telemetry.lag_warn_ms` logs a warning (at most one per
//! `WARN_EVERY`, with how many samples were over meanwhile).
//!
//! Measured directly rather than with tokio-metrics' runtime monitor: that one needs the
//! `tokio_unstable` cfg for the numbers that matter here, and one late wake-up per second is the
//! signal operators act on.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the probe samples.
pub const PROBE_PERIOD: Duration = Duration::from_secs(1);
/// At most one lag warning per this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Sleeps `period` and returns how much later than asked the task ran again.
pub async fn measure_delay(period: Duration) -> Duration {
    let due = Instant::now() + period;
    tokio::time::sleep_until(due).await;
    Instant::now().saturating_duration_since(due)
}

/// Samples the runtime's scheduling delay every `PROBE_PERIOD` until `shutdown`.
pub async fn monitor(lag_warn: Duration, shutdown: CancellationToken) {
    let mut last_warning: Option<Instant> = None;
    let mut over_since_warning: u64 = 0;
    loop {
        let delay = tokio::select! {
            () = shutdown.cancelled() => return,
            delay = measure_delay(PROBE_PERIOD) => delay,
        };
        metrics::gauge!("keel_runtime_scheduling_delay_seconds").set(delay.as_secs_f64());
        metrics::histogram!("keel_runtime_scheduling_delay_seconds_hist")
            .record(delay.as_secs_f64());
        if delay <= lag_warn {
            continue;
        }
        over_since_warning += 1;
        if last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                delay_ms = delay.as_millis() as u64,
                threshold_ms = lag_warn.as_millis() as u64,
                samples_over = over_since_warning,
                "async runtime is lagging: something blocks its threads or it is saturated"
            );
            last_warning = Some(Instant::now());
            over_since_warning = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_thread_shows_as_scheduling_delay() {
        let probe = tokio::spawn(measure_delay(Duration::from_millis(10)));
        // Let the probe register its timer, then block the only runtime thread for 200 ms,
        // as CPU work run in a handler would.
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(200));
        let delay = probe.await.expect("the probe task completes");
        assert!(
            delay >= Duration::from_millis(150),
            "measured only {delay:?}"
        );
    }
}
