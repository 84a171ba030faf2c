//! `[tasks.NAME]`: when each task runs, plus settings of the task's own.
//!
//! ```toml
//! [tasks.process-data]
//! schedule = "0 */5 * * * *"   # cron with seconds; a 5-field crontab line is accepted too
//! enabled = true
//! batch_size = 100             # any other key is the task's own setting
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problem;

/// The `[tasks]` table: one entry per task name.
pub type TasksConfig = BTreeMap<String, TaskConfig>;

/// The name a task's table takes from an environment variable, whose name cannot hold a `-`:
/// `KEEL_TASKS__PROCESS_DATA__ENABLED` configures `process-data` as `process_data`.
pub fn env_spelling(task: &str) -> String {
    task.replace('-', "_")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskConfig {
    /// Cron expression (`sec min hour day-of-month month day-of-week [year]`); 5-field crontab
    /// lines get `0` seconds. No schedule: the task only runs from `keel task run`.
    pub schedule: Option<String>,
    /// Whether `serve` runs it on its schedule.
    pub enabled: bool,
    /// Lease of the task's lock; renewed every third of it while the task runs.
    pub lock_ttl_ms: u64,
    /// Without a terminal, log progress every this many items.
    pub progress_every: u64,
    /// The task's own settings (e.g. `batch_size`), read through `TaskContext::setting`.
    #[serde(flatten)]
    pub settings: BTreeMap<String, serde_json::Value>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            schedule: None,
            enabled: true,
            lock_ttl_ms: 60_000,
            progress_every: 1_000,
            settings: BTreeMap::new(),
        }
    }
}

impl TaskConfig {
    pub fn lock_ttl(&self) -> Duration {
        Duration::from_millis(self.lock_ttl_ms)
    }

    /// The parsed schedule; `Ok(None)` when there is none.
    pub fn parsed_schedule(&self) -> Result<Option<cron::Schedule>, String> {
        self.schedule.as_deref().map(parse_schedule).transpose()
    }

    /// Every problem with this task's settings, each naming its key.
    pub fn problems(&self, name: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Err(error) = self.parsed_schedule() {
            problems.push(Problem::new(format!("tasks.{name}.schedule"), error));
        }
        if self.lock_ttl_ms < 30 {
            problems.push(Problem::new(
                format!("tasks.{name}.lock_ttl_ms"),
                "must be at least 30",
            ));
        }
        if self.progress_every == 0 {
            problems.push(Problem::new(
                format!("tasks.{name}.progress_every"),
                "must be at least 1",
            ));
        }
        problems
    }
}

/// Parses a cron expression; a classic 5-field crontab line runs at second 0.
pub fn parse_schedule(expression: &str) -> Result<cron::Schedule, String> {
    let trimmed = expression.trim();
    let with_seconds = if trimmed.split_whitespace().count() == 5 {
        format!("0 {trimmed}")
    } else {
        trimmed.to_owned()
    };
    cron::Schedule::from_str(&with_seconds)
        .map_err(|e| format!("invalid cron expression {expression:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crontab_lines_with_five_fields_run_at_second_zero() {
        let five = parse_schedule("*/5 * * * *").expect("valid crontab line");
        let six = parse_schedule("0 */5 * * * *").expect("valid with seconds");
        assert!(five.timeunitspec_eq(&six));
        assert!(parse_schedule("every five minutes").is_err());
    }

    #[test]
    fn unknown_keys_are_the_tasks_own_settings() {
        let config: TaskConfig =
            toml::from_str("schedule = \"0 0 * * * *\"\nenabled = false\nbatch_size = 250\n")
                .expect("valid task table");
        assert!(!config.enabled);
        assert_eq!(
            config.settings.get("batch_size"),
            Some(&serde_json::json!(250))
        );
        assert!(config.problems("t").is_empty());
        let broken = TaskConfig {
            schedule: Some("61 * * * * *".into()),
            ..TaskConfig::default()
        };
        assert_eq!(broken.problems("t").len(), 1);
    }
}
