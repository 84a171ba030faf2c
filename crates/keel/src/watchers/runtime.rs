//! `WatcherRuntime`: runs every registered watcher under one supervisor each.
//!
//! A supervisor loops: load the saved token → open the feed after it → for each event, handle it
//! then save its token → on a feed or store error, back off (exponential, jittered, attempt
//! count in the log) and start over from the saved token. A handler error is retried on the same
//! event in place, with the same backoff, up to `watchers.max_event_attempts`; then the event is
//! set aside as poison (`poison.rs`) and the watcher moves on. A watcher that handled at least one event since its last
//! start is considered to have recovered, so its next failure starts the backoff from the bottom.
//! Shutdown is only observed *between* events: an event being handled is finished and its token
//! saved before the supervisor returns.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::poison::PoisonEvents;
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
                poison: PoisonEvents::new(&self.store),
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
    poison: PoisonEvents,
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
                // are gone from the feed. Say so loudly, reopen from now (nothing more is
                // missed), then let the watcher find by query what the gap could have touched.
                keel_gap_event(name, self.watcher.collection());
                if let Err(error) = self.offsets.clear(name).await {
                    return failed(error.into(), false);
                }
                options.resume_after = None;
                let feed = match collection.watch(options).await {
                    Ok(feed) => feed,
                    Err(error) => return failed(error.into(), false),
                };
                match self.watcher.catch_up().await {
                    Ok(Some(handled)) => {
                        tracing::warn!(watcher = %name, handled, "caught up after the gap by query");
                    }
                    Ok(None) => {
                        tracing::error!(watcher = %name, "this watcher has no catch-up: the events in the gap stay missed");
                    }
                    Err(error) => return failed(error, false),
                }
                feed
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
            if let Err(end) = self.handle_or_set_aside(&event, shutdown).await {
                return end;
            }
            if let Err(error) = self.offsets.save(name, &event.resume_token).await {
                return failed(error.into(), handled_any);
            }
            handled_any = true;
            metrics::counter!("keel_watcher_events_total", "watcher" => name.to_owned())
                .increment(1);
        }
    }

    /// Handles `event`, retrying it in place (the feed stays open) after a backoff while the
    /// handler fails, up to `watchers.max_event_attempts`; then records it as a poison event
    /// and lets the watcher move past it (`poison.rs`). `Err` ends the feed: shutdown (the
    /// event's position is not saved, so it comes again) or a store failure while recording.
    async fn handle_or_set_aside(
        &self,
        event: &crate::store::ChangeEvent,
        shutdown: &CancellationToken,
    ) -> Result<(), FeedEnd> {
        let name = self.watcher.name();
        let backoff = self.config.backoff();
        let mut attempt = 0;
        loop {
            let handled = AssertUnwindSafe(self.watcher.handle(event))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(WatcherError::handler("the handler panicked")));
            let Err(error) = handled else {
                if attempt > 0 {
                    self.health.set(name, WatcherState::Running);
                }
                return Ok(());
            };
            attempt += 1;
            metrics::counter!("keel_watcher_event_failures_total", "watcher" => name.to_owned())
                .increment(1);
            if attempt >= self.config.max_event_attempts {
                return match self.set_aside(event, &error, attempt).await {
                    Ok(()) => {
                        self.health.set(name, WatcherState::Running);
                        Ok(())
                    }
                    Err(store_error) => Err(FeedEnd::Failed {
                        error: store_error.into(),
                        handled_any: false,
                    }),
                };
            }
            let delay = backoff.delay(attempt);
            tracing::error!(
                watcher = %name,
                document_id = %event.id,
                attempt,
                delay_ms = delay.as_millis() as u64,
                %error,
                "watcher handler failed; retrying the event after a backoff"
            );
            self.health.set(
                name,
                WatcherState::RetryingEvent {
                    attempt,
                    error: error.to_string(),
                },
            );
            tokio::select! {
                () = shutdown.cancelled() => return Err(FeedEnd::Shutdown),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Records a poison event (`poison.rs`).
    async fn set_aside(
        &self,
        event: &crate::store::ChangeEvent,
        error: &WatcherError,
        attempts: u32,
    ) -> Result<(), StoreError> {
        let name = self.watcher.name();
        let collection = self.watcher.collection();
        self.poison
            .record(name, collection, event, &error.to_string(), attempts)
            .await?;
        metrics::counter!("keel_watcher_poison_events_total", "watcher" => name.to_owned())
            .increment(1);
        crate::evt!(
            ERROR,
            "watcher",
            "poisonEvent",
            "failure",
            watcher = %name,
            collection = %collection,
            document_id = %event.id,
            attempts,
            error = %error,
            "event set aside after repeated handler failures; the watcher moves on"
        );
        Ok(())
    }
}

/// The loud part of a gap: an error `evt` line and `keel_watcher_gaps_total`.
fn keel_gap_event(name: &str, collection: &str) {
    metrics::counter!("keel_watcher_gaps_total", "watcher" => name.to_owned()).increment(1);
    crate::evt!(
        ERROR,
        "watcher",
        "watcherGap",
        "failure",
        watcher = %name,
        collection = %collection,
        "saved position is older than the change log: events in the gap were missed by the feed; following from now and catching up by query"
    );
}
