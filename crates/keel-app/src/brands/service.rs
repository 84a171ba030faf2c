//! Brand use-cases: create (name unique) and list.

use bson::oid::ObjectId;
use keel::store::{Store, StoreError};
use keel::validation::FieldErrors;

use super::model::{BrandName, BrandRecord, NewBrand};
use super::repository::BrandRepository;

#[derive(Debug, thiserror::Error)]
pub enum BrandError {
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    #[error("a brand with this name already exists")]
    NameTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct BrandService {
    brands: BrandRepository,
}

impl BrandService {
    pub fn new(store: &Store) -> Self {
        Self {
            brands: BrandRepository::new(store),
        }
    }

    #[tracing::instrument(name = "brands.create", skip_all, fields(name = %brand.name.as_str()))]
    pub async fn create(&self, brand: NewBrand) -> Result<BrandRecord, BrandError> {
        let record = BrandRecord {
            id: ObjectId::new(),
            name: brand.name.as_str().to_string(),
            active: brand.is_active,
            created_at: bson::DateTime::now(),
        };
        match self.brands.insert(&record).await {
            Ok(()) => Ok(record),
            Err(StoreError::DuplicateKey { .. }) => Err(BrandError::NameTaken),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list(&self) -> Result<Vec<BrandRecord>, BrandError> {
        Ok(self.brands.list().await?)
    }

    /// True when items may be created for this brand.
    pub async fn is_usable(&self, name: &BrandName) -> Result<bool, StoreError> {
        self.brands.is_active(name).await
    }
}
