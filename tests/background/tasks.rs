//! The task runner: lock per task, `task_runs` records, outcomes and exit codes, cancellation,
//! and the cron scheduler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bson::doc;
use futures::FutureExt;
use futures::future::BoxFuture;
use keel::lock::Locks;
use keel::store::FindOptions;
use keel::tasks::{
    RunOutcome, RunRequest, Scheduler, TASK_RUNS_COLLECTION, Task, TaskConfig, TaskContext,
    TaskError, TaskRegistry, TaskRunner, TaskSummary, TasksConfig,
};
use tokio_util::sync::CancellationToken;

use crate::support::eventually;
use crate::support::store::on_every_backend;

/// Counts to `items`, reporting progress; or fails, panics, or waits for cancellation.
struct Counter {
    name: &'static str,
    items: u64,
    behaviour: Behaviour,
    started: Arc<AtomicBool>,
}

#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    Fail,
    Panic,
    WaitForCancel,
}

impl Counter {
    fn new(name: &'static str, behaviour: Behaviour) -> Self {
        Counter {
            name,
            items: 5,
            behaviour,
            started: Arc::default(),
        }
    }
}

impl Task for Counter {
    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        "counts items for the tests"
    }

    fn run<'a>(&'a self, ctx: &'a TaskContext) -> BoxFuture<'a, Result<TaskSummary, TaskError>> {
        async move {
            self.started.store(true, Ordering::SeqCst);
            match self.behaviour {
                Behaviour::Succeed => {
                    ctx.progress().set_total(self.items);
                    for _ in 0..self.items {
                        ctx.check_cancelled()?;
                        ctx.progress().inc(1);
                    }
                    Ok(TaskSummary {
                        processed: ctx.progress().processed(),
                        rejected: 0,
                    })
                }
                Behaviour::Fail => Err(TaskError::Failed("the source is unreachable".into())),
                Behaviour::Panic => panic!("a bug in the task"),
                Behaviour::WaitForCancel => {
                    ctx.progress().inc(2);
                    ctx.cancelled().await;
                    Err(TaskError::Cancelled)
                }
            }
        }
        .boxed()
    }
}

fn runner(
    store: &keel::store::Store,
    tasks: Vec<Counter>,
    config: TasksConfig,
    shutdown: CancellationToken,
) -> TaskRunner {
    let mut registry = TaskRegistry::new();
    for task in tasks {
        registry.register(task);
    }
    TaskRunner::new(store, registry, config, shutdown)
}

async fn runs_of(store: &keel::store::Store, task: &str) -> anyhow::Result<Vec<bson::Document>> {
    Ok(store
        .collection(TASK_RUNS_COLLECTION)
        .find(
            doc! { "task": task },
            FindOptions::default().sort(doc! { "startedAt": 1 }),
        )
        .await?)
}

#[tokio::test]
async fn a_run_is_recorded_with_its_outcome_and_count() -> anyhow::Result<()> {
    on_every_backend(
        "a_run_is_recorded_with_its_outcome_and_count",
        |store| async move {
            let runner = runner(
                &store,
                vec![Counter::new("count", Behaviour::Succeed)],
                TasksConfig::new(),
                CancellationToken::new(),
            );
            let outcome = runner
                .run("count", RunRequest::manual(false, false))
                .await?;
            assert_eq!(
                outcome,
                RunOutcome::Success(TaskSummary {
                    processed: 5,
                    rejected: 0
                })
            );
            assert_eq!(outcome.exit_code(), 0);
            let runs = runs_of(&store, "count").await?;
            assert_eq!(runs.len(), 1);
            assert_eq!(runs[0].get_str("outcome")?, "success");
            assert_eq!(runs[0].get_i64("processed")?, 5);
            assert_eq!(runs[0].get_str("trigger")?, "manual");
            assert!(runs[0].get_datetime("endedAt")? >= runs[0].get_datetime("startedAt")?);
            // The lock was released: the next run is not skipped.
            assert!(matches!(
                runner.run("count", RunRequest::scheduled()).await?,
                RunOutcome::Success(_)
            ));
            assert!(runner.run("nope", RunRequest::scheduled()).await.is_err());
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_run_while_the_lock_is_held_is_skipped_and_recorded_unless_forced() -> anyhow::Result<()>
{
    on_every_backend(
        "a_run_while_the_lock_is_held_is_skipped_and_recorded_unless_forced",
        |store| async move {
            let runner = runner(
                &store,
                vec![Counter::new("guarded", Behaviour::Succeed)],
                TasksConfig::new(),
                CancellationToken::new(),
            );
            let held = Locks::new(&store)
                .acquire("guarded", Duration::from_secs(60))
                .await?
                .expect("the lock is free");
            let outcome = runner.run("guarded", RunRequest::scheduled()).await?;
            assert!(matches!(outcome, RunOutcome::Skipped { holder: Some(_) }));
            assert_eq!(outcome.exit_code(), 3);
            let forced = runner
                .run("guarded", RunRequest::manual(true, false))
                .await?;
            assert!(
                matches!(forced, RunOutcome::Success(_)),
                "--force skips the lock"
            );
            let runs = runs_of(&store, "guarded").await?;
            let outcomes: Vec<(&str, bool)> = runs
                .iter()
                .map(|r| {
                    (
                        r.get_str("outcome").unwrap_or("?"),
                        r.get_bool("forced").unwrap_or(false),
                    )
                })
                .collect();
            assert_eq!(outcomes, vec![("skipped", false), ("success", true)]);
            assert!(
                held.release().await?,
                "a forced run leaves the real holder's lock alone"
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_tick_already_run_by_another_replica_is_skipped_even_after_its_lock_was_released()
-> anyhow::Result<()> {
    on_every_backend(
        "a_tick_already_run_by_another_replica_is_skipped_even_after_its_lock_was_released",
        |store| async move {
            // Two replicas' runners on one store; replica B's scheduler fires late, after A's
            // run of the same tick has finished and released the lock.
            let replica = || {
                runner(
                    &store,
                    vec![Counter::new("ticking", Behaviour::Succeed)],
                    TasksConfig::new(),
                    CancellationToken::new(),
                )
            };
            let (a, b) = (replica(), replica());
            let tick = bson::DateTime::from_millis(1_700_000_000_000);
            let first = a.run("ticking", RunRequest::scheduled_at(tick)).await?;
            assert!(matches!(first, RunOutcome::Success(_)), "{first:?}");
            let late = b.run("ticking", RunRequest::scheduled_at(tick)).await?;
            assert!(matches!(late, RunOutcome::Skipped { .. }), "{late:?}");
            // The next tick runs, and a manual run is not held back by the last tick.
            let next = bson::DateTime::from_millis(1_700_000_001_000);
            let second = b.run("ticking", RunRequest::scheduled_at(next)).await?;
            assert!(matches!(second, RunOutcome::Success(_)), "{second:?}");
            let manual = a.run("ticking", RunRequest::manual(false, false)).await?;
            assert!(matches!(manual, RunOutcome::Success(_)), "{manual:?}");
            let mut outcomes: Vec<String> = runs_of(&store, "ticking")
                .await?
                .iter()
                .map(|r| r.get_str("outcome").unwrap_or("?").to_owned())
                .collect();
            outcomes.sort();
            assert_eq!(outcomes, ["skipped", "success", "success", "success"]);
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn failing_and_panicking_tasks_are_recorded_as_failures() -> anyhow::Result<()> {
    on_every_backend("failing_and_panicking_tasks_are_recorded_as_failures", |store| async move {
        let runner = runner(
            &store,
            vec![
                Counter::new("failing", Behaviour::Fail),
                Counter::new("buggy", Behaviour::Panic),
            ],
            TasksConfig::new(),
            CancellationToken::new(),
        );
        let failed = runner.run("failing", RunRequest::scheduled()).await?;
        assert_eq!(failed.exit_code(), 1);
        let runs = runs_of(&store, "failing").await?;
        assert_eq!(runs[0].get_str("outcome")?, "failure");
        assert_eq!(runs[0].get_str("error")?, "the source is unreachable");
        let panicked = runner.run("buggy", RunRequest::scheduled()).await?;
        assert!(
            matches!(panicked, RunOutcome::Failure { ref error, .. } if error.contains("panicked"))
        );
        // A panicking run still released its lock.
        assert!(Locks::new(&store).holder("buggy").await?.is_none());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn shutdown_cancels_a_running_task_and_the_run_says_so() -> anyhow::Result<()> {
    on_every_backend(
        "shutdown_cancels_a_running_task_and_the_run_says_so",
        |store| async move {
            let shutdown = CancellationToken::new();
            let task = Counter::new("long", Behaviour::WaitForCancel);
            let started = Arc::clone(&task.started);
            let runner = runner(&store, vec![task], TasksConfig::new(), shutdown.clone());
            let run = tokio::spawn({
                let runner = runner.clone();
                async move { runner.run("long", RunRequest::scheduled()).await }
            });
            eventually("the task to start", || async {
                Ok(started.load(Ordering::SeqCst).then_some(()))
            })
            .await;
            shutdown.cancel();
            let outcome = run.await??;
            assert_eq!(outcome, RunOutcome::Cancelled { processed: 2 });
            assert_eq!(
                runs_of(&store, "long").await?[0].get_str("outcome")?,
                "cancelled"
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn the_scheduler_runs_enabled_tasks_on_their_cron_schedule_only() -> anyhow::Result<()> {
    on_every_backend(
        "the_scheduler_runs_enabled_tasks_on_their_cron_schedule_only",
        |store| async move {
            let mut config = TasksConfig::new();
            let every_second = TaskConfig {
                schedule: Some("* * * * * *".into()),
                ..TaskConfig::default()
            };
            config.insert("ticking".into(), every_second.clone());
            config.insert(
                "disabled".into(),
                TaskConfig {
                    enabled: false,
                    ..every_second
                },
            );
            let shutdown = CancellationToken::new();
            let runner = runner(
                &store,
                vec![
                    Counter::new("ticking", Behaviour::Succeed),
                    Counter::new("disabled", Behaviour::Succeed),
                    Counter::new("unscheduled", Behaviour::Succeed),
                ],
                config,
                shutdown.clone(),
            );
            let scheduler = Scheduler::new(runner);
            assert_eq!(scheduler.scheduled().len(), 1);
            let running = tokio::spawn(scheduler.run(shutdown.clone()));
            eventually("two scheduled runs", || async {
                Ok((runs_of(&store, "ticking").await?.len() >= 2).then_some(()))
            })
            .await;
            shutdown.cancel();
            running.await?;
            for run in runs_of(&store, "ticking").await? {
                assert_eq!(run.get_str("trigger")?, "schedule");
            }
            assert!(runs_of(&store, "disabled").await?.is_empty());
            assert!(runs_of(&store, "unscheduled").await?.is_empty());
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn the_scheduler_follows_a_replaced_task_configuration() -> anyhow::Result<()> {
    on_every_backend("the_scheduler_follows_a_replaced_task_configuration", |store| async move {
        let every_second = TaskConfig {
            schedule: Some("* * * * * *".into()),
            ..TaskConfig::default()
        };
        let mut before = TasksConfig::new();
        before.insert("ticking".into(), every_second.clone());
        let shutdown = CancellationToken::new();
        let runner = runner(
            &store,
            vec![
                Counter::new("ticking", Behaviour::Succeed),
                Counter::new("later", Behaviour::Succeed),
            ],
            before,
            shutdown.clone(),
        );
        let scheduler = Scheduler::new(runner.clone());
        let running = tokio::spawn(scheduler.clone().run(shutdown.clone()));
        eventually("a scheduled run of `ticking`", || async {
            Ok((!runs_of(&store, "ticking").await?.is_empty()).then_some(()))
        })
        .await;

        // The reload: `ticking` disabled, `later` gets a schedule.
        let mut after = TasksConfig::new();
        let disabled = TaskConfig {
            enabled: false,
            ..every_second.clone()
        };
        after.insert("ticking".into(), disabled);
        after.insert("later".into(), every_second);
        runner.replace_config(after);
        let scheduled = scheduler.scheduled();
        assert_eq!(scheduled, vec![("later".into(), "* * * * * *".into())]);

        // Two runs of `later` take at least one second: any `ticking` run begun before the
        // replacement has ended; from then on `ticking` must not run again.
        let later_runs = |count: usize| {
            let store = &store;
            move || async move { Ok((runs_of(store, "later").await?.len() >= count).then_some(())) }
        };
        eventually("two scheduled runs of `later`", later_runs(2)).await;
        let ticking_runs = runs_of(&store, "ticking").await?.len();
        eventually("a third scheduled run of `later`", later_runs(3)).await;
        assert_eq!(runs_of(&store, "ticking").await?.len(), ticking_runs);
        shutdown.cancel();
        running.await?;
        for run in runs_of(&store, "later").await? {
            assert_eq!(run.get_str("trigger")?, "schedule");
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_runner_follows_the_tasks_table_of_a_published_configuration() -> anyhow::Result<()> {
    on_every_backend(
        "the_runner_follows_the_tasks_table_of_a_published_configuration",
        |store| async move {
            let platform = keel::Platform::new(
                keel::config::Config::default(),
                keel::shutdown::Shutdown::new(),
                store.clone(),
            );
            let shutdown = CancellationToken::new();
            let runner = runner(
                &store,
                vec![Counter::new("process-data", Behaviour::Succeed)],
                TasksConfig::new(),
                shutdown.clone(),
            );
            let following = tokio::spawn({
                let runner = runner.clone();
                let configs = platform.watch_config();
                let shutdown = shutdown.clone();
                async move { runner.follow(configs, shutdown).await }
            });
            let mut next = keel::config::Config::default();
            let reloaded = TaskConfig {
                schedule: Some("0 */5 * * * *".into()),
                enabled: false,
                settings: [("batch_size".to_owned(), serde_json::json!(25))].into(),
                ..TaskConfig::default()
            };
            // Environment variables name it `process_data`; the runner accepts both spellings.
            next.tasks.insert("process_data".into(), reloaded.clone());
            platform.replace_config(next);
            let config = eventually("the runner to see the new [tasks] table", || async {
                let config = runner.config_for("process-data");
                Ok((config != TaskConfig::default()).then_some(config))
            })
            .await;
            assert_eq!(config, reloaded);
            shutdown.cancel();
            following.await?;
            Ok(())
        },
    )
    .await
}
