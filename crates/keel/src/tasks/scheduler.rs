//! The scheduler: runs each enabled, scheduled task at its cron times (role `scheduler`).
//!
//! One loop per task: sleep until the next fire time, run, repeat. The next time is computed
//! after a run finishes, so a run longer than the interval skips the missed fire times instead of
//! queueing them. Every replica with the `scheduler` role runs the same loops; the task's lock
//! makes one of them do the work and the others record `skipped`.

use std::sync::Arc;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{RunRequest, TaskRunner};

#[derive(Clone)]
pub struct Scheduler {
    runner: TaskRunner,
}

/// One scheduled task: its name and parsed cron schedule.
struct Entry {
    name: String,
    schedule: cron::Schedule,
}

impl Scheduler {
    pub fn new(runner: TaskRunner) -> Self {
        Scheduler { runner }
    }

    /// The tasks that will run on a schedule, with their cron expressions.
    pub fn scheduled(&self) -> Vec<(String, String)> {
        self.entries()
            .into_iter()
            .map(|e| (e.name, e.schedule.to_string()))
            .collect()
    }

    fn entries(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        for name in self.runner.registry().names() {
            let config = self.runner.config_for(&name);
            if !config.enabled {
                continue;
            }
            match config.parsed_schedule() {
                Ok(Some(schedule)) => entries.push(Entry { name, schedule }),
                Ok(None) => {}
                // Config validation refuses bad expressions at start; this is a second guard.
                Err(error) => tracing::error!(task = %name, %error, "task not scheduled"),
            }
        }
        entries
    }

    /// Runs the schedule until `shutdown`; a task running at that moment sees its context
    /// cancelled and the scheduler waits for it to return.
    pub async fn run(self, shutdown: CancellationToken) {
        let runner = Arc::new(self.runner.clone());
        let mut loops = JoinSet::new();
        for entry in self.entries() {
            tracing::info!(task = %entry.name, schedule = %entry.schedule, "task scheduled");
            loops.spawn(run_on_schedule(
                Arc::clone(&runner),
                entry,
                shutdown.clone(),
            ));
        }
        while let Some(ended) = loops.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "task schedule loop ended abnormally");
            }
        }
    }
}

async fn run_on_schedule(runner: Arc<TaskRunner>, entry: Entry, shutdown: CancellationToken) {
    loop {
        let Some(next) = entry.schedule.upcoming(Utc).next() else {
            tracing::info!(task = %entry.name, "schedule has no further fire times");
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        if let Err(error) = runner.run(&entry.name, RunRequest::scheduled()).await {
            tracing::error!(task = %entry.name, %error, "scheduled run failed to start");
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}
