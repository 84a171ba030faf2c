//! Poison events: an event a watcher's handler keeps failing on would block the watcher (and
//! everything behind it in the feed) forever. After `watchers.max_event_attempts` failures on
//! the same event it is recorded in `watcher_poison_events` — `{watcher, collection,
//! documentId, op, resumeToken, error, attempts, at}` — counted in
//! `keel_watcher_poison_events_total`, logged as `evt watcher/poisonEvent`, and skipped.
//! An operator fixes the document or the handler and replays it by hand (docs/background.md).

use bson::doc;

use crate::store::{ChangeEvent, Collection, Store, StoreError};

pub const POISON_COLLECTION: &str = "watcher_poison_events";

#[derive(Clone)]
pub(super) struct PoisonEvents {
    collection: Collection,
}

impl PoisonEvents {
    pub(super) fn new(store: &Store) -> Self {
        PoisonEvents {
            collection: store.collection(POISON_COLLECTION),
        }
    }

    pub(super) async fn record(
        &self,
        watcher: &str,
        collection: &str,
        event: &ChangeEvent,
        error: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        self.collection
            .insert_one(doc! {
                "watcher": watcher,
                "collection": collection,
                "documentId": event.id.clone(),
                "op": format!("{:?}", event.op).to_lowercase(),
                "resumeToken": event.resume_token.0.clone(),
                "error": crate::store::input::safe_string(error, 2000),
                "attempts": i64::from(attempts),
                "at": bson::DateTime::now(),
            })
            .await
            .map(|_| ())
    }
}
