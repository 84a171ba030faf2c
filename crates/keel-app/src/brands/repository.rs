//! `brands`: names are unique (index); listing is by name.

use bson::doc;
use keel::store::{Collection, FindOptions, IndexSpec, Store, StoreResult};

use super::model::{BrandName, BrandRecord};
use crate::indexes::IndexDecl;

pub const BRANDS: &str = "brands";

/// Upper bound on a brand listing; brands are a short reference list, not a feed.
pub const MAX_BRANDS_LISTED: i64 = 1000;

#[derive(Clone)]
pub struct BrandRepository {
    brands: Collection,
}

impl BrandRepository {
    pub fn new(store: &Store) -> Self {
        Self {
            brands: store.collection(BRANDS),
        }
    }

    pub fn indexes() -> Vec<IndexDecl> {
        vec![IndexDecl::new(
            BRANDS,
            IndexSpec::new(doc! {"name": 1}).unique(),
        )]
    }

    /// Fails with `DuplicateKey` when the name exists.
    pub async fn insert(&self, brand: &BrandRecord) -> StoreResult<()> {
        self.brands.insert_as(brand).await.map(|_| ())
    }

    pub async fn list(&self) -> StoreResult<Vec<BrandRecord>> {
        let options = FindOptions::default()
            .sort(doc! {"name": 1})
            .limit(MAX_BRANDS_LISTED);
        self.brands.find_as(doc! {}, options).await
    }

    /// The guides' `hasValidBrand`: the brand exists *and* is active.
    pub async fn is_active(&self, name: &BrandName) -> StoreResult<bool> {
        let found = self
            .brands
            .find_one(
                doc! {"name": name.as_str(), "active": true},
                FindOptions::default(),
            )
            .await?;
        Ok(found.is_some())
    }
}
