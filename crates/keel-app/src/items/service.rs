//! Item use-cases, shared by the REST routes and the guides' `getData` / `createItem`, so both
//! doors lead to the same rules.

use bson::oid::ObjectId;
use keel::http::JsonText;
use keel::store::{Store, StoreError};
use keel::validation::FieldErrors;

use super::filter::DataQuery;
use super::model::{ItemQuery, ItemRecord, NewItem};
use super::render;
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

    /// A page of items (the JSON array of their views, `render.rs`) and the total matching.
    pub async fn list(&self, query: &ItemQuery) -> Result<(JsonText, u64), ItemError> {
        let mut items = render::ItemArray::new(query.limit.get() as usize);
        let total = self.items.list(query, &mut items).await?;
        Ok((items.finish(), total))
    }

    /// getData: the whitelisted filter, at most `limit` items (the JSON array of their views).
    pub async fn query(&self, query: &DataQuery) -> Result<JsonText, ItemError> {
        let mut items = render::ItemArray::new(query.limit.get() as usize);
        self.items
            .find_matching(&query.filter, query.limit, &mut items)
            .await?;
        Ok(items.finish())
    }
}
