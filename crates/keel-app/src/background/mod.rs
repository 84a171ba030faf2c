//! The application's background work: its tasks, watchers, jobs and computations, and
//! `Background`, which builds keel's machinery for them and starts the parts a process's roles
//! ask for (`keel serve --role scheduler|watchers|jobs`).
//!
//! - tasks: `process-data` (`items/task.rs`), `order-importer` (`orders/importer.rs`)
//! - watchers: `surveys` (`surveys/watcher.rs`), `orders` (`orders/watcher.rs`)
//! - jobs: `process-orders` (`orders/job.rs`), pricing on the worker pool (`orders/pricing.rs`)
//!
//! Adding one: see docs/background.md.

#[cfg(test)]
mod store_tests;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel::Platform;
use keel::jobs::{JOBS_COLLECTION, JobHandlers, JobQueue, JobRunner};
use keel::shutdown::Backoff;
use keel::store::Store;
use keel::store::migrate::IndexDecl;
use keel::tasks::{Scheduler, TASK_RUNS_COLLECTION, TaskRegistry, TaskRunner};
use keel::watchers::{WatcherHealth, WatcherRuntime};
use keel::workers::{Computations, Workers};

use crate::Role;

/// How long the worker pool may take to finish its jobs at shutdown.
const POOL_SHUTDOWN: Duration = Duration::from_secs(5);

/// The computations of the application.
pub fn computations() -> Computations {
    let mut jobs = Computations::new();
    jobs.register(
        crate::orders::pricing::PROCESS_ORDERS_KIND,
        crate::orders::pricing::process_orders_job,
    );
    jobs
}

/// `tax_rate`: `[orders] tax_rate`, as the API prices new orders.
pub fn task_registry(store: &Store, tax_rate: f64) -> TaskRegistry {
    let mut tasks = TaskRegistry::new();
    tasks.register(crate::items::task::ProcessData::new(store));
    tasks.register(crate::orders::importer::OrderImporter::new(store, tax_rate));
    tasks
}

pub fn job_handlers(store: &Store, tax_rate: f64) -> JobHandlers {
    let mut handlers = JobHandlers::new();
    let process_orders = crate::orders::job::ProcessOrders::new(store, tax_rate);
    handlers.register_typed(
        move |payload: crate::orders::job::ProcessOrdersJob, job, ctx| {
            let process_orders = process_orders.clone();
            async move { process_orders.run(payload, job, ctx).await }
        },
    );
    handlers
}

pub fn watcher_runtime(
    platform: &Platform,
    store: &Store,
    jobs: &JobQueue,
    health: WatcherHealth,
) -> WatcherRuntime {
    let mut runtime =
        WatcherRuntime::new(store, platform.config().watchers.clone()).with_health(health);
    for watcher in watchers(store, jobs) {
        runtime.register_arc(watcher);
    }
    runtime
}

/// The application's watchers, registered by `watcher_runtime` (and named in the ops console).
pub fn watchers(store: &Store, jobs: &JobQueue) -> Vec<Arc<dyn keel::watchers::Watcher>> {
    vec![
        Arc::new(crate::surveys::watcher::SurveysWatcher::new(store)),
        Arc::new(crate::orders::watcher::OrdersWatcher::new(
            jobs.clone(),
            store,
        )),
    ]
}

/// The indexes of the background collections (`jobs`, `task_runs`), gathered into
/// `crate::indexes::all` for `keel migrate` and `serve`'s start. (`items.processed` and
/// `orders.status`, used here too, are declared by their components.)
pub fn index_declarations() -> Vec<IndexDecl> {
    let mut decls: Vec<IndexDecl> = JobQueue::indexes()
        .into_iter()
        .map(|spec| IndexDecl::new(JOBS_COLLECTION, spec))
        .collect();
    decls.extend(
        TaskRunner::indexes()
            .into_iter()
            .map(|spec| IndexDecl::new(TASK_RUNS_COLLECTION, spec)),
    );
    decls
}

/// The background machinery of one process. Cheap to clone.
#[derive(Clone)]
pub struct Background {
    pub workers: Workers,
    pub jobs: JobQueue,
    pub tasks: TaskRunner,
    pub watcher_health: WatcherHealth,
    store: Store,
    tax_rate: f64,
}

impl Background {
    /// Builds the worker pool, the queue and the task runner from the configuration. Nothing
    /// runs until `start`. `child_program` is the `keel` executable for isolated computations.
    pub fn new(platform: &Platform, store: &Store, child_program: Option<PathBuf>) -> Background {
        let config = platform.config();
        let tax_rate = config.orders.tax_rate.clamp(0.0, 1.0);
        let workers = Workers::start(&config.workers, computations(), child_program);
        let jobs = JobQueue::new(store, config.jobs.clone());
        let tasks = TaskRunner::new(
            store,
            task_registry(store, tax_rate),
            config.tasks.clone(),
            platform.shutdown().token(),
        );
        for name in config.tasks.keys() {
            let known = tasks.registry().names();
            if !known
                .iter()
                .any(|t| t == name || t.replace('-', "_") == *name)
            {
                tracing::warn!(task = %name, "[tasks.{name}] configures a task that does not exist");
            }
        }
        let pool = workers.clone();
        platform
            .shutdown()
            .on_shutdown("workers", move || async move {
                if !pool.shutdown(POOL_SHUTDOWN).await {
                    tracing::warn!("worker threads still busy at shutdown (abandoned jobs)");
                }
            });
        Background {
            workers,
            jobs,
            tasks,
            watcher_health: WatcherHealth::default(),
            store: store.clone(),
            tax_rate,
        }
    }

    /// Prices `owner`'s pending orders among `ids` now, on the worker pool (`POST
    /// /api/orders/process`); the same work as the `process-orders` job.
    pub async fn process_orders_now(
        &self,
        ids: &[bson::Bson],
        owner: &bson::Bson,
    ) -> Result<bson::Document, crate::orders::job::ProcessOrdersError> {
        let batch_id = bson::oid::ObjectId::new().to_hex();
        crate::orders::job::ProcessOrders::new(&self.store, self.tax_rate)
            .process(&batch_id, ids, Some(owner), &self.workers)
            .await
    }

    /// This process's job runner: the application's handlers (and, in `env = "test"`, the test
    /// kinds) on this queue and pool. `start` runs it for `Role::Jobs`; a test that must know
    /// the queue's work is done calls its `run_pending` instead.
    pub fn job_runner(&self, platform: &Platform) -> JobRunner {
        let mut handlers = job_handlers(&self.store, self.tax_rate);
        if platform.config().env == keel::config::Environment::Test {
            crate::test_routes::register_test_jobs(&mut handlers, &self.store);
        }
        JobRunner::new(self.jobs.clone(), handlers, self.workers.clone())
    }

    /// Starts what `roles` ask for, each as a supervised loop owned by the platform's shutdown:
    /// the scheduler, the watchers (reporting into `/api/ready`), the job runner. The runtime
    /// health probe runs in every process.
    pub fn start(&self, platform: &Platform, roles: &[Role]) {
        let config = platform.config();
        let shutdown = platform.shutdown();
        let lag_warn = Duration::from_millis(config.telemetry.lag_warn_ms);
        shutdown.spawn(
            "runtime-health",
            keel::runtime_health::monitor(lag_warn, shutdown.token()),
        );
        if roles.contains(&Role::Scheduler) {
            // SIGHUP reloads `[tasks]`: the scheduler and each run read the runner's live table.
            let tasks = self.tasks.clone();
            let configs = platform.watch_config();
            let token = shutdown.token();
            shutdown.spawn("task-config", async move {
                tasks.follow(configs, token).await;
            });
            let scheduler = Scheduler::new(self.tasks.clone());
            supervise(platform, "scheduler", move |token| {
                let scheduler = scheduler.clone();
                async move { scheduler.run(token).await }
            });
        }
        if roles.contains(&Role::Watchers) {
            let runtime = watcher_runtime(
                platform,
                &self.store,
                &self.jobs,
                self.watcher_health.clone(),
            );
            let health = self.watcher_health.clone();
            platform.readiness().add_probe("watchers", move || {
                let problems = health.problems();
                async move {
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(problems.join("; "))
                    }
                }
            });
            supervise(platform, "watchers", move |token| {
                let runtime = runtime.clone();
                async move { runtime.run(token).await }
            });
        }
        if roles.contains(&Role::Jobs) {
            let runner = self.job_runner(platform);
            supervise(platform, "job-runner", move |token| {
                let runner = runner.clone();
                async move { runner.run(token).await }
            });
        }
    }
}

/// Runs `run` under the platform's supervisor: a panic restarts it with backoff; returning
/// (on shutdown) ends it.
fn supervise<F, Fut>(platform: &Platform, name: &str, run: F)
where
    F: Fn(tokio_util::sync::CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let run = Arc::new(run);
    platform
        .shutdown()
        .spawn_supervised(name, Backoff::default(), move |token| {
            let run = Arc::clone(&run);
            async move {
                run(token).await;
                Ok::<(), Infallible>(())
            }
        });
}
