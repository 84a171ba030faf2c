//! Graceful shutdown, mini-redis style: a `CancellationToken` says "stop", a `TaskTracker`
//! learns "everything stopped".
//!
//! Every background task is spawned through `Shutdown` (`spawn` or `spawn_supervised`), so none
//! is detached: at shutdown the token is cancelled, each loop notices at its next `select!`, and
//! `wait_for_tasks` waits (up to a deadline) until the tracker is empty. Components that own a
//! resource register an `on_shutdown` hook; hooks run after the tasks stopped, in reverse
//! registration order (the store, opened first, is closed last). `signals` turns SIGINT/SIGTERM
//! into the trigger, and a second signal into an immediate exit.

pub mod signals;
mod supervise;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

pub use crate::backoff::Backoff;

type Hook = (String, Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>);

/// The process's stop switch and the owner of its background tasks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: every holder of the token sees it cancelled.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the shutdown starts. Use it in `select!` inside loops.
    pub fn triggered(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// A token cancelled at shutdown, for code that only needs the signal.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Spawns an owned task. A panic is logged (never silent); the task is awaited at shutdown.
    pub fn spawn<F>(&self, name: &str, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.to_owned();
        self.tracker.spawn(async move {
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                tracing::error!(task = %name, panic = %panic_message(&*panic), "background task panicked");
            }
        })
    }

    /// Spawns a long-lived loop that is restarted with backoff when it fails or panics, until
    /// shutdown. `make_loop` is called for each (re)start with the shutdown token; the loop
    /// should return when the token is cancelled. A loop that returns `Ok` is finished.
    pub fn spawn_supervised<F, Fut, E>(&self, name: &str, backoff: Backoff, make_loop: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let token = self.token.clone();
        let name = name.to_owned();
        self.tracker
            .spawn(supervise::supervise(name, backoff, token, make_loop));
    }

    /// Registers work to do at shutdown, after background tasks stopped. Hooks run in reverse
    /// registration order, one at a time.
    pub fn on_shutdown<F, Fut>(&self, name: &str, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send> =
            Box::new(move || Box::pin(hook()));
        self.hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.to_owned(), hook));
    }

    /// Waits until every spawned task has finished, or `deadline` passes (then `false`).
    /// No new task may be spawned afterwards.
    pub async fn wait_for_tasks(&self, deadline: Duration) -> bool {
        self.tracker.close();
        let finished = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                still_running = self.tracker.len(),
                "background tasks did not stop within the shutdown deadline"
            );
        }
        finished
    }

    /// Runs the registered hooks, newest first, each bounded by `per_hook`.
    pub async fn run_hooks(&self, per_hook: Duration) {
        let hooks = std::mem::take(&mut *self.hooks.lock().unwrap_or_else(PoisonError::into_inner));
        for (name, hook) in hooks.into_iter().rev() {
            tracing::debug!(hook = %name, "running shutdown hook");
            match tokio::time::timeout(per_hook, AssertUnwindSafe(hook()).catch_unwind()).await {
                Ok(Ok(())) => {}
                Ok(Err(panic)) => {
                    tracing::error!(hook = %name, panic = %panic_message(&*panic), "shutdown hook panicked")
                }
                Err(_) => tracing::warn!(hook = %name, "shutdown hook timed out"),
            }
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn hooks_run_in_reverse_registration_order() {
        let shutdown = Shutdown::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        for name in ["store", "scheduler", "watchers"] {
            let order = order.clone();
            shutdown.on_shutdown(
                name,
                move || async move { order.lock().unwrap().push(name) },
            );
        }
        shutdown.run_hooks(Duration::from_secs(1)).await;
        assert_eq!(*order.lock().unwrap(), ["watchers", "scheduler", "store"]);
    }

    #[tokio::test]
    async fn tasks_stop_when_triggered_and_are_awaited() {
        let shutdown = Shutdown::new();
        let stopped = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let (token, stopped) = (shutdown.token(), stopped.clone());
            shutdown.spawn("worker", async move {
                token.cancelled().await;
                stopped.fetch_add(1, Ordering::SeqCst);
            });
        }
        shutdown.trigger();
        assert!(shutdown.wait_for_tasks(Duration::from_secs(5)).await);
        assert_eq!(stopped.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_task_that_ignores_shutdown_is_reported_at_the_deadline() {
        let shutdown = Shutdown::new();
        shutdown.spawn("stubborn", futures::future::pending());
        shutdown.trigger();
        assert!(!shutdown.wait_for_tasks(Duration::from_millis(50)).await);
    }

    #[tokio::test]
    async fn a_panicking_task_does_not_take_the_others_down() {
        let shutdown = Shutdown::new();
        shutdown.spawn("boom", async { panic!("boom") });
        let finished = shutdown.spawn("fine", async {});
        assert!(finished.await.is_ok());
        shutdown.trigger();
        assert!(shutdown.wait_for_tasks(Duration::from_secs(5)).await);
    }
}
