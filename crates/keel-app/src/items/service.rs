//! Item use-cases, shared by the REST routes and the guides' `getData` / `createItem`, so both
//! doors lead to the same rules.

use bson::RawDocumentBuf;
use bson::oid::ObjectId;
use keel::store::{Store, StoreError};
use keel::validation::FieldErrors;

use super::filter::DataQuery;
use super::model::{ItemQuery, ItemRecord, ItemView, NewItem};
use super::repository::ItemRepository;
use crate::brands::service::BrandService;

#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    /// The guides' `hasValidBrand` failed: unknown or inactive brand (422).
    #[error("brand '{0}' does not exist or is not active")]
    BrandNotUsable(String),
    #[error("item not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stored items as the API shows them, decoded straight from their bytes.
fn views(items: &[RawDocumentBuf]) -> Result<Vec<ItemView>, StoreError> {
    items.iter().map(|raw| ItemView::from_raw(raw)).collect()
}

#[derive(Clone)]
pub struct ItemService {
    items: ItemRepository,
    brands: BrandService,
}

impl ItemService {
    pub fn new(store: &Store, brands: BrandService) -> Self {
        Self {
            items: ItemRepository::new(store),
            brands,
        }
    }

    /// Creates an item for an active brand.
    #[tracing::instrument(name = "items.create", skip_all, fields(brand = %item.brand.as_str()))]
    pub async fn create(
        &self,
        item: NewItem,
        created_by: ObjectId,
    ) -> Result<ItemRecord, ItemError> {
        if !self.brands.is_usable(&item.brand).await? {
            return Err(ItemError::BrandNotUsable(item.brand.as_str().to_string()));
        }
        let record = ItemRecord {
            id: ObjectId::new(),
            name: item.name.as_str().to_string(),
            brand: item.brand.as_str().to_string(),
            price: item.price.as_f64(),
            description: item.description,
            tags: item.tags,
            created_by: Some(created_by),
            created_at: bson::DateTime::now(),
            processed: false,
        };
        self.items.insert(&record).await?;
        Ok(record)
    }

    pub async fn get(&self, id: ObjectId) -> Result<ItemRecord, ItemError> {
        self.items.find_by_id(id).await?.ok_or(ItemError::NotFound)
    }

    /// A page of items and the total matching.
    pub async fn list(&self, query: &ItemQuery) -> Result<(Vec<ItemView>, u64), ItemError> {
        let (items, total) = self.items.list(query).await?;
        Ok((views(&items)?, total))
    }

    /// getData: the whitelisted filter, at most `limit` items.
    pub async fn query(&self, query: &DataQuery) -> Result<Vec<ItemView>, ItemError> {
        let items = self.items.find_matching(&query.filter, query.limit).await?;
        Ok(views(&items)?)
    }
}
