//! The MongoDB backend: the official `mongodb` driver behind the store's methods.
//!
//! This module and its children are the only code in keel that names the driver — the guides'
//! `db.js` rule: a driver upgrade changes these files and is proven by the conformance suite
//! (`tests/store/`, run with `KEEL_TEST_MONGODB_URL`), nothing else. Option and pipeline
//! building lives in `options` and `watch`, error mapping in `errors`, so all of it is
//! unit-tested without a server; this file only sequences calls.

mod bulk;
mod errors;
mod options;
mod watch;

use std::sync::Arc;

use bson::{Bson, Document, RawDocumentBuf, doc};
use futures::TryStreamExt;
use mongodb::{Client, Database};

use super::{
    BulkWriteResult, ChangeStream, DatabaseConfig, FindOneAndUpdateOptions, FindOptions, IndexSpec,
    PageVisitor, StoreResult, UpdateOptions, UpdateResult, WatchOptions, WriteOp,
};
use errors::store_error;

/// A connected client and the database keel uses. Cheap to clone (the driver's `Client` is an
/// `Arc` around the pool).
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    database: Database,
    /// `host:port,…` of the URL: the only part of it logs may show.
    hosts: Arc<str>,
}

impl MongoStore {
    /// Connects, proves the server answers (`ping`) and, when `require_change_streams` is set,
    /// that it can serve change streams (a replica set or mongos).
    #[tracing::instrument(name = "store.mongo.connect", skip_all)]
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<MongoStore> {
        let store = MongoStore::connect_lazily(config).await?;
        store.check_server(config.require_change_streams).await?;
        Ok(store)
    }

    /// Builds the client without talking to the server: the driver connects when an operation
    /// first needs a connection and reconnects by itself after an outage. `keel serve` starts
    /// this way so a server that is down at start is waited for, not fatal (`check_server`
    /// says when it answers).
    pub async fn connect_lazily(config: &DatabaseConfig) -> StoreResult<MongoStore> {
        let options = options::client_options(config).await?;
        let hosts: Arc<str> = Arc::from(options::host_list(&options));
        let database_name = options::database_name(&options);
        tracing::info!(hosts = %hosts, database = %database_name, "connecting to MongoDB");
        let client = Client::with_options(options)
            .map_err(|e| store_error(&format!("creating a MongoDB client for {hosts}"), e))?;
        Ok(MongoStore {
            database: client.database(&database_name),
            client,
            hosts,
        })
    }

    /// Proves the server answers (`ping`) and, with `require_change_streams`, that it can serve
    /// change streams. `Unavailable` while it is out of reach.
    pub async fn check_server(&self, require_change_streams: bool) -> StoreResult<()> {
        self.ping().await?;
        if require_change_streams {
            let hello = self
                .database
                .run_command(doc! { "hello": 1 })
                .await
                .map_err(|e| store_error(&format!("hello to MongoDB at {}", self.hosts), e))?;
            options::check_change_stream_support(&hello)?;
        }
        tracing::info!(hosts = %self.hosts, "connected to MongoDB");
        Ok(())
    }

    /// `host:port,…` of the URL: the only part of it logs may show.
    pub fn hosts(&self) -> &str {
        &self.hosts
    }

    pub fn collection(&self, name: &str) -> MongoCollection {
        MongoCollection {
            inner: self.database.collection(name),
        }
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(|e| store_error(&format!("ping MongoDB at {}", self.hosts), e))
    }

    /// Closes every connection now; operations still in flight and later ones fail with
    /// `Unavailable`. Open change streams end.
    pub async fn close(&self) -> StoreResult<()> {
        self.client.clone().shutdown().immediate(true).await;
        tracing::info!(hosts = %self.hosts, "MongoDB connections closed");
        Ok(())
    }
}

/// One collection, as the driver's typed handle on plain documents.
#[derive(Clone)]
pub struct MongoCollection {
    inner: mongodb::Collection<Document>,
}

impl MongoCollection {
    /// "insert_one on users": the context every error of this collection carries.
    fn context(&self, operation: &str) -> String {
        format!("{operation} on {}", self.inner.name())
    }

    pub async fn insert_one(&self, document: Document) -> StoreResult<Bson> {
        self.inner
            .insert_one(document)
            .await
            .map(|r| r.inserted_id)
            .map_err(|e| store_error(&self.context("insert_one"), e))
    }

    /// Ordered: stops at the first error, as `Collection::insert_many` promises.
    pub async fn insert_many(&self, documents: Vec<Document>) -> StoreResult<Vec<Bson>> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let result = self
            .inner
            .insert_many(documents)
            .ordered(true)
            .await
            .map_err(|e| store_error(&self.context("insert_many"), e))?;
        let mut ids: Vec<(usize, Bson)> = result.inserted_ids.into_iter().collect();
        ids.sort_by_key(|(index, _)| *index);
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    pub async fn find(&self, filter: Document, options: FindOptions) -> StoreResult<Vec<Document>> {
        self.find_as_type(filter, options).await
    }

    /// `find` as the server's BSON, for typed reads (no `Document` built).
    pub async fn find_raw(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Vec<RawDocumentBuf>> {
        self.find_as_type(filter, options).await
    }

    /// `find_raw`, each document handed to `visitor` as the cursor yields it (no stamp).
    pub async fn find_page(
        &self,
        filter: Document,
        options: FindOptions,
        visitor: &mut (impl PageVisitor + Send),
    ) -> StoreResult<()> {
        let context = || self.context("find");
        let mut cursor = self
            .inner
            .clone_with_type::<RawDocumentBuf>()
            .find(filter)
            .with_options(options::find_options(options))
            .await
            .map_err(|e| store_error(&context(), e))?;
        while let Some(document) = cursor
            .try_next()
            .await
            .map_err(|e| store_error(&context(), e))?
        {
            visitor.document(&document)?;
        }
        Ok(())
    }

    /// `find`, each document as the driver decodes it into `T`.
    async fn find_as_type<T>(&self, filter: Document, options: FindOptions) -> StoreResult<Vec<T>>
    where
        T: serde::de::DeserializeOwned + Send + Sync,
    {
        let context = || self.context("find");
        self.inner
            .clone_with_type::<T>()
            .find(filter)
            .with_options(options::find_options(options))
            .await
            .map_err(|e| store_error(&context(), e))?
            .try_collect()
            .await
            .map_err(|e| store_error(&context(), e))
    }

    pub async fn find_one(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Option<Document>> {
        self.inner
            .find_one(filter)
            .with_options(options::find_one_options(options))
            .await
            .map_err(|e| store_error(&self.context("find_one"), e))
    }

    pub async fn count(&self, filter: Document) -> StoreResult<u64> {
        self.inner
            .count_documents(filter)
            .await
            .map_err(|e| store_error(&self.context("count"), e))
    }

    pub async fn update_one(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateResult> {
        self.inner
            .update_one(filter, update)
            .with_options(options::update_options(options))
            .await
            .map(update_result)
            .map_err(|e| store_error(&self.context("update_one"), e))
    }

    pub async fn update_many(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateResult> {
        self.inner
            .update_many(filter, update)
            .with_options(options::update_options(options))
            .await
            .map(update_result)
            .map_err(|e| store_error(&self.context("update_many"), e))
    }

    pub async fn find_one_and_update(
        &self,
        filter: Document,
        update: Document,
        options: FindOneAndUpdateOptions,
    ) -> StoreResult<Option<Document>> {
        self.inner
            .find_one_and_update(filter, update)
            .with_options(options::find_one_and_update_options(options))
            .await
            .map_err(|e| store_error(&self.context("find_one_and_update"), e))
    }

    pub async fn delete_one(&self, filter: Document) -> StoreResult<u64> {
        self.inner
            .delete_one(filter)
            .await
            .map(|r| r.deleted_count)
            .map_err(|e| store_error(&self.context("delete_one"), e))
    }

    pub async fn delete_many(&self, filter: Document) -> StoreResult<u64> {
        self.inner
            .delete_many(filter)
            .await
            .map(|r| r.deleted_count)
            .map_err(|e| store_error(&self.context("delete_many"), e))
    }

    pub async fn aggregate(&self, pipeline: Vec<Document>) -> StoreResult<Vec<Document>> {
        let context = || self.context("aggregate");
        self.inner
            .aggregate(pipeline)
            .await
            .map_err(|e| store_error(&context(), e))?
            .try_collect()
            .await
            .map_err(|e| store_error(&context(), e))
    }

    pub async fn bulk_write(&self, operations: Vec<WriteOp>) -> StoreResult<BulkWriteResult> {
        bulk::bulk_write(&self.inner, operations).await
    }

    pub async fn create_index(&self, spec: IndexSpec) -> StoreResult<String> {
        let model = options::index_model(&spec)?;
        self.inner
            .create_index(model)
            .await
            .map(|r| r.index_name)
            .map_err(|e| store_error(&self.context("create_index"), e))
    }

    pub async fn watch(&self, options: WatchOptions) -> StoreResult<ChangeStream> {
        watch::open(&self.inner, options).await
    }
}

fn update_result(result: mongodb::results::UpdateResult) -> UpdateResult {
    UpdateResult {
        matched: result.matched_count,
        modified: result.modified_count,
        upserted_id: result.upserted_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    /// Nothing listens on port 1: the connect must fail fast and say the store is unavailable
    /// (retryable), naming the host and not the credentials.
    #[tokio::test]
    async fn unreachable_server_is_unavailable_at_connect() {
        let config = DatabaseConfig {
            url: Secret::new("mongodb://app:s3cret@127.0.0.1:1/shop"),
            connect_timeout_ms: 200,
            server_selection_timeout_ms: 300,
            ..DatabaseConfig::default()
        };
        let Err(error) = MongoStore::connect(&config).await else {
            panic!("connected to a port nothing listens on");
        };
        assert!(error.is_retryable(), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
