//! TTL indexes: expired documents disappear on their own (MongoDB's monitor runs every 60 s,
//! the embedded test store sweeps every 100 ms).

use std::time::Duration;

use bson::doc;
use keel::store::IndexSpec;

use crate::support::eventually_within;

conformance!(expired_documents_are_deleted_and_live_ones_kept, |store| {
    let sessions = store.collection("sessions");
    sessions
        .create_index(IndexSpec::new(doc! {"expires_at": 1}).ttl(Duration::ZERO))
        .await?;
    let now = bson::DateTime::now().timestamp_millis();
    let past = bson::DateTime::from_millis(now - 3_600_000);
    let future = bson::DateTime::from_millis(now + 3_600_000);
    sessions
        .insert_one(doc! {"_id": "old", "expires_at": past})
        .await?;
    sessions
        .insert_one(doc! {"_id": "new", "expires_at": future})
        .await?;
    sessions
        .insert_one(doc! {"_id": "no-date", "expires_at": "soon"})
        .await?;
    // MongoDB's TTL monitor runs every 60 s: up to two passes.
    eventually_within(
        "the expired document to be deleted",
        Duration::from_secs(150),
        || async { Ok((sessions.count(doc! {"_id": "old"}).await? == 0).then_some(())) },
    )
    .await;
    assert_eq!(
        sessions.count(doc! {}).await?,
        2,
        "only the expired document is deleted"
    );
    Ok(())
});
