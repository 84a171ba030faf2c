//! The state of each watcher, for `/api/ready` and the `keel_watcher_up` gauge.
//!
//! A watcher counts as down for readiness when it failed again after its first backoff (attempt
//! 2 or more) or stopped: one failure followed by a quick successful restart is a blip a load
//! balancer should not react to; a watcher that keeps failing is an outage it should see. Before
//! its feed first opens it is down too: a watcher with no stored position follows its feed from
//! the moment it opens, so "ready" must not be said before (a write made in between would never
//! be seen — on a slow server that window is long).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatcherState {
    /// Opening its feed (first start or restart).
    Starting,
    /// Following its feed.
    Running,
    /// Failed `attempt` times in a row; waiting out its backoff.
    Restarting { attempt: u32, error: String },
    /// Its handler failed on one event `attempt` times; retrying it after a backoff until
    /// `watchers.max_event_attempts`, then setting it aside. Not down: one bad event must not
    /// take a replica out of its load balancer.
    RetryingEvent { attempt: u32, error: String },
    /// Shut down.
    Stopped,
}

impl WatcherState {
    fn is_down(&self) -> bool {
        match self {
            WatcherState::Starting | WatcherState::Running | WatcherState::RetryingEvent { .. } => {
                false
            }
            WatcherState::Restarting { attempt, .. } => *attempt >= 2,
            WatcherState::Stopped => true,
        }
    }
}

/// Shared, cheap to clone: the runtime writes it, readiness reads it.
#[derive(Clone, Default)]
pub struct WatcherHealth {
    states: Arc<Mutex<BTreeMap<String, Entry>>>,
}

/// A watcher's current state and whether its feed has ever been open.
#[derive(Debug, Clone)]
struct Entry {
    state: WatcherState,
    has_run: bool,
}

impl Entry {
    fn is_down(&self) -> bool {
        self.state.is_down() || (self.state == WatcherState::Starting && !self.has_run)
    }
}

impl WatcherHealth {
    pub fn set(&self, watcher: &str, state: WatcherState) {
        let up = matches!(state, WatcherState::Running);
        metrics::gauge!("keel_watcher_up", "watcher" => watcher.to_owned()).set(if up {
            1.0
        } else {
            0.0
        });
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let has_run = up || states.get(watcher).is_some_and(|entry| entry.has_run);
        states.insert(watcher.to_owned(), Entry { state, has_run });
    }

    pub fn state(&self, watcher: &str) -> Option<WatcherState> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(watcher)
            .map(|entry| entry.state.clone())
    }

    /// Every watcher that is down, with why: empty means ready.
    pub fn problems(&self) -> Vec<String> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, entry)| entry.is_down())
            .map(|(name, entry)| match &entry.state {
                WatcherState::Restarting { attempt, error } => {
                    format!("watcher {name} failed {attempt} times in a row: {error}")
                }
                WatcherState::Starting => format!("watcher {name} has not opened its feed yet"),
                _ => format!("watcher {name} is stopped"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_is_down_until_its_feed_first_opens_but_not_while_it_reopens() {
        let health = WatcherHealth::default();
        health.set("a", WatcherState::Starting);
        assert_eq!(
            health.problems(),
            vec!["watcher a has not opened its feed yet"]
        );
        health.set("a", WatcherState::Running);
        assert!(health.problems().is_empty());
        health.set(
            "a",
            WatcherState::Restarting {
                attempt: 1,
                error: "feed closed".into(),
            },
        );
        health.set("a", WatcherState::Starting);
        assert!(health.problems().is_empty(), "a restart after a blip");
    }

    #[test]
    fn a_single_failure_is_a_blip_a_repeated_one_is_down() {
        let health = WatcherHealth::default();
        health.set("a", WatcherState::Running);
        health.set("b", WatcherState::Starting);
        health.set("b", WatcherState::Running);
        assert!(health.problems().is_empty());
        let failing = |attempt| WatcherState::Restarting {
            attempt,
            error: "feed closed".into(),
        };
        health.set("a", failing(1));
        assert!(health.problems().is_empty());
        health.set("a", failing(2));
        assert_eq!(
            health.problems(),
            vec!["watcher a failed 2 times in a row: feed closed"]
        );
        health.set("a", WatcherState::Running);
        health.set("b", WatcherState::Stopped);
        assert_eq!(health.problems(), vec!["watcher b is stopped"]);
        health.set(
            "a",
            WatcherState::RetryingEvent {
                attempt: 4,
                error: "bad document".into(),
            },
        );
        assert_eq!(
            health.problems(),
            vec!["watcher b is stopped"],
            "retrying one event is not an outage"
        );
    }
}
