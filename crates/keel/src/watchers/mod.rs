//! Watchers: long-lived consumers of a collection's change feed (the guides' change-stream
//! watchers, 6.3 and 14.2), run by one runtime under `keel serve --role watchers`.
//!
//! The guide's watcher restarts itself on error with a fixed 5 s `setTimeout`, loses its position
//! when the process restarts, and handles an event twice when two replicas run it. Here:
//!
//! - **position**: after each handled event its resume token is saved in `watcher_offsets`
//!   (`{_id: watcher name, token}`); a (re)started watcher resumes after the last saved token, so
//!   a clean stop and restart neither skips nor replays events.
//! - **failure**: a handler error (or a panic, or a broken feed) restarts the watcher from its
//!   saved token after an exponential backoff with jitter, logged with the attempt count. The
//!   failed event's token was not saved, so the event is delivered again: nothing is lost.
//! - **at-least-once, so handlers claim**: a crash between handling and saving the token replays
//!   that one event, and two replicas running the same watcher both see every event. A handler
//!   therefore makes its effect happen once by an atomic claim in the store (e.g. update
//!   `processed: false → true` and act only when the claim matched).
//! - **readiness**: each watcher reports its state into `WatcherHealth`; `/api/ready` is 503 while
//!   a watcher failed again after its backoff (see `health.rs`) — not while it retries one event.
//! - **poison events**: an event its handler fails on `watchers.max_event_attempts` times is
//!   recorded in `watcher_poison_events` (with the error) and skipped (`poison.rs`).
//! - **gaps**: a saved position older than the change feed reaches back is a loud error event
//!   (`evt watcher/watcherGap`, `keel_watcher_gaps_total`); the watcher reopens its feed from
//!   now and runs its `catch_up` query over the documents the gap could have touched.

mod config;
mod health;
mod offsets;
mod poison;
mod runtime;

use futures::future::BoxFuture;

pub use config::WatchersConfig;
pub use health::{WatcherHealth, WatcherState};
pub use offsets::{OFFSETS_COLLECTION, Offsets};
pub use poison::POISON_COLLECTION;
pub use runtime::WatcherRuntime;

use crate::store::{ChangeEvent, StoreError, WatchOptions};

/// A `catch_up` made of pages of ids: `page(after)` lists the next ids after `after` (in id
/// order; empty when done) and `handle` handles one. Returns how many were handled.
pub async fn catch_up_in_pages<'a>(
    page: impl Fn(Option<bson::Bson>) -> BoxFuture<'a, Result<Vec<bson::Bson>, WatcherError>>,
    handle: impl Fn(bson::Bson) -> BoxFuture<'a, Result<(), WatcherError>>,
) -> Result<Option<u64>, WatcherError> {
    let (mut after, mut handled) = (None, 0);
    loop {
        let ids = page(after.take()).await?;
        let Some(last) = ids.last().cloned() else {
            return Ok(Some(handled));
        };
        for id in ids {
            handle(id).await?;
            handled += 1;
        }
        after = Some(last);
    }
}

/// Why a watcher handler did not handle an event; the watcher restarts and gets it again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WatcherError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Handler(String),
}

impl WatcherError {
    pub fn handler(message: impl Into<String>) -> Self {
        WatcherError::Handler(message.into())
    }
}

/// A watcher: which collection it follows and what it does with each change.
pub trait Watcher: Send + Sync + 'static {
    /// Unique among watchers: names its saved position, its logs and its metrics.
    fn name(&self) -> &str;

    /// The collection whose change feed this watcher follows.
    fn collection(&self) -> &str;

    /// Filter and operation kinds of the feed (the runtime sets `resume_after`).
    fn options(&self) -> WatchOptions {
        WatchOptions::default()
    }

    /// Handles one change. `Ok` moves the saved position past it; `Err` restarts the watcher and
    /// the event comes again, so the effect must be idempotent (claim, then act). After
    /// `watchers.max_event_attempts` failures on one event it is set aside (`poison.rs`).
    fn handle<'a>(&'a self, event: &'a ChangeEvent) -> BoxFuture<'a, Result<(), WatcherError>>;

    /// Catches up after a gap: called when the saved position is older than the change feed
    /// reaches back (`ResumeTokenExpired`), right after the feed reopened from now, so events
    /// from then on are not missed either. It should find, by query, every document the missed
    /// events would have been about and handle it as `handle` would (idempotently); returns how
    /// many it handled. The default has no way to and says so: the gap's events stay missed.
    fn catch_up(&self) -> BoxFuture<'_, Result<Option<u64>, WatcherError>> {
        Box::pin(async { Ok(None) })
    }
}
