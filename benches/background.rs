//! Background work benchmarks on the embedded store: lock acquire+release, durable jobs
//! enqueued+completed, the worker pool against a direct call, and watcher latency from insert
//! to handler (p50/p99 printed by the `watcher` group over its samples).
//!
//! Run: `cargo bench -p keel --bench background -- --measurement-time 3 --sample-size 10`.

use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::doc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::FutureExt;
use futures::future::BoxFuture;
use keel::jobs::{JobHandlers, JobQueue, JobRunner, JobStatus, JobsConfig, NewJob};
use keel::lock::Locks;
use keel::secrets::Secret;
use keel::store::{ChangeEvent, DatabaseConfig, Store};
use keel::watchers::{Watcher, WatcherError, WatcherRuntime, WatcherState, WatchersConfig};
use keel::workers::{Computations, WorkerPool, Workers, WorkersConfig};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Durable jobs per measured batch.
const JOB_BATCH: u64 = 200;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime (bench setup)")
}

fn open_store(rt: &Runtime, dir: &Path) -> Store {
    let config = DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.display())),
        ..DatabaseConfig::default()
    };
    rt.block_on(Store::connect(&config))
        .expect("open the embedded store (bench setup)")
}

/// A small CPU-bound function: the unit of work for the pool comparison (~1 µs).
fn small_cpu_work(seed: u64) -> u64 {
    (0..200u64).fold(seed, |acc, n| {
        acc.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(n)
    })
}

fn locks(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir (bench setup)");
    let store = open_store(&rt, dir.path());
    let locks = Locks::new(&store);
    let mut group = c.benchmark_group("lock");
    group.throughput(Throughput::Elements(1));
    group.bench_function("acquire+release", |b| {
        b.iter(|| {
            rt.block_on(async {
                let lease = locks
                    .acquire("bench", Duration::from_secs(30))
                    .await
                    .expect("store answers")
                    .expect("the lock is free between iterations");
                lease.release().await.expect("store answers")
            })
        })
    });
    group.finish();
}

fn jobs(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir (bench setup)");
    let store = open_store(&rt, dir.path());
    let config = JobsConfig {
        poll_interval_ms: 50,
        ..JobsConfig::default()
    };
    let queue = JobQueue::new(&store, config);
    rt.block_on(queue.ensure_indexes())
        .expect("indexes (bench setup)");
    let workers = Workers::start(&WorkersConfig::default(), Computations::new(), None);
    let mut handlers = JobHandlers::new();
    handlers.register(
        "bench",
        |job: keel::jobs::Job, ctx: keel::jobs::JobRunContext| {
            async move {
                let seed = job.payload.get_i64("n").unwrap_or(0) as u64;
                let value = ctx
                    .workers
                    .pool()
                    .run(move |_| small_cpu_work(seed))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some(doc! { "value": value as i64 }))
            }
            .boxed()
        },
    );
    let stop = CancellationToken::new();
    let runner = JobRunner::new(queue.clone(), handlers, workers);
    let running = rt.spawn(runner.run(stop.clone()));

    let mut group = c.benchmark_group("jobs");
    group.throughput(Throughput::Elements(JOB_BATCH));
    group.bench_function("enqueue+complete x200", |b| {
        b.iter_custom(|iterations| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    for n in 0..JOB_BATCH {
                        queue
                            .enqueue(NewJob::new("bench", doc! { "n": n as i64 }))
                            .await
                            .expect("enqueue");
                    }
                    loop {
                        let counts = queue.count_by_status().await.expect("counts");
                        if counts[&JobStatus::Queued] == 0 && counts[&JobStatus::Running] == 0 {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                }
                let elapsed = started.elapsed();
                queue.purge(JobStatus::Done).await.expect("purge");
                elapsed
            })
        })
    });
    group.finish();
    stop.cancel();
    rt.block_on(running).expect("the runner stops");
}

fn pool(c: &mut Criterion) {
    let rt = runtime();
    let pool = WorkerPool::new(2, 1024, Duration::from_secs(30));
    let mut group = c.benchmark_group("worker_pool");
    group.throughput(Throughput::Elements(1));
    group.bench_function("direct call", |b| b.iter(|| small_cpu_work(black_box(7))));
    group.bench_function("pool.run (one at a time)", |b| {
        b.iter(|| {
            rt.block_on(pool.run(|_| small_cpu_work(black_box(7))))
                .expect("the pool answers")
        })
    });
    group.throughput(Throughput::Elements(256));
    group.bench_function("pool.submit x256 concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..256u64)
                    .map(|n| {
                        pool.submit(move |_| small_cpu_work(n))
                            .expect("queue has room")
                    })
                    .collect();
                for handle in handles {
                    black_box(handle.await.expect("the pool answers"));
                }
            })
        })
    });
    group.finish();
}

/// Sends the arrival instant of every event to the bench.
struct Timestamping {
    arrivals: mpsc::UnboundedSender<Instant>,
}

impl Watcher for Timestamping {
    fn name(&self) -> &str {
        "bench"
    }

    fn collection(&self) -> &str {
        "bench_source"
    }

    fn handle<'a>(&'a self, _event: &'a ChangeEvent) -> BoxFuture<'a, Result<(), WatcherError>> {
        // Unbounded: the bench waits for each arrival before the next insert, so at most one
        // message is ever queued.
        let _ = self.arrivals.send(Instant::now());
        async { Ok(()) }.boxed()
    }
}

fn watcher(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir (bench setup)");
    let store = open_store(&rt, dir.path());
    let (arrivals_tx, arrivals) = mpsc::unbounded_channel();
    let arrivals = Arc::new(tokio::sync::Mutex::new(arrivals));
    let mut runtime_ = WatcherRuntime::new(&store, WatchersConfig::default());
    runtime_.register(Timestamping {
        arrivals: arrivals_tx,
    });
    let health = runtime_.health();
    let stop = CancellationToken::new();
    let running = rt.spawn(runtime_.run(stop.clone()));
    rt.block_on(async {
        while health.state("bench") != Some(WatcherState::Running) {
            tokio::task::yield_now().await;
        }
    });
    let source = store.collection("bench_source");
    let samples = Arc::new(Mutex::new(Vec::new()));
    let one_event = || {
        let (source, arrivals, samples) = (source.clone(), arrivals.clone(), samples.clone());
        async move {
            let inserted = Instant::now();
            source.insert_one(doc! { "at": 1 }).await.expect("insert");
            let arrived = arrivals
                .lock()
                .await
                .recv()
                .await
                .expect("the watcher runs");
            let latency = arrived.saturating_duration_since(inserted);
            samples.lock().expect("samples").push(latency);
            latency
        }
    };
    let mut group = c.benchmark_group("watcher");
    group.bench_function("insert→handler latency", |b| {
        b.iter_custom(|iterations| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    total += one_event().await;
                }
                total
            })
        })
    });
    group.finish();
    let mut latencies = samples.lock().expect("samples").clone();
    latencies.sort();
    if !latencies.is_empty() {
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "watcher insert→handler over {} samples: p50 {:?}, p99 {:?}",
            latencies.len(),
            at(0.50),
            at(0.99)
        );
    }
    stop.cancel();
    rt.block_on(running).expect("the watchers stop");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = locks, jobs, pool, watcher
}
criterion_main!(benches);
