//! Every index the application declares, gathered from the repositories that own them.
//!
//! Each repository states the indexes its queries rely on (uniqueness, TTL, the fields its
//! filters and sorts use) next to the queries themselves; `keel migrate` and `serve` create them
//! all, idempotently, from [`all`].

use keel::store::{IndexSpec, Store, StoreResult};

/// One index of one collection.
#[derive(Debug, Clone)]
pub struct IndexDecl {
    pub collection: &'static str,
    pub spec: IndexSpec,
}

impl IndexDecl {
    pub fn new(collection: &'static str, spec: IndexSpec) -> Self {
        Self { collection, spec }
    }
}

/// The application's indexes, every component included.
pub fn all() -> Vec<IndexDecl> {
    [
        crate::auth::repository::UserRepository::indexes(),
        crate::auth::repository::AuthFailureRepository::indexes(),
        crate::brands::repository::BrandRepository::indexes(),
        crate::items::repository::ItemRepository::indexes(),
        crate::orders::repository::OrderRepository::indexes(),
        crate::surveys::repository::SurveyRepository::indexes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Creates every declared index; existing ones are left as they are.
pub async fn create_all(store: &Store) -> StoreResult<usize> {
    let declared = all();
    for decl in &declared {
        store
            .collection(decl.collection)
            .create_index(decl.spec.clone())
            .await?;
    }
    Ok(declared.len())
}
