//! The change feed: every committed change, in order, resumable after any event.

use std::time::Duration;

use anyhow::Context;
use bson::{Bson, doc};
use futures::StreamExt;
use keel::store::{ChangeEvent, ChangeOp, ChangeStream, UpdateOptions, WatchOptions};

/// The next event, failing the test if none arrives in time.
pub async fn next_event(stream: &mut ChangeStream) -> anyhow::Result<ChangeEvent> {
    let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .context("no change event within 20 s")?
        .context("the change stream ended")??;
    Ok(event)
}

conformance!(change_feed_delivers_every_change_in_commit_order, |store| {
    let items = store.collection("items");
    let mut feed = items.watch(WatchOptions::default()).await?;
    items.insert_one(doc! {"_id": 1, "n": 1}).await?;
    items
        .update_one(
            doc! {"_id": 1},
            doc! {"$inc": {"n": 1}},
            UpdateOptions::default(),
        )
        .await?;
    items.insert_one(doc! {"_id": 2, "n": 1}).await?;

    // Read the first events before the delete: MongoDB's `updateLookup` reads the full
    // document when the event is delivered, so a document deleted since has none.
    let insert = next_event(&mut feed).await?;
    assert_eq!((insert.op, &insert.id), (ChangeOp::Insert, &Bson::Int32(1)));
    assert_eq!(insert.full_document, Some(doc! {"_id": 1, "n": 1}));
    let update = next_event(&mut feed).await?;
    assert_eq!((update.op, &update.id), (ChangeOp::Update, &Bson::Int32(1)));
    assert_eq!(update.full_document, Some(doc! {"_id": 1, "n": 2}));
    items.delete_one(doc! {"_id": 1}).await?;
    store
        .collection("other")
        .insert_one(doc! {"_id": 3})
        .await?;
    let second = next_event(&mut feed).await?;
    assert_eq!((second.op, &second.id), (ChangeOp::Insert, &Bson::Int32(2)));
    let delete = next_event(&mut feed).await?;
    assert_eq!((delete.op, &delete.id), (ChangeOp::Delete, &Bson::Int32(1)));
    assert_eq!(delete.full_document, None);
    Ok(())
});

conformance!(
    resuming_after_a_token_continues_with_the_next_event,
    |store| {
        let items = store.collection("items");
        let mut feed = items.watch(WatchOptions::default()).await?;
        for n in 1..=4 {
            items.insert_one(doc! {"_id": n}).await?;
        }
        next_event(&mut feed).await?;
        let second = next_event(&mut feed).await?;
        drop(feed);
        let mut resumed = items
            .watch(WatchOptions {
                resume_after: Some(second.resume_token),
                ..Default::default()
            })
            .await?;
        assert_eq!(next_event(&mut resumed).await?.id, Bson::Int32(3));
        assert_eq!(next_event(&mut resumed).await?.id, Bson::Int32(4));
        items.insert_one(doc! {"_id": 5}).await?;
        assert_eq!(
            next_event(&mut resumed).await?.id,
            Bson::Int32(5),
            "then tails live"
        );
        Ok(())
    }
);

conformance!(watch_filter_and_ops_select_events, |store| {
    let orders = store.collection("orders");
    let mut paid = orders
        .watch(WatchOptions {
            filter: Some(doc! {"state": "paid"}),
            ..Default::default()
        })
        .await?;
    let mut deletes = orders
        .watch(WatchOptions {
            ops: Some(vec![ChangeOp::Delete]),
            ..Default::default()
        })
        .await?;
    orders.insert_one(doc! {"_id": 1, "state": "new"}).await?;
    orders
        .update_one(
            doc! {"_id": 1},
            doc! {"$set": {"state": "paid"}},
            UpdateOptions::default(),
        )
        .await?;
    // Read the update before deleting (MongoDB looks the full document up at delivery).
    let event = next_event(&mut paid).await?;
    assert_eq!(event.op, ChangeOp::Update);
    assert_eq!(event.full_document, Some(doc! {"_id": 1, "state": "paid"}));
    orders.delete_one(doc! {"_id": 1}).await?;
    assert_eq!(next_event(&mut deletes).await?.op, ChangeOp::Delete);
    Ok(())
});

conformance!(several_watchers_each_see_every_event, |store| {
    let items = store.collection("items");
    let mut feeds = Vec::new();
    for _ in 0..4 {
        feeds.push(items.watch(WatchOptions::default()).await?);
    }
    let writes = 50;
    for n in 0..writes {
        items.insert_one(doc! {"_id": n}).await?;
    }
    for feed in &mut feeds {
        for n in 0..writes {
            assert_eq!(next_event(feed).await?.id, Bson::Int32(n));
        }
    }
    Ok(())
});
