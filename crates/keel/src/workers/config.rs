//! `[workers]`: the CPU pool's size and limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problem;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Pool threads; 0 (the default) means one per CPU core.
    pub threads: usize,
    /// Jobs waiting for a thread before new ones are refused as busy (503).
    pub queue_capacity: usize,
    /// Per-job timeout, queueing included.
    pub job_timeout_ms: u64,
    /// Address-space limit (RLIMIT_AS) of an isolated job's child process.
    pub memory_limit_mb: u64,
    /// Computations that run in a child `keel worker-run KIND` process instead of a pool thread.
    pub isolated: Vec<String>,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            queue_capacity: 256,
            job_timeout_ms: 30_000,
            memory_limit_mb: 512,
            isolated: Vec::new(),
        }
    }
}

impl WorkersConfig {
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    pub fn job_timeout(&self) -> Duration {
        Duration::from_millis(self.job_timeout_ms)
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.queue_capacity == 0 {
            problems.push(Problem::new("workers.queue_capacity", "must be at least 1"));
        }
        if self.job_timeout_ms == 0 {
            problems.push(Problem::new("workers.job_timeout_ms", "must be at least 1"));
        }
        if self.memory_limit_mb < 16 {
            problems.push(Problem::new(
                "workers.memory_limit_mb",
                "must be at least 16",
            ));
        }
        problems
    }
}
