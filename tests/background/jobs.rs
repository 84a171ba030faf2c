//! The durable job queue: retries, dead letters, lease expiry, exclusive claims.
//!
//! Most cases run the queue's work with `JobRunner::run_pending`, which returns once every due
//! job has run: no waiting on a poll interval. The cases about runners themselves (a crashed
//! runner's job taken over, two runners never sharing a job) run real background runners.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bson::doc;
use futures::FutureExt;
use keel::jobs::{JobHandlers, JobQueue, JobRunner, JobStatus, JobsConfig, NewJob};
use keel::store::Store;
use keel::workers::{Computations, Workers, WorkersConfig};
use tokio_util::sync::CancellationToken;

use crate::support::eventually;
use crate::support::store::on_every_backend;

/// A queue whose retries are due at once (no backoff), so `run_pending` runs every attempt of a
/// failing job in one call.
fn queue(store: &Store, lease_ms: u64) -> JobQueue {
    JobQueue::new(
        store,
        JobsConfig {
            poll_interval_ms: 20,
            lease_ms,
            backoff_base_ms: 0,
            backoff_max_ms: 0,
            ..JobsConfig::default()
        },
    )
}

fn workers() -> Workers {
    let config = WorkersConfig {
        threads: 2,
        ..WorkersConfig::default()
    };
    Workers::start(&config, Computations::new(), None)
}

/// A runner working in the background until the returned token is cancelled.
fn start_runner(
    queue: &JobQueue,
    handlers: JobHandlers,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let runner = JobRunner::new(queue.clone(), handlers, workers());
    let task = tokio::spawn(runner.run(stop.clone()));
    (stop, task)
}

/// A runner for `run_pending` (not started in the background).
fn runner(queue: &JobQueue, handlers: JobHandlers) -> JobRunner {
    JobRunner::new(queue.clone(), handlers, workers())
}

async fn wait_for_status(queue: &JobQueue, id: &str, status: JobStatus) -> keel::jobs::Job {
    eventually(&format!("job {id} to be {status}"), || async {
        Ok(queue.get(id).await?.filter(|job| job.status == status))
    })
    .await
}

/// The job `id`, which must exist and have `status`.
async fn job_in(queue: &JobQueue, id: &str, status: JobStatus) -> anyhow::Result<keel::jobs::Job> {
    let job = queue.get(id).await?.context("the job exists")?;
    anyhow::ensure!(
        job.status == status,
        "job {id} is {}, not {status}",
        job.status
    );
    Ok(job)
}

#[tokio::test]
async fn a_job_that_fails_twice_then_succeeds_ends_done_after_three_attempts() -> anyhow::Result<()>
{
    on_every_backend("job_retried", |store| async move {
        let queue = queue(&store, 5_000);
        let mut handlers = JobHandlers::new();
        handlers.register(
            "flaky",
            |job: keel::jobs::Job, ctx: keel::jobs::JobRunContext| {
                async move {
                    if job.attempts < 3 {
                        return Err(format!("attempt {} failed", job.attempts));
                    }
                    // The CPU part of a job runs on the worker pool.
                    let sum = ctx
                        .workers
                        .pool()
                        .run(|_| (1..=100i64).sum::<i64>())
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(Some(doc! { "sum": sum }))
                }
                .boxed()
            },
        );
        let runner = runner(&queue, handlers);
        let id = queue
            .enqueue(NewJob::new("flaky", doc! {}).max_attempts(5))
            .await?
            .id;
        assert_eq!(runner.run_pending().await?, 3, "three attempts");
        let job = job_in(&queue, &id, JobStatus::Done).await?;
        assert_eq!(job.attempts, 3);
        assert_eq!(job.last_error.as_deref(), Some("attempt 2 failed"));
        assert_eq!(job.result, Some(doc! { "sum": 5050_i64 }));
        assert_eq!(runner.run_pending().await?, 0, "nothing left to run");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_job_that_always_fails_is_dead_lettered_with_its_error() -> anyhow::Result<()> {
    on_every_backend("job_dead_lettered", |store| async move {
        let queue = queue(&store, 5_000);
        let mut handlers = JobHandlers::new();
        handlers.register(
            "doomed",
            |job: keel::jobs::Job, _ctx: keel::jobs::JobRunContext| {
                async move { Err(format!("no luck on attempt {}", job.attempts)) }.boxed()
            },
        );
        let runner = runner(&queue, handlers);
        let id = queue
            .enqueue(NewJob::new("doomed", doc! {}).max_attempts(3))
            .await?
            .id;
        assert_eq!(runner.run_pending().await?, 3, "three attempts");
        let job = job_in(&queue, &id, JobStatus::Dead).await?;
        assert_eq!(job.attempts, 3);
        assert_eq!(job.last_error.as_deref(), Some("no luck on attempt 3"));
        assert_eq!(queue.list(Some(JobStatus::Dead), 10).await?.len(), 1);
        assert_eq!(runner.run_pending().await?, 0, "a dead job is not run");

        // An operator retries it: back in the queue with fresh attempts (and it fails again).
        queue.retry(&id).await?;
        job_in(&queue, &id, JobStatus::Queued).await?;
        assert_eq!(runner.run_pending().await?, 3, "three fresh attempts");
        let again = job_in(&queue, &id, JobStatus::Dead).await?;
        assert_eq!(again.attempts, 3);
        assert!(queue.retry("no-such-job").await.is_err());
        assert_eq!(queue.purge(JobStatus::Dead).await?, 1);
        assert!(
            queue.purge(JobStatus::Queued).await.is_err(),
            "pending work is never purged"
        );
        assert!(queue.get(&id).await?.is_none());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_claimed_job_whose_runner_died_runs_again_after_its_lease() -> anyhow::Result<()> {
    on_every_backend("job_lease_expired", |store| async move {
        let queue = queue(&store, 300);
        let kinds = vec!["import".to_owned()];
        let id = queue
            .enqueue(NewJob::new("import", doc! { "file": "a.csv" }))
            .await?
            .id;
        // A runner claims the job and dies without completing it (nothing renews its lease).
        let claimed = queue
            .claim("crashed-runner", &kinds, queue.config().lease())
            .await?;
        assert_eq!(claimed.map(|job| job.id), Some(id.clone()));
        assert!(
            queue
                .claim("other-runner", &kinds, queue.config().lease())
                .await?
                .is_none(),
            "a leased job is not claimable"
        );

        let runs = Arc::new(Mutex::new(0));
        let mut handlers = JobHandlers::new();
        let counter = Arc::clone(&runs);
        handlers.register(
            "import",
            move |_job: keel::jobs::Job, _ctx: keel::jobs::JobRunContext| {
                *counter.lock().expect("test mutex") += 1;
                async { Ok(None) }.boxed()
            },
        );
        // A real runner in the background picks it up once the lease has expired.
        let (stop, runner) = start_runner(&queue, handlers);
        let job = wait_for_status(&queue, &id, JobStatus::Done).await;
        assert_eq!(job.attempts, 2, "the crashed attempt counts");
        assert_eq!(*runs.lock().expect("test mutex"), 1);
        stop.cancel();
        runner.await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn two_runners_never_run_the_same_job_at_once() -> anyhow::Result<()> {
    on_every_backend(
        "two_runners_never_run_the_same_job_at_once",
        |store| async move {
            let queue = queue(&store, 30_000);
            let running = Arc::new(Mutex::new(HashSet::<String>::new()));
            let executions = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
            let overlaps = Arc::new(Mutex::new(0));
            let handlers = || {
                let (running, executions, overlaps) =
                    (running.clone(), executions.clone(), overlaps.clone());
                let mut handlers = JobHandlers::new();
                handlers.register(
                    "exclusive",
                    move |job: keel::jobs::Job, _ctx: keel::jobs::JobRunContext| {
                        let (running, executions, overlaps) =
                            (running.clone(), executions.clone(), overlaps.clone());
                        async move {
                            if !running.lock().expect("test mutex").insert(job.id.clone()) {
                                *overlaps.lock().expect("test mutex") += 1;
                            }
                            for _ in 0..10 {
                                tokio::task::yield_now().await;
                            }
                            running.lock().expect("test mutex").remove(&job.id);
                            *executions
                                .lock()
                                .expect("test mutex")
                                .entry(job.id)
                                .or_default() += 1;
                            Ok(None)
                        }
                        .boxed()
                    },
                );
                handlers
            };
            let (stop_a, runner_a) = start_runner(&queue, handlers());
            let (stop_b, runner_b) = start_runner(&queue, handlers());
            let mut ids = Vec::new();
            for n in 0..40 {
                ids.push(
                    queue
                        .enqueue(NewJob::new("exclusive", doc! { "n": n }))
                        .await?
                        .id,
                );
            }
            eventually("all 40 jobs to be done", || async {
                let done = queue.count_by_status().await?[&JobStatus::Done];
                Ok((done == 40).then_some(()))
            })
            .await;
            stop_a.cancel();
            stop_b.cancel();
            runner_a.await?;
            runner_b.await?;
            assert_eq!(*overlaps.lock().expect("test mutex"), 0);
            let executions = executions.lock().expect("test mutex");
            assert_eq!(executions.len(), 40);
            assert!(
                executions.values().all(|&n| n == 1),
                "each job ran exactly once"
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn an_idempotency_key_makes_enqueue_idempotent() -> anyhow::Result<()> {
    on_every_backend(
        "an_idempotency_key_makes_enqueue_idempotent",
        |store| async move {
            let queue = queue(&store, 5_000);
            let job = || {
                NewJob::new("mail", doc! { "to": "a@example.com" }).idempotency_key("welcome-42")
            };
            let first = queue.enqueue(job()).await?;
            let second = queue.enqueue(job()).await?;
            assert!(first.created && !second.created);
            assert_eq!(first.id, second.id);
            let other_kind = queue
                .enqueue(NewJob::new("sms", doc! {}).idempotency_key("welcome-42"))
                .await?;
            assert!(other_kind.created, "keys are per kind");
            assert_eq!(queue.list(None, 10).await?.len(), 2);
            assert!(
                queue
                    .enqueue(NewJob::new("mail", doc! {}).idempotency_key(""))
                    .await
                    .is_err()
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_job_due_later_is_not_claimed_before_its_time() -> anyhow::Result<()> {
    on_every_backend(
        "a_job_due_later_is_not_claimed_before_its_time",
        |store| async move {
            let queue = queue(&store, 5_000);
            let kinds = vec!["later".to_owned()];
            let later = bson::DateTime::now().saturating_add_duration(Duration::from_secs(3600));
            queue
                .enqueue(NewJob::new("later", doc! {}).run_at(later))
                .await?;
            assert!(
                queue
                    .claim("runner", &kinds, queue.config().lease())
                    .await?
                    .is_none()
            );
            let now_id = queue.enqueue(NewJob::new("later", doc! {})).await?.id;
            let claimed = queue
                .claim("runner", &kinds, queue.config().lease())
                .await?;
            assert_eq!(claimed.map(|job| job.id), Some(now_id));
            Ok(())
        },
    )
    .await
}

/// A job as a type: enqueued as a value, handled as the same value; a payload of another shape
/// fails with a reason instead of reaching the handler.
#[tokio::test]
async fn a_typed_job_reaches_its_handler_as_the_value_enqueued() -> anyhow::Result<()> {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Resize {
        image_id: String,
        widths: Vec<u32>,
    }
    impl keel::jobs::JobKind for Resize {
        const KIND: &'static str = "resize";
    }
    on_every_backend("typed_job", |store| async move {
        let queue = queue(&store, 5_000);
        let mut handlers = JobHandlers::new();
        handlers.register_typed(|resize: Resize, _job, _ctx| async move {
            let total: u32 = resize.widths.iter().sum();
            Ok(Some(
                doc! { "image": resize.image_id, "total": i64::from(total) },
            ))
        });
        let runner = runner(&queue, handlers);
        let job = NewJob::of(&Resize {
            image_id: "img-1".into(),
            widths: vec![100, 200],
        })?;
        assert_eq!(job.kind, "resize");
        assert_eq!(
            job.payload,
            doc! { "imageId": "img-1", "widths": [100_i64, 200_i64] }
        );
        let id = queue.enqueue(job).await?.id;
        assert_eq!(runner.run_pending().await?, 1);
        let done = job_in(&queue, &id, JobStatus::Done).await?;
        assert_eq!(
            done.result,
            Some(doc! { "image": "img-1", "total": 300_i64 })
        );
        assert_eq!(
            done.payload_as::<Resize>()
                .map_err(anyhow::Error::msg)?
                .widths,
            [100, 200]
        );

        let wrong = queue
            .enqueue(NewJob::new("resize", doc! { "imageId": 7 }).max_attempts(1))
            .await?
            .id;
        assert_eq!(runner.run_pending().await?, 1, "one attempt allowed");
        let dead = job_in(&queue, &wrong, JobStatus::Dead).await?;
        assert!(
            dead.last_error
                .as_deref()
                .unwrap_or("")
                .contains("not a resize job"),
            "{:?}",
            dead.last_error
        );
        Ok(())
    })
    .await
}
