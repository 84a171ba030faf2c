//! The scheduler: runs each enabled, scheduled task at its cron times (role `scheduler`).
//!
//! One loop per registered task: read the task's schedule and `enabled` from the runner's live
//! `[tasks]` table, sleep until the next fire time, run, repeat. The next time is computed after
//! a run finishes, so a run longer than the interval skips the missed fire times instead of
//! queueing them. When the table is replaced (SIGHUP reload) a sleeping loop wakes and reads its
//! task's settings again: a task newly disabled (or without a schedule) waits for a later change,
//! a new cron expression takes effect from its next fire time. A run in progress is never
//! interrupted by a reload; the loop reads the new settings once it finishes. Every replica with
//! the `scheduler` role runs the same loops; the task's lock, taken for the fire time
//! (`Locks::acquire_for_tick`), makes one of them do each tick's work and the others record
//! `skipped` — even one that fires after the first run has finished.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{RunRequest, TaskRunner, TasksConfig};

#[derive(Clone)]
pub struct Scheduler {
    runner: TaskRunner,
}

impl Scheduler {
    pub fn new(runner: TaskRunner) -> Self {
        Scheduler { runner }
    }

    /// The tasks that run on a schedule now, with their cron expressions.
    pub fn scheduled(&self) -> Vec<(String, String)> {
        self.runner
            .registry()
            .names()
            .into_iter()
            .filter_map(|name| {
                let schedule = schedule_of(&self.runner, &name)?;
                Some((name, schedule.to_string()))
            })
            .collect()
    }

    /// Runs the schedule until `shutdown`; a task running at that moment sees its context
    /// cancelled and the scheduler waits for it to return.
    pub async fn run(self, shutdown: CancellationToken) {
        let runner = Arc::new(self.runner.clone());
        let mut loops = JoinSet::new();
        for name in self.runner.registry().names() {
            loops.spawn(run_on_schedule(
                Arc::clone(&runner),
                name,
                runner.watch_config(),
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

/// Task `name`'s schedule as configured now; `None` when disabled or unscheduled.
fn schedule_of(runner: &TaskRunner, name: &str) -> Option<cron::Schedule> {
    let config = runner.config_for(name);
    if !config.enabled {
        return None;
    }
    match config.parsed_schedule() {
        Ok(schedule) => schedule,
        // Config validation refuses bad expressions at start and on reload; a second guard.
        Err(error) => {
            tracing::error!(task = %name, %error, "task not scheduled");
            None
        }
    }
}

async fn run_on_schedule(
    runner: Arc<TaskRunner>,
    name: String,
    mut changes: watch::Receiver<Arc<TasksConfig>>,
    shutdown: CancellationToken,
) {
    let mut logged: Option<String> = None;
    loop {
        let schedule = schedule_of(&runner, &name);
        let expression = schedule.as_ref().map(ToString::to_string);
        if expression != logged {
            match &expression {
                Some(schedule) => tracing::info!(task = %name, %schedule, "task scheduled"),
                None if logged.is_some() => tracing::info!(task = %name, "task unscheduled"),
                None => {}
            }
            logged = expression;
        }
        let next = schedule.as_ref().and_then(|s| s.upcoming(Utc).next());
        if schedule.is_some() && next.is_none() {
            tracing::info!(task = %name, "schedule has no further fire times");
        }
        // Without a fire time, only a configuration change (or shutdown) wakes the loop.
        let wait = next.map(|next| (next - Utc::now()).to_std().unwrap_or_default());
        tokio::select! {
            () = shutdown.cancelled() => return,
            Ok(()) = changes.changed() => continue,
            () = sleep_or_forever(wait) => {}
        }
        let request = match next {
            Some(tick) => {
                RunRequest::scheduled_at(bson::DateTime::from_millis(tick.timestamp_millis()))
            }
            None => RunRequest::scheduled(),
        };
        if let Err(error) = runner.run(&name, request).await {
            tracing::error!(task = %name, %error, "scheduled run failed to start");
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

async fn sleep_or_forever(wait: Option<std::time::Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}
