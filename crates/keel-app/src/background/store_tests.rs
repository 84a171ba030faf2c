//! The reference tasks and watchers against a real (temporary, embedded) store.

use bson::{Bson, doc};
use keel::secrets::Secret;
use keel::store::{ChangeEvent, ChangeOp, DatabaseConfig, FindOptions, ResumeToken, Store};
use keel::tasks::{Task, TaskConfig, TaskContext};
use keel::watchers::Watcher;
use tokio_util::sync::CancellationToken;

use super::order_importer::OrderImporter;
use super::surveys_watcher::SurveysWatcher;

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.path().display())),
        ..DatabaseConfig::default()
    };
    (Store::connect(&config).await.expect("embedded store"), dir)
}

fn context(name: &str) -> TaskContext {
    TaskContext::detached(name, TaskConfig::default(), CancellationToken::new())
}

#[tokio::test]
async fn the_importer_neither_loses_nor_duplicates_across_a_crash_and_keeps_invalid_documents() {
    let (store, _dir) = store().await;
    let inbox = store.collection("orders_inbox");
    let line = doc! { "sku": "A", "qty": 1, "price": 10.0 };
    for id in ["x3-1", "x3-2", "x3-3"] {
        inbox
            .insert_one(doc! { "_id": id, "lines": [line.clone()] })
            .await
            .expect("insert");
    }
    inbox
        .insert_one(doc! { "_id": "x3-bad", "lines": "none" })
        .await
        .expect("insert");
    // A previous run inserted x3-2 into orders and crashed before removing it from the inbox.
    store
        .collection("orders")
        .insert_one(doc! { "_id": "x3-2", "lines": [line.clone()], "status": "pending" })
        .await
        .expect("insert");

    let importer = OrderImporter::new(&store, 0.1);
    let summary = importer
        .run(&context("order-importer"))
        .await
        .expect("the run succeeds");
    assert_eq!((summary.processed, summary.rejected), (3, 1));
    assert_eq!(
        store
            .collection("orders")
            .count(doc! {})
            .await
            .expect("count"),
        3
    );
    let left = inbox
        .find(doc! {}, FindOptions::default())
        .await
        .expect("find");
    assert_eq!(left.len(), 1, "only the invalid document stays");
    assert_eq!(left[0].get_str("_id").ok(), Some("x3-bad"));
    assert!(
        left[0]
            .get_str("importError")
            .is_ok_and(|e| e.contains("lines"))
    );

    let again = importer
        .run(&context("order-importer"))
        .await
        .expect("the re-run succeeds");
    assert_eq!((again.processed, again.rejected), (0, 0));
}

#[tokio::test]
async fn two_surveys_watchers_count_a_completed_survey_once() {
    let (store, _dir) = store().await;
    let completed_at = bson::DateTime::parse_rfc3339_str("2026-05-06T08:00:00Z").expect("date");
    let survey = doc! { "_id": "s-1", "status": "completed", "score": 9, "processed": false, "completedAt": completed_at };
    store
        .collection("surveys")
        .insert_one(survey.clone())
        .await
        .expect("insert");
    let event = ChangeEvent {
        op: ChangeOp::Insert,
        id: Bson::String("s-1".into()),
        full_document: Some(survey),
        resume_token: ResumeToken(doc! {}),
        cluster_time: None,
    };
    let (first, second) = (SurveysWatcher::new(&store), SurveysWatcher::new(&store));
    let (a, b) = tokio::join!(first.handle(&event), second.handle(&event));
    a.expect("first instance");
    b.expect("second instance");
    // A replay after a restart changes nothing either.
    first.handle(&event).await.expect("replay");
    let stats = store
        .collection("survey_stats")
        .find_one(doc! { "_id": "2026-05-06" }, FindOptions::default())
        .await
        .expect("find")
        .expect("stats for the day");
    assert_eq!(stats.get_i64("responses").ok(), Some(1));
    assert_eq!(stats.get_i64("promoters").ok(), Some(1));
    assert_eq!(stats.get_f64("nps").ok(), Some(100.0));
}

/// A holder of the importer's lock that paused past its lease (GC pause, partition) wakes up
/// and deletes an inbox document its successor has meanwhile set aside: the fence refuses it.
#[tokio::test]
async fn a_stale_lock_holders_write_is_refused_by_the_fence() {
    use std::time::{Duration, Instant};

    use keel::lock::{Locks, Renewal};

    use super::repository::BackgroundRepository;

    let (store, _dir) = store().await;
    let inbox = store.collection("orders_inbox");
    inbox
        .insert_one(doc! { "_id": "x9", "lines": "none" })
        .await
        .expect("insert");
    let ttl = Duration::from_millis(200);
    let stale = Locks::new(&store)
        .acquire_with("order-importer", ttl, Renewal::Manual)
        .await
        .expect("acquire")
        .expect("a free lock is taken");
    let deadline = Instant::now() + Duration::from_secs(10);
    let successor = loop {
        if let Some(lease) = Locks::new(&store)
            .acquire("order-importer", ttl)
            .await
            .expect("acquire")
        {
            break lease;
        }
        assert!(
            Instant::now() < deadline,
            "the expired lock was never taken over"
        );
        tokio::task::yield_now().await;
    };
    assert!(stale.is_lost());
    assert!(successor.token() > stale.token());

    let repository = BackgroundRepository::new(&store);
    repository
        .mark_inbox_invalid(
            &Bson::from("x9"),
            "lines must be an array",
            Some(&successor.fence()),
        )
        .await
        .expect("the successor's write");
    repository
        .remove_from_inbox(&Bson::from("x9"), Some(&stale.fence()))
        .await
        .expect("the stale write runs");
    let kept = inbox
        .find_one(doc! { "_id": "x9" }, FindOptions::default())
        .await
        .expect("find")
        .expect("the stale holder's delete matched nothing");
    assert_eq!(
        kept.get_str("importError").ok(),
        Some("lines must be an array")
    );

    // The current holder's own writes still go through.
    repository
        .remove_from_inbox(&Bson::from("x9"), Some(&successor.fence()))
        .await
        .expect("delete");
    assert_eq!(inbox.count(doc! {}).await.expect("count"), 0);
}
