//! Embedded store benchmarks, side by side with the same operations done directly on SQLite
//! through rusqlite (the raw engine is the limit keel's overhead is measured against).
//!
//! Targets: 64 concurrent writers ≥ 50,000 durable inserts/s (group commit);
//! single-document lookups ≥ 0.5× raw; insert→change-event latency p99 ≤ 10 ms (printed by
//! the `change_feed` group as p50/p99 over its samples); find 100 by index ≥ 0.5× raw, and
//! counts beside raw SQLite (`docs/performance.md` has the latest numbers).
//!
//! Run: `cargo bench -p keel --bench store -- --measurement-time 3 --sample-size 10`.
//! keel runs on a current-thread runtime (`rt1`) and a 2-worker runtime (`rt2`).

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use keel::secrets::Secret;
use keel::store::{Collection, DatabaseConfig, FindOptions, IndexSpec, Store, UpdateOptions};
use rusqlite::{Connection, params};
use tokio::runtime::Runtime;

/// Documents preloaded for the lookup benchmarks.
const PRELOADED: i64 = 10_000;

/// A ~200-byte document (BSON size), like a typical small record.
fn document(n: i64) -> Document {
    doc! {
        "email": format!("user{n}@example.com"),
        "n": n,
        "name": "Ada Lovelace",
        "state": "active",
        "payload": "x".repeat(100),
    }
}

fn runtimes() -> Vec<(&'static str, Runtime)> {
    let rt1 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime (bench setup)");
    let rt2 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime (bench setup)");
    vec![("rt1", rt1), ("rt2", rt2)]
}

fn open_store(rt: &Runtime, dir: &Path) -> Store {
    let config = DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.display())),
        ..DatabaseConfig::default()
    };
    rt.block_on(Store::connect(&config))
        .expect("open the embedded store (bench setup)")
}

/// A store holding `PRELOADED` documents with `email` and `n` indexed.
fn preloaded_store(rt: &Runtime, dir: &Path) -> Collection {
    let store = open_store(rt, dir);
    let users = store.collection("users");
    rt.block_on(async {
        users
            .create_index(IndexSpec::new(doc! {"email": 1}).unique())
            .await?;
        users.create_index(IndexSpec::new(doc! {"n": 1})).await?;
        let batch: Vec<Document> = (0..PRELOADED)
            .map(|n| {
                let mut d = document(n);
                d.insert("_id", n);
                d
            })
            .collect();
        users.insert_many(batch).await?;
        Ok::<_, keel::store::StoreError>(())
    })
    .expect("preload (bench setup)");
    users
}

/// The raw baseline: the same tables keel uses, written and read directly.
fn raw_connection(dir: &Path) -> Connection {
    let conn = Connection::open(dir.join("raw.db")).expect("open raw (bench setup)");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS docs (id BLOB PRIMARY KEY, doc BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS by_email (key BLOB PRIMARY KEY, id BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS by_n (key BLOB, id BLOB, PRIMARY KEY (key, id)) WITHOUT ROWID;",
    )
    .expect("raw schema (bench setup)");
    conn
}

fn key(value: impl Into<Bson>) -> Vec<u8> {
    keel::store::engine::encode_key(&value.into())
}

fn raw_insert(conn: &Connection, n: i64, document: &Document) -> rusqlite::Result<()> {
    let id = key(n);
    let bytes = document.to_vec().expect("encode (bench)");
    let mut insert = conn.prepare_cached("INSERT INTO docs (id, doc) VALUES (?1, ?2)")?;
    insert.execute(params![id, bytes])?;
    let email = document.get("email").cloned().unwrap_or(Bson::Null);
    conn.prepare_cached("INSERT INTO by_email (key, id) VALUES (?1, ?2)")?
        .execute(params![key(email), id])?;
    conn.prepare_cached("INSERT INTO by_n (key, id) VALUES (?1, ?2)")?
        .execute(params![key(n), id])?;
    Ok(())
}

fn preloaded_raw(dir: &Path) -> Connection {
    let conn = raw_connection(dir);
    conn.execute_batch("BEGIN").expect("raw preload");
    for n in 0..PRELOADED {
        raw_insert(&conn, n, &document(n)).expect("raw preload");
    }
    conn.execute_batch("COMMIT").expect("raw preload");
    conn
}

fn decode(bytes: &[u8]) -> Document {
    Document::from_reader(bytes).expect("decode (bench)")
}

fn inserts(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_one");
    group.throughput(Throughput::Elements(1));
    for (rt_name, rt) in runtimes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let items = open_store(&rt, dir.path()).collection("items");
        group.bench_function(BenchmarkId::new("keel_1_writer", rt_name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for n in 0..iters as i64 {
                        black_box(items.insert_one(document(n)).await.expect("insert"));
                    }
                    start.elapsed()
                })
            })
        });
        // 64 is the target; 512 shows where group commit goes once an fsync is shared by
        // more writers than 64 (on a disk whose fsync takes milliseconds).
        for writers in [64u64, 512] {
            let name = format!("keel_{writers}_writers");
            group.bench_function(BenchmarkId::new(name, rt_name), |b| {
                b.iter_custom(|iters| {
                    let each = iters.div_ceil(writers);
                    let elapsed = rt.block_on(async {
                        let start = Instant::now();
                        let mut tasks = tokio::task::JoinSet::new();
                        for _ in 0..writers {
                            let items = items.clone();
                            tasks.spawn(async move {
                                for n in 0..each as i64 {
                                    items.insert_one(document(n)).await.expect("insert");
                                }
                            });
                        }
                        while tasks.join_next().await.is_some() {}
                        start.elapsed()
                    });
                    elapsed.mul_f64(iters as f64 / (each * writers) as f64)
                })
            });
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = raw_connection(dir.path());
    let mut next = 0i64;
    group.bench_function("raw_commit_each", |b| {
        b.iter(|| {
            next += 1;
            conn.execute_batch("BEGIN").expect("raw");
            raw_insert(&conn, next, &document(next)).expect("raw insert");
            conn.execute_batch("COMMIT").expect("raw");
        })
    });
    group.bench_function("raw_64_per_commit", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut done = 0;
            while done < iters {
                conn.execute_batch("BEGIN").expect("raw");
                for _ in 0..64.min(iters - done) {
                    next += 1;
                    raw_insert(&conn, next, &document(next)).expect("raw insert");
                    done += 1;
                }
                conn.execute_batch("COMMIT").expect("raw");
            }
            start.elapsed()
        })
    });
    group.finish();
}

/// Times `iters` sequential runs of an async operation on `rt`.
fn time_async<F, Fut, T>(rt: &Runtime, iters: u64, mut op: F) -> Duration
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = T>,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters as i64 {
            black_box(op(i).await);
        }
        start.elapsed()
    })
}

/// A well-spread document number for iteration `i`.
fn pick(i: i64, span: i64) -> i64 {
    (i * 7919) % span
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for (rt_name, rt) in runtimes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = preloaded_store(&rt, dir.path());
        group.bench_function(BenchmarkId::new("keel_find_one_by_id", rt_name), |b| {
            b.iter_custom(|iters| {
                time_async(&rt, iters, |i| {
                    let filter = doc! {"_id": pick(i, PRELOADED)};
                    let found = users.find_one(filter, FindOptions::default());
                    async move { found.await.expect("find").expect("present") }
                })
            })
        });
        group.bench_function(
            BenchmarkId::new("keel_find_by_indexed_field", rt_name),
            |b| {
                b.iter_custom(|iters| {
                    time_async(&rt, iters, |i| {
                        let email = format!("user{}@example.com", pick(i, PRELOADED));
                        let found = users.find(doc! {"email": email}, FindOptions::default());
                        async move { assert_eq!(found.await.expect("find").len(), 1) }
                    })
                })
            },
        );
        group.bench_function(BenchmarkId::new("keel_range_scan_100", rt_name), |b| {
            b.iter_custom(|iters| {
                time_async(&rt, iters, |i| {
                    let low = pick(i, PRELOADED - 100);
                    let filter = doc! {"n": {"$gte": low, "$lt": low + 100}};
                    let found = users.find(filter, FindOptions::default());
                    async move { assert_eq!(found.await.expect("find").len(), 100) }
                })
            })
        });
        group.bench_function(BenchmarkId::new("keel_count_all", rt_name), |b| {
            b.iter_custom(|iters| {
                time_async(&rt, iters, |_| {
                    let counted = users.count(doc! {});
                    async move { assert_eq!(counted.await.expect("count"), PRELOADED as u64) }
                })
            })
        });
        group.bench_function(BenchmarkId::new("keel_count_range_100", rt_name), |b| {
            b.iter_custom(|iters| {
                time_async(&rt, iters, |i| {
                    let low = pick(i, PRELOADED - 100);
                    let counted = users.count(doc! {"n": {"$gte": low, "$lt": low + 100}});
                    async move { assert_eq!(counted.await.expect("count"), 100) }
                })
            })
        });
        group.bench_function(BenchmarkId::new("keel_update_one_inc", rt_name), |b| {
            b.iter_custom(|iters| {
                time_async(&rt, iters, |i| {
                    let filter = doc! {"_id": pick(i, PRELOADED)};
                    let update = doc! {"$inc": {"hits": 1}};
                    let updated = users.update_one(filter, update, UpdateOptions::default());
                    async move { assert_eq!(updated.await.expect("update").modified, 1) }
                })
            })
        });
    }
    // The handoff a read pays on a current-thread runtime, for reading the numbers above.
    for (rt_name, rt) in runtimes() {
        group.bench_function(BenchmarkId::new("spawn_blocking_noop", rt_name), |b| {
            b.iter_custom(|iters| {
                time_async(&rt, iters, |i| async move {
                    tokio::task::spawn_blocking(move || i).await.expect("join")
                })
            })
        });
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = preloaded_raw(dir.path());
    let mut i = 0i64;
    group.bench_function("raw_find_one_by_id", |b| {
        b.iter(|| {
            i += 1;
            let mut select = conn
                .prepare_cached("SELECT doc FROM docs WHERE id = ?1")
                .expect("raw");
            let bytes: Vec<u8> = select
                .query_row([key(pick(i, PRELOADED))], |row| row.get(0))
                .expect("raw find");
            black_box(decode(&bytes))
        })
    });
    group.bench_function("raw_find_by_indexed_field", |b| {
        b.iter(|| {
            i += 1;
            let email = format!("user{}@example.com", pick(i, PRELOADED));
            let mut select = conn
                .prepare_cached(
                    "SELECT d.doc FROM by_email AS k JOIN docs AS d ON d.id = k.id
                     WHERE k.key = ?1",
                )
                .expect("raw");
            let found: Vec<Document> = select
                .query_map([key(email)], |row| row.get::<_, Vec<u8>>(0))
                .expect("raw find")
                .map(|bytes| decode(&bytes.expect("raw row")))
                .collect();
            assert_eq!(found.len(), 1);
        })
    });
    group.bench_function("raw_range_scan_100", |b| {
        b.iter(|| {
            i += 1;
            let low = pick(i, PRELOADED - 100);
            let mut select = conn
                .prepare_cached(
                    "SELECT d.doc FROM by_n AS k JOIN docs AS d ON d.id = k.id
                     WHERE k.key >= ?1 AND k.key < ?2",
                )
                .expect("raw");
            let found: Vec<Document> = select
                .query_map([key(low), key(low + 100)], |row| row.get::<_, Vec<u8>>(0))
                .expect("raw range")
                .map(|bytes| decode(&bytes.expect("raw row")))
                .collect();
            assert_eq!(found.len(), 100);
        })
    });
    group.bench_function("raw_count_all", |b| {
        b.iter(|| {
            let counted: i64 = conn
                .prepare_cached("SELECT count(*) FROM docs")
                .and_then(|mut s| s.query_row([], |row| row.get(0)))
                .expect("raw count");
            assert_eq!(counted, PRELOADED);
        })
    });
    group.bench_function("raw_count_range_100", |b| {
        b.iter(|| {
            i += 1;
            let low = pick(i, PRELOADED - 100);
            let counted: i64 = conn
                .prepare_cached("SELECT count(*) FROM by_n WHERE key >= ?1 AND key < ?2")
                .and_then(|mut s| s.query_row([key(low), key(low + 100)], |row| row.get(0)))
                .expect("raw count");
            assert_eq!(counted, 100);
        })
    });
    group.bench_function("raw_update_one_inc", |b| {
        b.iter(|| {
            i += 1;
            let id = key(pick(i, PRELOADED));
            conn.execute_batch("BEGIN").expect("raw");
            let bytes: Vec<u8> = conn
                .prepare_cached("SELECT doc FROM docs WHERE id = ?1")
                .and_then(|mut s| s.query_row([&id], |row| row.get(0)))
                .expect("raw read");
            let mut document = decode(&bytes);
            let hits = document.get_i32("hits").unwrap_or(0);
            document.insert("hits", hits + 1);
            let bytes = document.to_vec().expect("encode");
            conn.prepare_cached("UPDATE docs SET doc = ?1 WHERE id = ?2")
                .and_then(|mut s| s.execute(params![bytes, id]))
                .expect("raw update");
            conn.execute_batch("COMMIT").expect("raw");
        })
    });
    group.finish();
}

/// Insert→event latency: a watcher task receives each event live; the time from starting
/// the insert to the event's arrival is recorded, and p50/p99 are printed at the end.
fn change_feed(c: &mut Criterion) {
    let mut group = c.benchmark_group("change_feed");
    for (rt_name, rt) in runtimes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let items = open_store(&rt, dir.path()).collection("items");
        // Unbounded is safe: the loop below awaits each arrival before the next insert.
        let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut stream = rt
            .block_on(items.watch(Default::default()))
            .expect("watch (bench setup)");
        rt.spawn(async move {
            while let Some(Ok(_)) = stream.next().await {
                if arrived.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        // Per insert: start → event arrival (includes the insert's durable commit), and
        // acknowledgement → event arrival (the feed's own delay; 0 when the event came first).
        let mut to_event: Vec<Duration> = Vec::new();
        let mut after_ack: Vec<Duration> = Vec::new();
        group.bench_function(BenchmarkId::new("keel_insert_to_event", rt_name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for n in 0..iters as i64 {
                        let start = Instant::now();
                        items.insert_one(document(n)).await.expect("insert");
                        let acknowledged = Instant::now();
                        let at = arrivals.recv().await.expect("event");
                        let latency = at.saturating_duration_since(start);
                        to_event.push(latency);
                        after_ack.push(at.saturating_duration_since(acknowledged));
                        total += latency;
                    }
                    total
                })
            })
        });
        for (what, samples) in [
            ("insert_to_event", &mut to_event),
            ("ack_to_event", &mut after_ack),
        ] {
            samples.sort_unstable();
            if samples.is_empty() {
                continue;
            }
            let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
            println!(
                "change_feed/{what}/{rt_name}: {} samples, p50 {:?}, p99 {:?}, max {:?}",
                samples.len(),
                at(0.50),
                at(0.99),
                at(1.0)
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = inserts, lookups, change_feed
}
criterion_main!(benches);
