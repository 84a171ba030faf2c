//! `keel jobs list|retry|purge`: the durable job queue, for operators.

use std::process::ExitCode;

use clap::Subcommand;
use keel::jobs::{JobError, JobStatus};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs with this status: queued, running, done or dead.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a dead job back in the queue with a fresh set of attempts.
    Retry {
        /// The job's id (see `keel jobs list`).
        id: String,
    },
    /// Delete every job with the given status (dead or done only).
    Purge {
        #[arg(long)]
        status: String,
    },
}

pub fn run(global: &Global, command: JobsCommand) -> ExitCode {
    super::offline::run(global, |_platform, background| async move {
        let queue = &background.jobs();
        let outcome = match command {
            JobsCommand::List { status, limit } => {
                let status = status.as_deref().map(JobStatus::parse).transpose();
                match status {
                    Ok(status) => queue.list(status, limit).await.map(|jobs| {
                        for job in jobs {
                            let run_at = job.run_at.try_to_rfc3339_string().unwrap_or_default();
                            println!(
                                "{}  {}  {}  attempts {}/{}  run at {}{}",
                                job.id,
                                job.kind,
                                job.status,
                                job.attempts,
                                job.max_attempts,
                                run_at,
                                job.last_error
                                    .map(|e| format!("  last error: {e}"))
                                    .unwrap_or_default()
                            );
                        }
                    }),
                    Err(error) => Err(error),
                }
            }
            JobsCommand::Retry { id } => queue
                .retry(&id)
                .await
                .map(|()| println!("{id}: queued again")),
            JobsCommand::Purge { status } => match JobStatus::parse(&status) {
                Ok(status) => queue
                    .purge(status)
                    .await
                    .map(|n| println!("{n} {status} jobs deleted")),
                Err(error) => Err(error),
            },
        };
        Ok(match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(
                error @ (JobError::InvalidStatus(_) | JobError::Invalid(_) | JobError::NotFound(_)),
            ) => {
                eprintln!("keel jobs: {error}");
                ExitCode::from(2)
            }
            Err(error) => {
                eprintln!("keel jobs: {error}");
                ExitCode::FAILURE
            }
        })
    })
}
