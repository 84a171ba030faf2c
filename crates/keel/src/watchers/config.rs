//! `[watchers]`: restart policy of the watcher runtime.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problem;

use crate::backoff::Backoff;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchersConfig {
    /// First restart delay after a failure; doubles per consecutive failure, jittered.
    pub backoff_base_ms: u64,
    /// Longest restart delay.
    pub backoff_max_ms: u64,
    /// Times a handler may fail on one event before the event is set aside in
    /// `watcher_poison_events` and the watcher moves past it.
    pub max_event_attempts: u32,
}

impl Default for WatchersConfig {
    fn default() -> Self {
        Self {
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            max_event_attempts: 5,
        }
    }
}

impl WatchersConfig {
    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.backoff_base_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.backoff_base_ms == 0 {
            problems.push(Problem::new(
                "watchers.backoff_base_ms",
                "must be at least 1",
            ));
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            problems.push(Problem::new(
                "watchers.backoff_max_ms",
                "must not be below watchers.backoff_base_ms",
            ));
        }
        if self.max_event_attempts == 0 {
            problems.push(Problem::new(
                "watchers.max_event_attempts",
                "must be at least 1",
            ));
        }
        problems
    }
}
