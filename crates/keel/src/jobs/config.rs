//! `[jobs]`: how this process consumes the durable job queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problem;

use crate::backoff::Backoff;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs this process runs at once; 0 means as many as the worker pool has threads.
    pub concurrency: usize,
    /// How often an idle runner looks for due jobs enqueued by other processes (jobs enqueued by
    /// this process wake it at once).
    pub poll_interval_ms: u64,
    /// Visibility timeout: a claimed job whose runner stops renewing it is claimable again after
    /// this long. Renewed every third of it while the job runs.
    pub lease_ms: u64,
    /// A job running longer than this fails its attempt.
    pub job_timeout_ms: u64,
    /// Attempts of a job enqueued without its own `max_attempts`.
    pub default_max_attempts: u32,
    /// Retry delays: exponential from `backoff_base_ms`, capped at `backoff_max_ms`, jittered.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            concurrency: 0,
            poll_interval_ms: 1_000,
            lease_ms: 30_000,
            job_timeout_ms: 300_000,
            default_max_attempts: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
        }
    }
}

impl JobsConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn job_timeout(&self) -> Duration {
        Duration::from_millis(self.job_timeout_ms)
    }

    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.backoff_base_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.poll_interval_ms == 0 {
            problems.push(Problem::new("jobs.poll_interval_ms", "must be at least 1"));
        }
        if self.lease_ms < 30 {
            problems.push(Problem::new("jobs.lease_ms", "must be at least 30"));
        }
        if self.default_max_attempts == 0 {
            problems.push(Problem::new(
                "jobs.default_max_attempts",
                "must be at least 1",
            ));
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            problems.push(Problem::new(
                "jobs.backoff_max_ms",
                "must not be below jobs.backoff_base_ms",
            ));
        }
        problems
    }
}
