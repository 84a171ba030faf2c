//! The machinery that runs the components' background work: the registries of tasks, jobs,
//! watchers and computations, filled from every component (`crate::COMPONENTS`), and `Background`,
//! which builds keel's worker pool, job queue and task runner and starts the parts a process's
//! roles ask for (`keel serve --role scheduler|watchers|jobs`).
//!
//! The work itself lives with its feature: `items/task.rs` (`process-data`),
//! `orders/{importer,watcher,job,pricing}.rs`, `surveys/watcher.rs`. Adding one:
//! docs/architecture.md and docs/background.md.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel::Platform;
use keel::jobs::{JOBS_COLLECTION, JobHandlers, JobQueue, JobRunner};
use keel::shutdown::Backoff;
use keel::store::migrate::IndexDecl;
use keel::tasks::{Scheduler, TASK_RUNS_COLLECTION, TaskRegistry, TaskRunner};
use keel::watchers::{WatcherHealth, WatcherRuntime};
use keel::workers::{Computations, Workers};

use crate::Role;
use crate::component::{BackgroundContext, Components};

/// How long the worker pool may take to finish its jobs at shutdown.
const POOL_SHUTDOWN: Duration = Duration::from_secs(5);

/// The computations every component registers on the worker pool.
pub fn computations(components: Components) -> Computations {
    let mut computations = Computations::new();
    for component in components {
        component.computations(&mut computations);
    }
    computations
}

/// The scheduled tasks every component registers.
pub fn task_registry(components: Components, context: &BackgroundContext) -> TaskRegistry {
    let mut tasks = TaskRegistry::new();
    for component in components {
        component.tasks(context, &mut tasks);
    }
    tasks
}

/// The durable job handlers every component registers.
pub fn job_handlers(components: Components, context: &BackgroundContext) -> JobHandlers {
    let mut handlers = JobHandlers::new();
    for component in components {
        component.jobs(context, &mut handlers);
    }
    handlers
}

pub fn watcher_runtime(
    components: Components,
    context: &BackgroundContext,
    health: WatcherHealth,
) -> WatcherRuntime {
    let mut runtime =
        WatcherRuntime::new(&context.store, context.config.watchers.clone()).with_health(health);
    for watcher in watchers(components, context) {
        runtime.register_arc(watcher);
    }
    runtime
}

/// Every component's watchers, registered by `watcher_runtime` (and named in the ops console).
pub fn watchers(
    components: Components,
    context: &BackgroundContext,
) -> Vec<Arc<dyn keel::watchers::Watcher>> {
    components
        .iter()
        .flat_map(|component| component.watchers(context))
        .collect()
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
    pub tasks: TaskRunner,
    pub watcher_health: WatcherHealth,
    components: Components,
    context: BackgroundContext,
}

impl Background {
    /// Builds the worker pool, the queue and the task runner from the configuration. Nothing
    /// runs until `start`. `child_program` is the `keel` executable for isolated computations.
    pub fn new(
        platform: &Platform,
        components: Components,
        child_program: Option<PathBuf>,
    ) -> Background {
        let config = platform.config();
        let store = platform.store();
        let workers = Workers::start(&config.workers, computations(components), child_program);
        let jobs = JobQueue::new(store, config.jobs.clone());
        let context = BackgroundContext {
            store: store.clone(),
            jobs,
            config: config.clone(),
        };
        let tasks = TaskRunner::new(
            store,
            task_registry(components, &context),
            config.tasks.clone(),
            platform.shutdown().token(),
        );
        for name in config.tasks.keys() {
            if !tasks.registry().configures(name) {
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
            tasks,
            watcher_health: WatcherHealth::default(),
            components,
            context,
        }
    }

    /// The durable job queue.
    pub fn jobs(&self) -> &JobQueue {
        &self.context.jobs
    }

    /// What the components' background work is built from.
    pub fn context(&self) -> &BackgroundContext {
        &self.context
    }

    /// This process's watchers (the ops console names them).
    pub fn watchers(&self) -> Vec<Arc<dyn keel::watchers::Watcher>> {
        watchers(self.components, &self.context)
    }

    /// This process's job runner: the application's handlers (and, in `env = "test"`, the test
    /// kinds) on this queue and pool. `start` runs it for `Role::Jobs`; a test that must know
    /// the queue's work is done calls its `run_pending` instead.
    pub fn job_runner(&self, platform: &Platform) -> JobRunner {
        let mut handlers = job_handlers(self.components, &self.context);
        if platform.config().env == keel::config::Environment::Test {
            crate::test_routes::register_test_jobs(&mut handlers, &self.context.store);
        }
        JobRunner::new(self.jobs().clone(), handlers, self.workers.clone())
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
            let runtime =
                watcher_runtime(self.components, &self.context, self.watcher_health.clone());
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
