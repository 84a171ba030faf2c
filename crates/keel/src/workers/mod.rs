//! Workers: where CPU-heavy work runs so the async runtime never blocks (the guides' `worker.js`
//! and worker pool). Its unit of work is a *computation*; "job" means only a durable job of
//! `keel::jobs` (whose handlers may run computations here).
//!
//! - `WorkerPool` (`pool.rs`): a fixed set of threads behind a bounded queue, for any closure.
//! - `Computations` (`registry.rs`): named computations, `fn(JSON) -> JSON`, that can run either on
//!   the pool or — for kinds configured as isolated — in a child `keel worker-run KIND` process
//!   with an address-space limit (`isolated.rs`), the guides' `resourceLimits`.
//! - `Workers` (below) is the one value the rest of the system holds: the pool plus the computations
//!   and the isolation settings, built once at start-up from `[workers]`.

mod config;
mod isolated;
mod pool;
mod registry;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use config::WorkersConfig;
pub use isolated::{IsolatedRunner, run_child};
pub use pool::{JobContext, JobHandle, PoolStats, WorkerPool};
pub use registry::{Computations, ComputeFn};

/// Why a job submitted to the workers did not produce its value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    /// The queue is full: shed load (HTTP answers 503 with `Retry-After`).
    #[error("worker pool is busy ({capacity} jobs already queued); retry later")]
    Busy { capacity: usize },
    /// The caller stopped waiting. A thread cannot be killed: the job was abandoned and its thread
    /// stays busy until the job returns (an isolated job's process *is* killed).
    #[error("job timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The job panicked; only this job failed.
    #[error("job panicked: {0}")]
    Panicked(String),
    #[error("worker pool is shut down")]
    ShutDown,
    #[error("unknown computation {0:?}")]
    UnknownKind(String),
    /// The job ran and reported a failure of its own (bad input, a business rule).
    #[error("job {kind} failed: {message}")]
    ComputationFailed { kind: String, message: String },
    /// An isolated job's process went over `workers.memory_limit_mb` and was stopped.
    #[error("isolated job {kind} exceeded its memory limit of {limit_mb} MB and was stopped")]
    MemoryLimitExceeded { kind: String, limit_mb: u64 },
    /// An isolated job's process could not start, crashed, or answered something unreadable.
    #[error("isolated job {kind} failed: {reason}")]
    ChildFailed { kind: String, reason: String },
}

impl WorkerError {
    /// How long a client should wait before retrying, when retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WorkerError::Busy { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// The workers of one process: the pool, the registered computations, and how to isolate the
/// kinds configured as isolated. Cheap to clone.
#[derive(Clone)]
pub struct Workers {
    pool: WorkerPool,
    jobs: Arc<Computations>,
    isolated: Option<IsolatedRunner>,
}

impl Workers {
    /// Starts the pool from `[workers]`. `child_program` is the executable that implements
    /// `worker-run` (the `keel` binary itself: `std::env::current_exe()`); without it every kind
    /// runs on the pool.
    pub fn start(
        config: &WorkersConfig,
        jobs: Computations,
        child_program: Option<PathBuf>,
    ) -> Self {
        let pool = WorkerPool::new(
            config.effective_threads(),
            config.queue_capacity,
            config.job_timeout(),
        );
        let isolated = child_program.map(|program| {
            IsolatedRunner::new(
                program,
                config.memory_limit_mb,
                config.job_timeout(),
                config.effective_threads(),
                config.queue_capacity,
            )
        });
        let mut jobs = jobs;
        jobs.mark_isolated(&config.isolated);
        Workers {
            pool,
            jobs: Arc::new(jobs),
            isolated,
        }
    }

    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    pub fn jobs(&self) -> &Computations {
        &self.jobs
    }

    /// Runs the computation `kind` on `input`: in a child process when the kind is isolated and a
    /// child program is known, on the pool otherwise.
    pub async fn run_kind(
        &self,
        kind: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, WorkerError> {
        let function = self
            .jobs
            .get(kind)
            .ok_or_else(|| WorkerError::UnknownKind(kind.to_owned()))?;
        if let (true, Some(runner)) = (self.jobs.is_isolated(kind), &self.isolated) {
            return runner.run(kind, &input).await;
        }
        let kind_owned = kind.to_owned();
        self.pool
            .run(move |_| function(input))
            .await?
            .map_err(|message| WorkerError::ComputationFailed {
                kind: kind_owned,
                message,
            })
    }

    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.pool.shutdown(deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers() -> Workers {
        let mut jobs = Computations::new();
        jobs.register("square", |v| {
            let n = v.as_i64().ok_or("expected a number")?;
            Ok(serde_json::json!(n * n))
        });
        let config = WorkersConfig {
            threads: 2,
            ..WorkersConfig::default()
        };
        Workers::start(&config, jobs, None)
    }

    #[tokio::test]
    async fn a_registered_kind_runs_on_the_pool() {
        let workers = workers();
        let answer = workers.run_kind("square", serde_json::json!(12)).await;
        assert_eq!(answer.ok(), Some(serde_json::json!(144)));
        assert_eq!(workers.pool().stats().done, 1);
    }

    #[tokio::test]
    async fn unknown_kinds_and_job_errors_are_distinct_errors() {
        let workers = workers();
        assert!(matches!(
            workers.run_kind("cube", serde_json::json!(2)).await,
            Err(WorkerError::UnknownKind(kind)) if kind == "cube"
        ));
        assert!(matches!(
            workers.run_kind("square", serde_json::json!("two")).await,
            Err(WorkerError::ComputationFailed { kind, .. }) if kind == "square"
        ));
    }

    #[test]
    fn only_busy_suggests_a_retry() {
        assert_eq!(
            WorkerError::Busy { capacity: 1 }.retry_after(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            WorkerError::Timeout(Duration::from_secs(1)).retry_after(),
            None
        );
    }
}
