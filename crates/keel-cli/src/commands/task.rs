//! `keel task list` and `keel task run NAME [--force]`: the tasks of the application, run once
//! now with the same lock, logs and `task_runs` record as a scheduled run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Subcommand;
use keel::tasks::{RunOutcome, RunRequest};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List the tasks: description, lock, schedule, and the last run.
    List,
    /// Run one task now. Exit 0 on success, 1 on failure (or cancelled), 3 when its lock is held
    /// elsewhere (the run is recorded as skipped).
    Run {
        /// The task's name (see `keel task list`).
        name: String,
        /// Run WITHOUT taking the task's lock. Only for when you know the holder is gone (a
        /// crashed host whose lease has not expired yet): if it is in fact still running, both
        /// runs work at the same time — the double processing the lock exists to prevent.
        /// Recorded as forced in task_runs.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(global: &Global, command: TaskCommand) -> ExitCode {
    super::offline::run(global, |platform, background| async move {
        match command {
            TaskCommand::List => list(&platform, &background).await,
            TaskCommand::Run { name, force } => {
                let request = RunRequest::manual(force, std::io::stderr().is_terminal());
                let outcome = background.tasks.run(&name, request).await?;
                match &outcome {
                    RunOutcome::Success(summary) => {
                        println!(
                            "{name}: success, {} processed, {} rejected",
                            summary.processed, summary.rejected
                        )
                    }
                    RunOutcome::Failure { error, processed } => {
                        println!("{name}: failure after {processed} processed: {error}")
                    }
                    RunOutcome::Skipped { holder } => println!(
                        "{name}: skipped, its lock is held by {}",
                        holder.as_deref().unwrap_or("another process")
                    ),
                    RunOutcome::Cancelled { processed } => {
                        println!("{name}: cancelled after {processed} processed")
                    }
                }
                Ok(ExitCode::from(
                    u8::try_from(outcome.exit_code()).unwrap_or(1),
                ))
            }
        }
    })
}

async fn list(
    platform: &keel::Platform,
    background: &keel_app::background::Background,
) -> anyhow::Result<ExitCode> {
    let config = platform.config();
    for task in background.tasks.registry().iter() {
        let name = task.name();
        let settings = background.tasks.config_for(name);
        let schedule = match (&settings.schedule, settings.enabled) {
            (Some(schedule), true) => schedule.clone(),
            (Some(schedule), false) => format!("{schedule} (disabled)"),
            (None, _) => "manual only".to_owned(),
        };
        let last = background.tasks.recent_runs(name, 1).await?;
        let last = last.first().map_or_else(
            || "never run".to_owned(),
            |run| {
                let at = run
                    .get_datetime("startedAt")
                    .ok()
                    .and_then(|d| d.try_to_rfc3339_string().ok());
                format!(
                    "last run {} at {}",
                    run.get_str("outcome").unwrap_or("?"),
                    at.as_deref().unwrap_or("?")
                )
            },
        );
        println!(
            "{name}\n  {}\n  lock: {}  schedule: {schedule}\n  {last}",
            task.description(),
            task.lock_name()
        );
    }
    let unknown: Vec<&String> = config
        .tasks
        .keys()
        .filter(|name| !background.tasks.registry().configures(name))
        .collect();
    if !unknown.is_empty() {
        eprintln!("warning: configured but not registered: {unknown:?}");
    }
    Ok(ExitCode::SUCCESS)
}
