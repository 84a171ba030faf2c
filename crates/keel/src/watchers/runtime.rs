//! `WatcherRuntime`: runs every registered watcher under one supervisor each.
//!
//! A supervisor loops: load the saved token → open the feed after it → for each event, handle it
//! then save its token → on any error, back off (exponential, jittered, attempt count in the log)
//! and start over from the saved token. A watcher that handled at least one event since its last
//! start is considered to have recovered, so its next failure starts the backoff from the bottom.
//! Shutdown is only observed *between* events: an event being handled is finished and its token
//! saved before the supervisor returns.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Offsets, Watcher, WatcherError, WatcherHealth, WatcherState, WatchersConfig};
use crate::store::{Store, StoreError};

/// Cheap to clone (the watchers are shared), so a supervisor can restart it.
#[derive(Clone)]
pub struct WatcherRuntime {
    store: Store,
    offsets: Offsets,
    config: WatchersConfig,
    health: WatcherHealth,
    watchers: Vec<Arc<dyn Watcher>>,
}

impl WatcherRuntime {
    pub fn new(store: &Store, config: WatchersConfig) -> Self {
        WatcherRuntime {
            store: store.clone(),
            offsets: Offsets::new(store),
            config,
            health: WatcherHealth::default(),
            watchers: Vec::new(),
        }
    }

    /// Uses `health` instead of a fresh one (so readiness can hold it before the runtime starts).
    pub fn with_health(mut self, health: WatcherHealth) -> Self {
        self.health = health;
        self
    }

    pub fn register(&mut self, watcher: impl Watcher) -> &mut Self {
        self.register_arc(Arc::new(watcher))
    }

    pub fn register_arc(&mut self, watcher: Arc<dyn Watcher>) -> &mut Self {
        self.health.set(watcher.name(), WatcherState::Starting);
        self.watchers.push(watcher);
        self
    }

    pub fn health(&self) -> WatcherHealth {
        self.health.clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.watchers.iter().map(|w| w.name().to_owned()).collect()
    }

    /// Runs every watcher until `shutdown`; returns once all have stopped.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut supervisors = JoinSet::new();
        for watcher in self.watchers {
            let supervisor = Supervisor {
                store: self.store.clone(),
                offsets: self.offsets.clone(),
                config: self.config.clone(),
                health: self.health.clone(),
                watcher,
            };
            supervisors.spawn(supervisor.run(shutdown.clone()));
        }
        while let Some(stopped) = supervisors.join_next().await {
            if let Err(error) = stopped {
                tracing::error!(%error, "watcher supervisor ended abnormally");
            }
        }
    }
}

struct Supervisor {
    store: Store,
    offsets: Offsets,
    config: WatchersConfig,
    health: WatcherHealth,
    watcher: Arc<dyn Watcher>,
}

/// Why one run of a watcher's feed ended.
enum FeedEnd {
    Shutdown,
    Failed {
        error: WatcherError,
        handled_any: bool,
    },
}

impl Supervisor {
    async fn run(self, shutdown: CancellationToken) {
        let name = self.watcher.name().to_owned();
        let backoff = self.config.backoff();
        let mut attempt: u32 = 0;
        tracing::info!(watcher = %name, collection = self.watcher.collection(), "watcher starting");
        loop {
            self.health.set(&name, WatcherState::Starting);
            let (error, handled_any) = match self.follow_feed(&shutdown).await {
                FeedEnd::Shutdown => break,
                FeedEnd::Failed { error, handled_any } => (error, handled_any),
            };
            attempt = if handled_any { 1 } else { attempt + 1 };
            let delay = backoff.delay(attempt);
            metrics::counter!("keel_watcher_restarts_total", "watcher" => name.clone())
                .increment(1);
            tracing::error!(
                watcher = %name,
                attempt,
                delay_ms = delay.as_millis() as u64,
                %error,
                "watcher failed; restarting from its saved position after a backoff"
            );
            self.health.set(
                &name,
                WatcherState::Restarting {
                    attempt,
                    error: error.to_string(),
                },
            );
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        self.health.set(&name, WatcherState::Stopped);
        tracing::info!(watcher = %name, "watcher stopped");
    }

    /// Opens the feed after the saved position and handles events until shutdown or an error.
    async fn follow_feed(&self, shutdown: &CancellationToken) -> FeedEnd {
        let name = self.watcher.name();
        let failed = |error: WatcherError, handled_any| FeedEnd::Failed { error, handled_any };
        let mut options = self.watcher.options();
        options.resume_after = match self.offsets.load(name).await {
            Ok(token) => token,
            Err(error) => return failed(error.into(), false),
        };
        let collection = self.store.collection(self.watcher.collection());
        let mut feed = match collection.watch(options.clone()).await {
            Ok(feed) => feed,
            Err(StoreError::ResumeTokenExpired) => {
                // The change log no longer reaches back to our position: the events in between
                // are gone whatever we do. Say so loudly and follow the feed from now.
                tracing::error!(watcher = %name, "saved position is older than the change log; events in the gap were missed; following from now");
                metrics::counter!("keel_watcher_gaps_total", "watcher" => name.to_owned())
                    .increment(1);
                if let Err(error) = self.offsets.clear(name).await {
                    return failed(error.into(), false);
                }
                options.resume_after = None;
                match collection.watch(options).await {
                    Ok(feed) => feed,
                    Err(error) => return failed(error.into(), false),
                }
            }
            Err(error) => return failed(error.into(), false),
        };
        self.health.set(name, WatcherState::Running);
        let mut handled_any = false;
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => return FeedEnd::Shutdown,
                next = feed.next() => next,
            };
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(error)) => return failed(error.into(), handled_any),
                None => return failed(WatcherError::handler("the change feed ended"), handled_any),
            };
            if let Some(at) = event.cluster_time {
                let lag = bson::DateTime::now().saturating_duration_since(at);
                metrics::histogram!("keel_watcher_lag_seconds", "watcher" => name.to_owned())
                    .record(lag.as_secs_f64());
            }
            let handled = AssertUnwindSafe(self.watcher.handle(&event))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(WatcherError::handler("the handler panicked")));
            if let Err(error) = handled {
                return failed(error, handled_any);
            }
            if let Err(error) = self.offsets.save(name, &event.resume_token).await {
                return failed(error.into(), handled_any);
            }
            handled_any = true;
            metrics::counter!("keel_watcher_events_total", "watcher" => name.to_owned())
                .increment(1);
        }
    }
}
