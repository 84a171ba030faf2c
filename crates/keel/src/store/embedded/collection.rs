//! One collection of the embedded store: parses each request (so malformed input fails
//! before touching the database), then runs it in the writer thread (writes) or on a read
//! connection (reads).

use std::sync::Arc;

use bson::{Bson, Document, RawDocumentBuf};

use super::super::engine::{Filter, Pipeline, Projection, Sort, Update};
use super::super::{
    BulkWriteResult, ChangeStream, FindOneAndUpdateOptions, FindOptions, IndexSpec, PageVisitor,
    ReturnDocument, StoreResult, UpdateOptions, UpdateResult, WatchOptions, WriteOp,
};
use super::reader::{self, Query, ReadSize};
use super::schema::{self, IndexMeta};
use super::{Inner, bulk, changes, ops, scan};

#[derive(Clone)]
pub struct EmbeddedCollection {
    inner: Arc<Inner>,
    name: Arc<str>,
}

fn find_query(filter: &Document, options: FindOptions) -> StoreResult<Query> {
    Ok(Query {
        filter: Filter::parse(filter)?,
        sort: options.sort.as_ref().map(Sort::parse).transpose()?,
        skip: usize::try_from(options.skip.unwrap_or(0)).unwrap_or(usize::MAX),
        limit: match options.limit {
            None | Some(0) => None,
            Some(limit) => Some(usize::try_from(limit.unsigned_abs()).unwrap_or(usize::MAX)),
        },
        projection: options
            .projection
            .as_ref()
            .map(Projection::parse)
            .transpose()?,
    })
}

impl EmbeddedCollection {
    pub(super) fn new(inner: Arc<Inner>, name: &str) -> EmbeddedCollection {
        EmbeddedCollection {
            inner,
            name: Arc::from(name),
        }
    }

    pub async fn insert_one(&self, document: Document) -> StoreResult<Bson> {
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| ops::insert(txn, &name, document).map(|(id, _)| id))
            .await
    }

    /// Ordered: the documents before a failing one stay inserted (as with MongoDB).
    pub async fn insert_many(&self, documents: Vec<Document>) -> StoreResult<Vec<Bson>> {
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| {
                let mut ids = Vec::with_capacity(documents.len());
                for document in documents {
                    match txn.atomically(|txn| ops::insert(txn, &name, document)) {
                        Ok((id, _)) => ids.push(id),
                        Err(error) => return Ok(Err(error)),
                    }
                }
                Ok(Ok(ids))
            })
            .await?
    }

    pub async fn find(&self, filter: Document, options: FindOptions) -> StoreResult<Vec<Document>> {
        self.run_find(filter, options, |conn, catalog, name, query| {
            reader::find(conn, catalog, name, query)
        })
        .await
    }

    /// `find` as the stored bytes (typed reads decode them without building a `Document`).
    pub async fn find_raw(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Vec<RawDocumentBuf>> {
        self.run_find(filter, options, reader::find_raw).await
    }

    /// `find_raw`, each document handed to `visitor` on the calling thread as it is read. A
    /// bounded read (`ReadSize`) runs right here, so the visitor gets the bytes SQLite holds
    /// for the row, and a remembered page's stamp (`reader::each_raw`); any other read runs
    /// off the async workers and the visitor gets its result.
    pub async fn find_page(
        &self,
        filter: Document,
        options: FindOptions,
        visitor: &mut impl PageVisitor,
    ) -> StoreResult<()> {
        let query = find_query(&filter, options)?;
        let readers = &self.inner.readers;
        if query.size(&self.inner.published_catalog(), &self.name) == ReadSize::Bounded {
            return readers
                .read_here(|conn, catalog| {
                    reader::each_raw(conn, catalog, &self.name, &query, visitor)
                })
                .await;
        }
        let name = Arc::clone(&self.name);
        let found = readers
            .read(ReadSize::Unbounded, move |conn, catalog| {
                reader::find_raw(conn, catalog, &name, &query)
            })
            .await?;
        found
            .iter()
            .try_for_each(|document| visitor.document(document))
    }

    /// Parses a find and runs `find` on a reader, on the calling thread when it is bounded.
    async fn run_find<T: Send + 'static>(
        &self,
        filter: Document,
        options: FindOptions,
        find: fn(&reader::Reader, &schema::Catalog, &str, &Query) -> StoreResult<Vec<T>>,
    ) -> StoreResult<Vec<T>> {
        let query = find_query(&filter, options)?;
        let size = query.size(&self.inner.published_catalog(), &self.name);
        let name = Arc::clone(&self.name);
        self.inner
            .readers
            .read(size, move |conn, catalog| {
                find(conn, catalog, &name, &query)
            })
            .await
    }

    pub async fn find_one(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Option<Document>> {
        let found = self.find(filter, options.limit(1)).await?;
        Ok(found.into_iter().next())
    }

    pub async fn count(&self, filter: Document) -> StoreResult<u64> {
        let filter = Filter::parse(&filter)?;
        let size = reader::count_size(&self.inner.published_catalog(), &self.name, &filter);
        let name = Arc::clone(&self.name);
        self.inner
            .readers
            .read(size, move |conn, catalog| {
                reader::count(conn, catalog, &name, &filter)
            })
            .await
    }

    pub async fn update_one(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateResult> {
        self.update(filter, update, options, false).await
    }

    pub async fn update_many(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateResult> {
        self.update(filter, update, options, true).await
    }

    async fn update(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
        multi: bool,
    ) -> StoreResult<UpdateResult> {
        let (filter, update) = (Filter::parse(&filter)?, Update::parse(&update)?);
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| ops::update(txn, &name, &filter, &update, multi, options.upsert))
            .await
    }

    pub async fn find_one_and_update(
        &self,
        filter: Document,
        update: Document,
        options: FindOneAndUpdateOptions,
    ) -> StoreResult<Option<Document>> {
        let request = ops::FindAndUpdate {
            filter: Filter::parse(&filter)?,
            update: Update::parse(&update)?,
            sort: options.sort.as_ref().map(Sort::parse).transpose()?,
            upsert: options.upsert,
            return_after: options.return_document == ReturnDocument::After,
        };
        let projection = options
            .projection
            .as_ref()
            .map(Projection::parse)
            .transpose()?;
        let name = Arc::clone(&self.name);
        let found = self
            .inner
            .writer
            .run(move |txn| ops::find_one_and_update(txn, &name, &request))
            .await?;
        Ok(match (found, projection) {
            (Some(document), Some(projection)) => Some(projection.apply(&document)),
            (found, _) => found,
        })
    }

    pub async fn delete_one(&self, filter: Document) -> StoreResult<u64> {
        self.delete(filter, false).await
    }

    pub async fn delete_many(&self, filter: Document) -> StoreResult<u64> {
        self.delete(filter, true).await
    }

    async fn delete(&self, filter: Document, multi: bool) -> StoreResult<u64> {
        let filter = Filter::parse(&filter)?;
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| ops::delete(txn, &name, &filter, multi))
            .await
    }

    pub async fn aggregate(&self, pipeline: Vec<Document>) -> StoreResult<Vec<Document>> {
        let pipeline = Pipeline::parse(&pipeline)?;
        let name = Arc::clone(&self.name);
        self.inner
            .readers
            .read(ReadSize::Unbounded, move |conn, catalog| {
                let everything;
                let filter = match pipeline.leading_filter() {
                    Some(filter) => filter,
                    None => {
                        everything = Filter::parse(&Document::new())?;
                        &everything
                    }
                };
                let documents = match catalog.collections.get(&*name) {
                    Some(meta) => scan::collect(conn, meta, filter, None)?
                        .into_iter()
                        .map(|(_, document)| document)
                        .collect(),
                    None => Vec::new(),
                };
                pipeline.run(documents)
            })
            .await
    }

    pub async fn bulk_write(&self, operations: Vec<WriteOp>) -> StoreResult<BulkWriteResult> {
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| Ok(bulk::run(txn, &name, operations)))
            .await
    }

    pub async fn create_index(&self, spec: IndexSpec) -> StoreResult<String> {
        let Some(index) = IndexMeta::from_spec(&spec)? else {
            return Ok(schema::ID_INDEX.to_owned());
        };
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| ops::create_index(txn, &name, index))
            .await
    }

    pub async fn watch(&self, options: WatchOptions) -> StoreResult<ChangeStream> {
        if self.inner.writer.is_closed() {
            return Err(super::closed());
        }
        changes::watch_collection(
            Arc::clone(&self.inner.readers),
            self.inner.high_water.clone(),
            &self.name,
            options,
        )
        .await
    }
}
