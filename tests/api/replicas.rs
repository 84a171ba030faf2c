//! Two `keel serve` replicas on one MongoDB database (all roles each, different ports): the
//! deployment DESIGN §2 promises — N stateless replicas with the database as the only shared
//! state. Sessions, the scheduler's locks, the watchers' claims and the job queue's leases are
//! what make that true; each test here drives one of them through both processes.
//!
//! They need a MongoDB server (a replica set: change streams), so they are `#[ignore]`d in a
//! plain `cargo test` — listed as ignored, never passing as if they had run — and run with
//! `scripts/mongo-test-server cargo test --test api -- --ignored replicas::`. Run without
//! `KEEL_TEST_MONGODB_URL`, they fail saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use bson::{Document, doc};
use keel::store::{DatabaseConfig, FindOptions, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::{PASSWORD, session_cookie};
use crate::helpers::{KeelProcess, every_second_config, http_client};
use crate::support::mongodb::{URL_VARIABLE, fresh_url};
use crate::support::{eventually, eventually_within};

/// The URL of a fresh database for `case` on the server of `KEEL_TEST_MONGODB_URL`.
pub fn required_mongodb_url(case: &str) -> String {
    let url = fresh_url(case).unwrap_or_else(|| {
        panic!(
            "{URL_VARIABLE} is not set: these tests need a MongoDB server \
             (scripts/mongo-test-server cargo test --test api -- --ignored)"
        )
    });
    url.expose().to_owned()
}

/// The test's own connection to the replicas' database, to look at what they wrote.
pub async fn connect(url: &str) -> Store {
    let config = DatabaseConfig {
        url: keel::secrets::Secret::new(url.to_owned()),
        ..DatabaseConfig::default()
    };
    Store::connect(&config)
        .await
        .expect("connecting to the test database")
}

/// One running replica and its address.
struct Replica {
    process: KeelProcess,
    address: SocketAddr,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn post(&self, path: &str, body: &Value, cookie: Option<&str>) -> reqwest::Response {
        let mut request = http_client().post(self.url(path)).json(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("sessionId={cookie}"));
        }
        request.send().await.expect("POST to a replica")
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = http_client().get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("sessionId={cookie}"));
        }
        request.send().await.expect("GET from a replica")
    }

    /// Registers `email` through this replica; returns the session cookie.
    async fn register(&self, email: &str) -> String {
        let response = self
            .post(
                "/api/auth/register",
                &json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "register {email}");
        session_cookie(&response).expect("register sets the session cookie")
    }
}

/// Two replicas of `keel serve` (all roles) on the database `url`, started together as a
/// rolling deployment would, both ready (store reachable, watchers running).
async fn start_two(url: &str, env: &[(&str, &str)]) -> (Replica, Replica) {
    let mut all_env = vec![
        ("KEEL_DATABASE__URL", url),
        // Both replicas' clients come from 127.0.0.1: the per-IP limits are not under test.
        ("KEEL_RATE_LIMIT__ENABLED", "false"),
        ("KEEL_JOBS__POLL_INTERVAL_MS", "100"),
    ];
    all_env.extend_from_slice(env);
    let a = KeelProcess::serve(&all_env);
    let b = KeelProcess::serve(&all_env);
    let a = Replica {
        address: a.address().await,
        process: a,
    };
    let b = Replica {
        address: b.address().await,
        process: b,
    };
    for replica in [&a, &b] {
        eventually("both replicas ready", || async {
            let ready = replica.get("/api/ready", None).await;
            (ready.status() == StatusCode::OK).then_some(())
        })
        .await;
    }
    (a, b)
}

async fn all(store: &Store, collection: &str, filter: Document) -> Vec<Document> {
    store
        .collection(collection)
        .find(filter, FindOptions::default())
        .await
        .expect("reading the replicas' database")
}

#[tokio::test]
#[ignore = "needs a MongoDB server: scripts/mongo-test-server cargo test --test api -- --ignored replicas::"]
async fn a_session_made_on_one_replica_works_on_the_other_and_a_logout_there_ends_it_at_once() {
    let url = required_mongodb_url("replicas_session");
    // No session cache: every request reads the session from the database.
    let (a, b) = start_two(&url, &[("KEEL_SESSION__CACHE_TTL", "0s")]).await;
    let cookie = a.register("two-replicas@example.com").await;
    let me = b.get("/api/auth/me", Some(&cookie)).await;
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the session made on A, used on B"
    );
    let me: Value = me.json().await.expect("JSON");
    assert_eq!(me["data"]["email"], "two-replicas@example.com");

    let logout = a.post("/api/auth/logout", &json!({}), Some(&cookie)).await;
    assert_eq!(logout.status(), StatusCode::OK);
    for replica in [&b, &a] {
        let me = replica.get("/api/auth/me", Some(&cookie)).await;
        assert_eq!(
            me.status(),
            StatusCode::UNAUTHORIZED,
            "after the logout on A"
        );
    }
}

#[tokio::test]
#[ignore = "needs a MongoDB server: scripts/mongo-test-server cargo test --test api -- --ignored replicas::"]
async fn with_the_default_session_cache_a_logout_on_one_replica_ends_the_session_on_the_other_within_cache_ttl()
 {
    let url = required_mongodb_url("replicas_session_cache");
    let (a, b) = start_two(&url, &[]).await;
    let cookie = a.register("cached@example.com").await;
    // B validates the session once and caches it (`session.cache_ttl`, 2 s by default).
    let me = b.get("/api/auth/me", Some(&cookie)).await;
    assert_eq!(me.status(), StatusCode::OK);
    let logout = a.post("/api/auth/logout", &json!({}), Some(&cookie)).await;
    assert_eq!(logout.status(), StatusCode::OK);
    // The bound: cache_ttl (2 s) after B cached it, plus this machine's scheduling slack.
    eventually_within(
        "B to refuse the session logged out on A",
        Duration::from_millis(3_500),
        || async {
            let me = b.get("/api/auth/me", Some(&cookie)).await;
            if me.status() == StatusCode::UNAUTHORIZED {
                return Some(());
            }
            assert_eq!(me.status(), StatusCode::OK);
            None
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a MongoDB server: scripts/mongo-test-server cargo test --test api -- --ignored replicas::"]
async fn a_task_scheduled_on_both_replicas_runs_once_per_tick() {
    let url = required_mongodb_url("replicas_tasks");
    let config = every_second_config();
    let config_dir = config.path().to_str().expect("a UTF-8 path");
    let (a, b) = start_two(&url, &[("KEEL_CONFIG_DIR", config_dir)]).await;
    let store = connect(&url).await;
    let runs = || all(&store, "task_runs", doc! {"task": "process-data"});
    let ticks = 6;
    eventually("process-data to run on several ticks", || async {
        let successes = runs()
            .await
            .iter()
            .filter(|r| r.get_str("outcome").ok() == Some("success"))
            .count();
        (successes >= ticks).then_some(())
    })
    .await;
    // Stop scheduling before counting, so no run is half-recorded.
    for replica in [&a, &b] {
        replica.process.signal(libc::SIGTERM);
    }
    let mut by_tick: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for run in runs().await {
        let started = run.get_datetime("startedAt").expect("startedAt");
        let outcome = run.get_str("outcome").expect("outcome").to_owned();
        // A run starts within its second (the schedule fires on the second).
        by_tick
            .entry(started.timestamp_millis() / 1_000)
            .or_default()
            .push(outcome);
    }
    // Each tick: one replica ran it, the other found the lock held and recorded `skipped`.
    // (The last tick may have been cut short by the SIGTERM: no tick may have two successes.)
    let doubled: Vec<_> = by_tick
        .iter()
        .filter(|(_, outcomes)| outcomes.iter().filter(|o| *o == "success").count() > 1)
        .collect();
    assert!(
        doubled.is_empty(),
        "ticks run twice: {doubled:?} of {by_tick:?}"
    );
    let skipped = by_tick
        .values()
        .flatten()
        .filter(|o| *o == "skipped")
        .count();
    assert!(
        skipped > 0,
        "the two replicas never met on a tick: {by_tick:?}"
    );
    // Both replicas scheduled it: each logged its runs or its skips.
    for replica in [&a, &b] {
        let lines = replica.process.lines();
        assert!(
            lines.iter().any(|l| l.contains("process-data")
                && (l.contains("task finished") || l.contains("task skipped"))),
            "a replica never ran the schedule:\n{}",
            lines.join("\n")
        );
    }
}

#[tokio::test]
#[ignore = "needs a MongoDB server: scripts/mongo-test-server cargo test --test api -- --ignored replicas::"]
async fn each_survey_completion_is_counted_once_with_watchers_on_both_replicas() {
    let url = required_mongodb_url("replicas_surveys");
    let (a, b) = start_two(&url, &[]).await;
    let cookie = a.register("surveys@example.com").await;
    let scores = [10, 9, 8, 7, 3, 0];
    for (n, score) in scores.iter().enumerate() {
        // Created on one replica, completed on the other, alternating.
        let (creator, completer) = if n.is_multiple_of(2) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let created = creator
            .post(
                "/api/surveys",
                &json!({"customerId": format!("c-{n}")}),
                Some(&cookie),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.expect("JSON");
        let id = created["data"]["_id"].as_str().expect("an id").to_owned();
        let done = completer
            .post(
                &format!("/api/surveys/{id}/complete"),
                &json!({"score": score}),
                Some(&cookie),
            )
            .await;
        assert_eq!(done.status(), StatusCode::OK);
    }
    let store = connect(&url).await;
    let total = |stats: &[Document], field: &str| -> i64 {
        stats.iter().map(|s| s.get_i64(field).unwrap_or(0)).sum()
    };
    eventually("every completion processed and counted", || async {
        let processed = all(&store, "surveys", doc! {"processed": true}).await.len();
        let stats = all(&store, "survey_stats", doc! {}).await;
        (processed == scores.len() && total(&stats, "responses") >= scores.len() as i64)
            .then_some(())
    })
    .await;
    let stats = all(&store, "survey_stats", doc! {}).await;
    assert_eq!(total(&stats, "responses"), 6, "{stats:?}");
    assert_eq!(total(&stats, "promoters"), 2, "{stats:?}");
    assert_eq!(total(&stats, "passives"), 2, "{stats:?}");
    assert_eq!(total(&stats, "detractors"), 2, "{stats:?}");
}

/// The `test-sleep` jobs' start records (`keel-app` registers the kind in `env = "test"`).
async fn starts_of(store: &Store, job_id: &str) -> Vec<Document> {
    all(store, "test_job_starts", doc! {"jobId": job_id}).await
}

async fn enqueue_sleep(replica: &Replica, ms: u64) -> String {
    let response = replica
        .post(&format!("/__test/jobs/sleep?ms={ms}"), &json!({}), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    body["data"]["id"].as_str().expect("a job id").to_owned()
}

async fn wait_until_done(store: &Store, job_id: &str) -> Document {
    eventually(&format!("job {job_id} done"), || async {
        all(store, "jobs", doc! {"_id": job_id, "status": "done"})
            .await
            .pop()
    })
    .await
}

#[tokio::test]
#[ignore = "needs a MongoDB server: scripts/mongo-test-server cargo test --test api -- --ignored replicas::"]
async fn a_job_enqueued_through_one_replica_runs_once() {
    let url = required_mongodb_url("replicas_jobs");
    let (a, b) = start_two(&url, &[]).await;
    let store = connect(&url).await;
    let mut ids = Vec::new();
    for n in 0_u32..4 {
        let through = if n.is_multiple_of(2) { &a } else { &b };
        ids.push(enqueue_sleep(through, 100).await);
    }
    for id in &ids {
        let job = wait_until_done(&store, id).await;
        assert_eq!(job.get_i32("attempts").ok(), Some(1), "{job}");
        assert_eq!(starts_of(&store, id).await.len(), 1, "job {id} ran once");
    }

    // The application's own path: an order created through A is seen by both replicas'
    // watchers, which enqueue one process-orders job between them.
    let cookie = a.register("orders@example.com").await;
    let created = a
        .post(
            "/api/orders",
            &json!({"lines": [{"sku": "ANVIL", "qty": 2, "price": 10.0}]}),
            Some(&cookie),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("JSON");
    let order_id = created["data"]["_id"].as_str().expect("an id").to_owned();
    eventually("the order priced", || async {
        let oid = bson::oid::ObjectId::parse_str(&order_id).expect("an ObjectId");
        all(&store, "orders", doc! {"_id": oid, "status": "processed"})
            .await
            .pop()
    })
    .await;
    let jobs = all(&store, "jobs", doc! {"kind": "process-orders"}).await;
    assert_eq!(jobs.len(), 1, "one job for one order: {jobs:?}");
    assert_eq!(jobs[0].get_i32("attempts").ok(), Some(1), "{jobs:?}");
}

#[tokio::test]
#[ignore = "needs a MongoDB server: scripts/mongo-test-server cargo test --test api -- --ignored replicas::"]
async fn a_job_whose_replica_is_killed_mid_run_is_rerun_by_the_other_after_its_lease_expires() {
    let url = required_mongodb_url("replicas_lease");
    let (a, b) = start_two(&url, &[("KEEL_JOBS__LEASE_MS", "2000")]).await;
    let store = connect(&url).await;
    let id = enqueue_sleep(&a, 3_000).await;
    let first = eventually("the job started", || async {
        starts_of(&store, &id).await.pop()
    })
    .await;
    let first_pid = first.get_i64("pid").expect("pid") as u32;
    let (victim, survivor) = if first_pid == a.process.pid() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(victim.process.pid(), first_pid, "one of the two ran it");
    victim.process.signal(libc::SIGKILL);
    // The lease the dead runner left: nobody may take the job before it expires.
    let left = all(&store, "jobs", doc! {"_id": &id})
        .await
        .pop()
        .expect("the job");
    let lease_expired_at = *left.get_datetime("leaseExpiresAt").expect("a lease");

    let job = wait_until_done(&store, &id).await;
    let starts = starts_of(&store, &id).await;
    let pids: BTreeSet<i64> = starts
        .iter()
        .filter_map(|s| s.get_i64("pid").ok())
        .collect();
    let expected: BTreeSet<i64> = [first_pid, survivor.process.pid()]
        .into_iter()
        .map(i64::from)
        .collect();
    assert_eq!(
        pids, expected,
        "started on the victim, then on the survivor"
    );
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(job.get_i32("attempts").ok(), Some(2), "{job}");
    let result = job.get_document("result").expect("the result is kept");
    assert_eq!(
        result.get_i64("pid").ok(),
        Some(i64::from(survivor.process.pid()))
    );
    let rerun = starts
        .iter()
        .find(|s| s.get_i64("pid").ok() != Some(i64::from(first_pid)))
        .and_then(|s| s.get_datetime("startedAt").ok())
        .expect("the re-run's start time");
    assert!(
        *rerun >= lease_expired_at,
        "re-run at {rerun} before the lease expired at {lease_expired_at}"
    );
}
