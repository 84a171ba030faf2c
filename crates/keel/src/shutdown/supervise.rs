//! Supervised loops: a long-lived background loop that fails or panics is logged and restarted
//! after a backoff, so one bad event never silently ends a watcher or the scheduler.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

pub(super) async fn supervise<F, Fut, E>(
    name: String,
    backoff: Backoff,
    token: CancellationToken,
    make_loop: F,
) where
    F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    // Restart delays follow `backoff` (exponential, jittered), from the bottom again after a
    // run that lasted `backoff.max`.
    let mut attempt: u32 = 0;
    let mut restarts: u64 = 0;
    while !token.is_cancelled() {
        let started = Instant::now();
        let outcome = AssertUnwindSafe(make_loop(token.clone()))
            .catch_unwind()
            .await;
        if token.is_cancelled() {
            break;
        }
        if started.elapsed() >= backoff.max {
            attempt = 0;
        }
        attempt += 1;
        let delay = backoff.delay(attempt);
        match outcome {
            Ok(Ok(())) => {
                tracing::info!(task = %name, "supervised loop finished");
                break;
            }
            Ok(Err(error)) => {
                tracing::error!(task = %name, error = %error, restarts, retry_in_ms = delay.as_millis() as u64, "supervised loop failed; restarting");
            }
            Err(panic) => {
                let panic = super::panic_message(&*panic);
                tracing::error!(task = %name, panic = %panic, restarts, retry_in_ms = delay.as_millis() as u64, "supervised loop panicked; restarting");
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        restarts += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::shutdown::Shutdown;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_restarted_until_shutdown() {
        let shutdown = Shutdown::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (notify_tx, mut notify_rx) = tokio::sync::mpsc::channel::<usize>(16);
        let counter = runs.clone();
        shutdown.spawn_supervised("flaky", Backoff::default(), move |token| {
            let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let notify = notify_tx.clone();
            async move {
                let _ = notify.send(run).await;
                if run < 3 {
                    panic!("flaky run {run}");
                }
                token.cancelled().await;
                Ok::<(), String>(())
            }
        });
        let mut seen = Vec::new();
        while let Some(run) = notify_rx.recv().await {
            seen.push(run);
            if run == 3 {
                break;
            }
        }
        assert_eq!(seen, [1, 2, 3]);
        shutdown.trigger();
        assert!(shutdown.wait_for_tasks(Duration::from_secs(5)).await);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "not restarted after shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_loop_backs_off_exponentially() {
        let shutdown = Shutdown::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::time::Instant>(16);
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        shutdown.spawn_supervised("failing", backoff, move |_token| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(tokio::time::Instant::now()).await;
                Err::<(), _>("nope")
            }
        });
        let mut starts = Vec::new();
        for _ in 0..4 {
            starts.push(rx.recv().await.unwrap());
        }
        // 1 s, 2 s, 4 s ceilings, each jittered into its upper half.
        let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, ceiling) in gaps.iter().zip([1, 2, 4]) {
            let ceiling = Duration::from_secs(ceiling);
            assert!(
                *gap >= ceiling / 2 && *gap <= ceiling,
                "{gap:?} for {ceiling:?}"
            );
        }
        shutdown.trigger();
        assert!(shutdown.wait_for_tasks(Duration::from_secs(5)).await);
    }
}
