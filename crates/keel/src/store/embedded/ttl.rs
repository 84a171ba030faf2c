//! The background sweeper: deletes documents whose TTL index date has passed, and trims the
//! change log to its retention window.
//!
//! Like MongoDB's TTL monitor it runs periodically (`database.ttl_sweep_interval_ms`,
//! default 60 s), so a document lives at most about one interval past its expiry. Expired
//! documents are deleted through the normal delete path (`{field: {$lt: now - ttl}}` on the
//! TTL index), so watchers see their delete events. The task holds only a weak reference to
//! the store: it stops when the store is closed or dropped.

use std::sync::Weak;
use std::time::Duration;

use bson::doc;
use tokio::task::JoinHandle;

use super::super::engine::Filter;
use super::Inner;
use super::changes;
use super::ops;

pub fn spawn_sweeper(store: Weak<Inner>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(store) = store.upgrade() else { break };
            if store.readers.is_closed() {
                break;
            }
            sweep(&store).await;
        }
    })
}

/// One pass: trim the change log, then delete what every TTL index says has expired.
pub async fn sweep(store: &Inner) {
    let retention = store.retention;
    loop {
        match store
            .writer
            .run(move |txn| changes::trim(txn, retention))
            .await
        {
            Ok(true) => continue,
            Ok(false) => break,
            Err(error) => {
                tracing::warn!(%error, "trimming the change log failed");
                break;
            }
        }
    }
    let catalog = store.published_catalog();
    for (collection, meta) in &catalog.collections {
        for index in &meta.indexes {
            let (Some(expire_after), Some(field)) = (index.expire_after, index.fields.first())
            else {
                continue;
            };
            let cutoff = bson::DateTime::now().timestamp_millis()
                - i64::try_from(expire_after.as_millis()).unwrap_or(i64::MAX);
            let expired = doc! {field.as_str(): {"$lt": bson::DateTime::from_millis(cutoff)}};
            let filter = match Filter::parse(&expired) {
                Ok(filter) => filter,
                Err(error) => {
                    tracing::warn!(%error, index = %index.name, "cannot build the TTL filter");
                    continue;
                }
            };
            let name = collection.clone();
            match store
                .writer
                .run(move |txn| ops::delete(txn, &name, &filter, true))
                .await
            {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::debug!(collection = %collection, index = %index.name, deleted, "TTL sweep")
                }
                Err(error) => tracing::warn!(%error, collection = %collection, "TTL sweep failed"),
            }
        }
    }
}
