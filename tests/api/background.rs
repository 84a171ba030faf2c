//! Background work inside the running application: the watchers and the job queue working
//! together, readiness and metrics, isolated computations in a real `keel worker-run` child, and
//! `keel task run` from the binary.

use std::path::PathBuf;
use std::time::Duration;

use bson::{Document, doc};
use keel::store::{FindOptions, Store};
use keel::workers::{IsolatedRunner, WorkerError};
use keel_app::Role;
use serde_json::json;

use crate::api_support::{TestApp, body};
use crate::helpers::{keel_command, spawn_full_app};
use crate::support::eventually;

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls the store until `filter` finds a document in `collection`.
async fn wait_for_document(store: &Store, collection: &str, filter: Document) -> Document {
    let what = format!("a {collection} document matching {filter}");
    eventually(&what, || async {
        store
            .collection(collection)
            .find_one(filter.clone(), FindOptions::default())
            .await
            .expect("querying the store")
    })
    .await
}

/// The document `filter` finds in `collection`, which must exist now.
async fn document(store: &Store, collection: &str, filter: Document) -> Document {
    store
        .collection(collection)
        .find_one(filter.clone(), FindOptions::default())
        .await
        .expect("querying the store")
        .unwrap_or_else(|| panic!("no {collection} document matching {filter}"))
}

#[tokio::test]
async fn a_new_pending_order_is_priced_through_the_watcher_the_queue_and_the_pool() {
    // The watchers run in the background; the job runner does not: the test runs the job.
    let app = TestApp::builder()
        .roles(&[Role::Api, Role::Watchers])
        .spawn()
        .await;
    let store = app.store.clone();
    // The watcher follows its feed from "now": wait until it runs, as /api/ready reports.
    wait_ready(&app).await;
    store
        .collection("orders")
        .insert_one(doc! {
            "_id": "order-1",
            "lines": [ { "sku": "ANVIL", "qty": 10, "price": 60.0 } ],
            "status": "pending",
        })
        .await
        .expect("inserting an order");
    wait_for_document(
        &store,
        "jobs",
        doc! { "_id": "process-orders:order-order-1", "status": "queued" },
    )
    .await;
    assert_eq!(app.run_pending_jobs().await, 1, "the order's job ran");
    let priced = document(
        &store,
        "orders",
        doc! { "_id": "order-1", "status": "processed" },
    )
    .await;
    let pricing = priced.get_document("pricing").expect("pricing recorded");
    assert_eq!(pricing.get_i64("discountCents").ok(), Some(4_140));
    let job = document(
        &store,
        "jobs",
        doc! { "_id": "process-orders:order-order-1", "status": "done" },
    )
    .await;
    let result = job
        .get_document("result")
        .expect("the job keeps its result");
    assert_eq!(result.get_i64("processed").ok(), Some(1));
    assert_eq!(result.get_array("errors").map(Vec::len).ok(), Some(0));
    assert_eq!(app.run_pending_jobs().await, 0, "nothing left to run");
}

#[tokio::test]
async fn the_jobs_role_runs_a_queued_job_by_itself() {
    let app = spawn_full_app().await;
    let enqueued = body(app.post("/__test/jobs/sleep?ms=1", &json!({}), None).await).await;
    let id = enqueued["data"]["id"]
        .as_str()
        .expect("a job id")
        .to_owned();
    wait_for_document(&app.store, "jobs", doc! { "_id": &id, "status": "done" }).await;
}

#[tokio::test]
async fn a_completed_survey_is_counted_once_in_its_days_stats() {
    let app = spawn_full_app().await;
    let store = app.store.clone();
    wait_ready(&app).await;
    let completed_at = bson::DateTime::parse_rfc3339_str("2026-03-04T10:00:00Z").expect("a date");
    let surveys = store.collection("surveys");
    for (id, score) in [("s1", 10), ("s2", 3), ("s3", 8)] {
        surveys
            .insert_one(doc! { "_id": id, "status": "completed", "score": score, "processed": false, "completedAt": completed_at, "customerId": "c-1" })
            .await
            .expect("inserting a survey");
    }
    // A later update of a processed survey is not counted again.
    let stats = wait_for_document(
        &store,
        "survey_stats",
        doc! { "_id": "2026-03-04", "responses": 3_i64 },
    )
    .await;
    assert_eq!(stats.get_i64("promoters").ok(), Some(1));
    assert_eq!(stats.get_i64("passives").ok(), Some(1));
    assert_eq!(stats.get_i64("detractors").ok(), Some(1));
    let processed =
        wait_for_document(&store, "surveys", doc! { "_id": "s3", "processed": true }).await;
    assert!(processed.get_datetime("processedDate").is_ok());
    surveys
        .update_one(
            doc! { "_id": "s1" },
            doc! { "$set": { "comment": "edited later" } },
            Default::default(),
        )
        .await
        .expect("updating a survey");
    let stats = store
        .collection("survey_stats")
        .find_one(doc! { "_id": "2026-03-04" }, FindOptions::default())
        .await
        .expect("reading stats")
        .expect("stats exist");
    assert_eq!(stats.get_i64("responses").ok(), Some(3));
    assert_eq!(stats.get_f64("nps").ok(), Some(0.0));
}

#[tokio::test]
async fn ready_reports_the_watchers_and_metrics_show_the_background_work() {
    let app = spawn_full_app().await;
    let body = wait_ready(&app).await;
    let components: Vec<&str> = body["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        components.contains(&"watchers") && components.contains(&"store"),
        "{body}"
    );
    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("metrics text");
    for name in [
        "keel_http_requests_total",
        "keel_store_op_duration_seconds",
        "keel_worker_threads",
        "keel_watcher_up",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
}

/// Polls `/api/ready` until 200 and returns its body.
async fn wait_ready(app: &TestApp) -> serde_json::Value {
    eventually("/api/ready to answer 200", || async {
        let response = app.get_ready().await;
        if response.status() == 200 {
            Some(body(response).await)
        } else {
            None
        }
    })
    .await
}

fn keel_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keel"))
}

#[tokio::test]
async fn an_isolated_job_over_its_memory_limit_is_stopped_without_harming_the_caller() {
    let runner = IsolatedRunner::new(keel_binary(), 256, DEADLINE, 2, 4);
    let runaway = runner
        .run("keel.allocate", &serde_json::json!({ "mb": 1024 }))
        .await;
    assert!(
        matches!(
            runaway,
            Err(WorkerError::MemoryLimitExceeded { limit_mb: 256, .. })
        ),
        "{runaway:?}"
    );
    // The same kind within the limit works, and so does the reference job.
    let modest = runner
        .run("keel.allocate", &serde_json::json!({ "mb": 16 }))
        .await;
    assert_eq!(
        modest.ok().map(|v| v["allocatedMb"].clone()),
        Some(serde_json::json!(16))
    );
    let batch = serde_json::json!({
        "batchId": "b-1", "taxRate": 0.2,
        "orders": [ { "id": "o-1", "lines": [ { "sku": "A", "qty": 2, "price": 19.99 } ] } ]
    });
    let priced = runner
        .run("process-orders", &batch)
        .await
        .expect("priced in the child");
    assert_eq!(priced["processed"], 1);
    assert_eq!(priced["priced"][0]["totalCents"], 4798);
}

#[tokio::test]
async fn keel_task_run_processes_the_items_and_exits_0() {
    let work_dir = tempfile::tempdir().expect("temporary work directory");
    let config = keel::store::DatabaseConfig {
        url: keel::secrets::Secret::new(format!(
            "embedded://{}",
            work_dir.path().join("data").display()
        )),
        ..Default::default()
    };
    let store = Store::connect(&config).await.expect("opening the store");
    let items = store.collection("items");
    items
        .insert_one(doc! { "name": "Acme Anvil", "price": 19.99 })
        .await
        .expect("insert");
    items
        .insert_one(doc! { "name": "Broken", "price": "n/a" })
        .await
        .expect("insert");
    for n in 1..=5 {
        items
            .insert_one(doc! { "name": format!("Item {n}"), "price": f64::from(n) })
            .await
            .expect("insert");
    }
    store.close().await.expect("closing the store");

    // Batches of two: each batch starts after the last item of the one before.
    let output = keel_command(&["task", "run", "process-data"], &work_dir)
        .env("KEEL_TASKS__PROCESS_DATA__BATCH_SIZE", "2")
        .output()
        .await
        .expect("running keel task run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("success, 6 processed, 1 rejected"),
        "{stdout}"
    );

    let store = Store::connect(&config).await.expect("reopening the store");
    let anvil = store
        .collection("items")
        .find_one(doc! { "name": "Acme Anvil" }, FindOptions::default())
        .await
        .expect("query")
        .expect("item");
    assert_eq!(anvil.get_str("slug").ok(), Some("acme-anvil"));
    assert_eq!(anvil.get_i64("priceCents").ok(), Some(1999));
    let items = store.collection("items");
    assert_eq!(items.count(doc! { "processed": true }).await.ok(), Some(6));
    assert_eq!(items.count(doc! { "processed": false }).await.ok(), Some(1));
    let run = store
        .collection("task_runs")
        .find_one(doc! { "task": "process-data" }, FindOptions::default())
        .await
        .expect("query")
        .expect("a run record");
    assert_eq!(run.get_str("outcome").ok(), Some("success"));
    store.close().await.expect("closing the store");

    let unknown = keel_command(&["task", "run", "no-such-task"], &work_dir)
        .output()
        .await
        .expect("running keel");
    assert_eq!(unknown.status.code(), Some(1));
}

#[tokio::test]
async fn post_orders_process_prices_the_callers_pending_orders_on_the_pool() {
    use crate::api_support::{expect_error, spawn_app};
    use reqwest::{Method, StatusCode};

    let app = spawn_app().await;
    let alice = app.register("pricing-alice@example.com").await;
    let bob = app.register("pricing-bob@example.com").await;
    let order = serde_json::json!({"lines": [{"sku": "BULK", "qty": 10, "price": 60.0}]});
    let mut ids = Vec::new();
    for login in [&alice, &alice, &bob] {
        let created = app
            .request(Method::POST, "/api/orders", Some(&login.cookie))
            .json(&order)
            .send()
            .await
            .expect("POST /api/orders");
        ids.push(
            body(created).await["data"]["_id"]
                .as_str()
                .expect("an id")
                .to_owned(),
        );
    }
    let unknown = bson::oid::ObjectId::new().to_hex();
    let process = |ids: serde_json::Value| {
        app.request(Method::POST, "/api/orders/process", Some(&alice.cookie))
            .json(&serde_json::json!({ "orderIds": ids }))
            .send()
    };
    let response = process(serde_json::json!([ids[0], ids[1], ids[2], unknown]))
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::OK);
    let result = body(response).await;
    assert_eq!(result["data"]["processed"], 2, "{result}");
    let failed: Vec<&str> = result["data"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["orderId"].as_str())
        .collect();
    assert_eq!(
        failed,
        [ids[2].as_str(), unknown.as_str()],
        "bob's order and the unknown id"
    );
    let own = body(
        app.get(&format!("/api/orders/{}", ids[0]), Some(&alice.cookie))
            .await,
    )
    .await;
    assert_eq!(own["data"]["status"], "processed");
    let theirs = body(
        app.get(&format!("/api/orders/{}", ids[2]), Some(&bob.cookie))
            .await,
    )
    .await;
    assert_eq!(theirs["data"]["status"], "pending");
    // Processed once: a second call finds nothing pending.
    let again = body(process(serde_json::json!([ids[0]])).await.expect("POST")).await;
    assert_eq!(again["data"]["processed"], 0);

    expect_error(
        process(serde_json::json!([])).await.expect("POST"),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    expect_error(
        process(serde_json::json!(["not-an-id"]))
            .await
            .expect("POST"),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    let anonymous = app
        .request(Method::POST, "/api/orders/process", None)
        .json(&serde_json::json!({ "orderIds": [ids[0]] }))
        .send()
        .await
        .expect("POST");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
