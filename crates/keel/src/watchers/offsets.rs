//! Saved watcher positions in `watcher_offsets`: `{_id: watcher name, token, updatedAt}`.

use bson::doc;

use crate::store::{Collection, FindOptions, ResumeToken, Store, StoreError, UpdateOptions};

pub const OFFSETS_COLLECTION: &str = "watcher_offsets";

#[derive(Clone)]
pub struct Offsets {
    collection: Collection,
}

impl Offsets {
    pub fn new(store: &Store) -> Self {
        Offsets {
            collection: store.collection(OFFSETS_COLLECTION),
        }
    }

    /// The position to resume after, or `None` for a watcher that never handled an event.
    pub async fn load(&self, watcher: &str) -> Result<Option<ResumeToken>, StoreError> {
        let saved = self
            .collection
            .find_one(doc! { "_id": watcher }, FindOptions::default())
            .await?;
        Ok(saved
            .and_then(|d| d.get_document("token").ok().cloned())
            .map(ResumeToken))
    }

    pub async fn save(&self, watcher: &str, token: &ResumeToken) -> Result<(), StoreError> {
        self.collection
            .update_one(
                doc! { "_id": watcher },
                doc! { "$set": { "token": token.0.clone(), "updatedAt": bson::DateTime::now() } },
                UpdateOptions { upsert: true },
            )
            .await?;
        Ok(())
    }

    /// Forgets the position: the next start follows the feed from now.
    pub async fn clear(&self, watcher: &str) -> Result<(), StoreError> {
        self.collection.delete_one(doc! { "_id": watcher }).await?;
        Ok(())
    }
}
