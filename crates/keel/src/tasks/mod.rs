//! Tasks: named units of batch work, registered in code, run on a cron schedule by `serve` and
//! once by `keel task run NAME` (the guides' `tasks/*.js` scripts and their template, 14.1).
//!
//! The guide's task script takes a racy lock, logs start and end, and exits on signals. Here the
//! runner (`runner.rs`) does that for every task the same way — lock named after the task (held
//! elsewhere → the run is recorded as `skipped`), `evt {category: "task", name, outcome}` logs, a
//! `task_runs` record, metrics, cancellation on shutdown or a lost lock — so a task is only its
//! work: implement `Task::run`, register it, give it a schedule in `[tasks.NAME]`.

mod config;
mod progress;
mod runner;
mod scheduler;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use config::{TaskConfig, TasksConfig, env_spelling, parse_schedule};
pub use progress::Progress;
pub use runner::{RunOutcome, RunRequest, TASK_RUNS_COLLECTION, TaskRunner, Trigger};
pub use scheduler::Scheduler;

use crate::lock::Fence;
use crate::store::StoreError;

/// A task: its name, and its work.
pub trait Task: Send + Sync + 'static {
    /// Unique; names the task in config, the CLI, logs, metrics and `task_runs`.
    fn name(&self) -> &str;

    /// One line for `keel task list`.
    fn description(&self) -> &str;

    /// The lock the task runs under; its own name unless it must share a lock with other code.
    fn lock_name(&self) -> &str {
        self.name()
    }

    /// Does the work. Check `ctx.is_cancelled()` between items and stop early when it is true
    /// (shutdown, or the lock was lost): the next run picks up where this one stopped, so the
    /// work must be resumable and idempotent.
    fn run<'a>(&'a self, ctx: &'a TaskContext) -> BoxFuture<'a, Result<TaskSummary, TaskError>>;
}

/// What a run did, for `task_runs` and the finish log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSummary {
    pub processed: u64,
    /// Items that could not be processed but did not fail the run (kept for a later look).
    pub rejected: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cancelled")]
    Cancelled,
    #[error("setting tasks.{task}.{key}: {reason}")]
    Setting {
        task: String,
        key: String,
        reason: String,
    },
    #[error("{0}")]
    Failed(String),
}

/// What a running task gets: cancellation, progress, its settings and its fencing token.
pub struct TaskContext {
    name: String,
    shutdown: CancellationToken,
    lock_lost: Option<CancellationToken>,
    fence: Option<Fence>,
    progress: Progress,
    config: TaskConfig,
}

impl TaskContext {
    /// A context outside the runner: no lock, its own cancellation token. For tests, and for
    /// code that runs a task's work inline.
    pub fn detached(name: &str, config: TaskConfig, cancel: CancellationToken) -> Self {
        TaskContext {
            name: name.to_owned(),
            shutdown: cancel,
            lock_lost: None,
            fence: None,
            progress: Progress::quiet(name),
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True once the process is shutting down or the task's lock was lost.
    pub fn is_cancelled(&self) -> bool {
        self.shutdown.is_cancelled() || self.lock_lost.as_ref().is_some_and(|t| t.is_cancelled())
    }

    /// Resolves when `is_cancelled` becomes true.
    pub async fn cancelled(&self) {
        match &self.lock_lost {
            Some(lost) => tokio::select! {
                () = self.shutdown.cancelled() => {}
                () = lost.cancelled() => {}
            },
            None => self.shutdown.cancelled().await,
        }
    }

    /// `Err(Cancelled)` once cancelled: `ctx.check_cancelled()?` between items.
    pub fn check_cancelled(&self) -> Result<(), TaskError> {
        if self.is_cancelled() {
            Err(TaskError::Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The lock's fencing token (`None` for a `--force` run, which holds no lock).
    pub fn fencing_token(&self) -> Option<i64> {
        self.fence.as_ref().map(Fence::token)
    }

    /// The lock's fence for the task's writes (`lock::Fence`; `None` for a `--force` run).
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// The task's own setting `key` from `[tasks.NAME]`, or `None` when absent.
    pub fn setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TaskError> {
        self.config
            .settings
            .get(key)
            .map(|value| {
                setting_value(value).map_err(|e| TaskError::Setting {
                    task: self.name.clone(),
                    key: key.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }
}

/// The tasks of the application, by name.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    tasks: BTreeMap<String, Arc<dyn Task>>,
}

impl TaskRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, task: impl Task) -> &mut Self {
        self.tasks.insert(task.name().to_owned(), Arc::new(task));
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Task>> {
        self.tasks.get(name).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Task>> {
        self.tasks.values()
    }

    pub fn names(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    /// Whether `[tasks.ENTRY]` configures a registered task: by its name, or as an environment
    /// variable spells it ([`env_spelling`]).
    pub fn configures(&self, entry: &str) -> bool {
        self.tasks
            .keys()
            .any(|task| task == entry || env_spelling(task) == entry)
    }
}

/// A setting as `T`. Environment variables give every setting as text, so text that is not a
/// `T` is read once more as the JSON it spells: `KEEL_TASKS__PROCESS_DATA__BATCH_SIZE=50` is
/// the number 50, as `batch_size = 50` in a file is.
fn setting_value<T: DeserializeOwned>(value: &serde_json::Value) -> serde_json::Result<T> {
    serde_json::from_value(value.clone()).or_else(|error| match value {
        serde_json::Value::String(text) => serde_json::from_str(text).map_err(|_| error),
        _ => Err(error),
    })
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    struct Named(&'static str);

    impl Task for Named {
        fn name(&self) -> &str {
            self.0
        }

        fn description(&self) -> &str {
            "a task that does nothing"
        }

        fn run<'a>(&'a self, _: &'a TaskContext) -> BoxFuture<'a, Result<TaskSummary, TaskError>> {
            async { Ok(TaskSummary::default()) }.boxed()
        }
    }

    #[test]
    fn settings_given_as_text_are_read_as_what_the_text_spells() {
        use serde_json::json;
        assert_eq!(setting_value::<i64>(&json!(50)).ok(), Some(50));
        assert_eq!(setting_value::<i64>(&json!("50")).ok(), Some(50));
        assert_eq!(setting_value::<bool>(&json!("true")).ok(), Some(true));
        assert_eq!(
            setting_value::<String>(&json!("50")).ok().as_deref(),
            Some("50")
        );
        let wrong = setting_value::<i64>(&json!("fifty")).unwrap_err();
        assert!(wrong.to_string().contains("string \"fifty\""), "{wrong}");
        assert!(setting_value::<i64>(&json!("1.5")).is_err());
        assert!(setting_value::<i64>(&json!([1])).is_err());
    }

    /// A `[tasks]` entry names a task by its name or by the spelling an environment variable
    /// gives it; anything else configures nothing.
    #[test]
    fn an_entry_configures_a_task_by_its_name_or_its_environment_spelling() {
        let mut registry = TaskRegistry::new();
        registry
            .register(Named("process-data"))
            .register(Named("nightly"));
        assert!(registry.configures("process-data"));
        assert!(registry.configures("process_data"));
        assert!(registry.configures("nightly"));
        assert!(!registry.configures("process-date"));
        assert!(!registry.configures("process"));
    }
}
