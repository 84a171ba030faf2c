//! The orders importer against a real (temporary, embedded) store.

use bson::{Bson, doc};
use keel::store::FindOptions;
use keel::tasks::{Task, TaskConfig, TaskContext};
use tokio_util::sync::CancellationToken;

use super::importer::OrderImporter;
use crate::support::store::TemporaryStore;

/// A task context that no scheduler or lock owns.
fn context(name: &str) -> TaskContext {
    TaskContext::detached(name, TaskConfig::default(), CancellationToken::new())
}

#[tokio::test]
async fn the_importer_neither_loses_nor_duplicates_across_a_crash_and_keeps_invalid_documents() {
    let test = TemporaryStore::embedded().await.expect("a temporary store");
    let store = test.store.clone();
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

/// A holder of the importer's lock that paused past its lease (GC pause, partition) wakes up
/// and deletes an inbox document its successor has meanwhile set aside: the fence refuses it.
#[tokio::test]
async fn a_stale_lock_holders_write_is_refused_by_the_fence() {
    use std::time::{Duration, Instant};

    use keel::lock::{Locks, Renewal};

    use crate::orders::repository::OrderRepository;

    let test = TemporaryStore::embedded().await.expect("a temporary store");
    let store = test.store.clone();
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

    let repository = OrderRepository::new(&store);
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
