//! Every index the application relies on, gathered from the repositories that declare them.
//!
//! Each repository states the indexes its queries need (uniqueness, TTL, the fields its filters
//! and sorts use) next to the queries themselves; [`all`] adds the platform collections the API
//! uses (`sessions`, `idempotency_keys`) and the background work's declarations. `keel serve` passes them to
//! `keel::store::migrate::migrate` at start (unless `database.migrate_on_start = false`).

use keel::http::idempotency::IdempotencyKeys;
use keel::http::session::SessionManager;
pub use keel::store::migrate::IndexDecl;
use keel::store::migrate::{MigrateReport, migrate};
use keel::store::{Store, StoreResult};

/// The application's indexes, every component included.
pub fn all() -> Vec<IndexDecl> {
    let platform = SessionManager::indexes()
        .into_iter()
        .chain(IdempotencyKeys::indexes())
        .map(|(collection, spec)| IndexDecl::new(collection, spec));
    [
        crate::auth::repository::UserRepository::indexes(),
        crate::auth::repository::AuthFailureRepository::indexes(),
        crate::auth::repository::LoginFailureRepository::indexes(),
        crate::brands::repository::BrandRepository::indexes(),
        crate::items::repository::ItemRepository::indexes(),
        crate::orders::repository::OrderRepository::indexes(),
        crate::surveys::repository::SurveyRepository::indexes(),
        crate::ops::repository::OpsRepository::indexes(),
        // Background work's own: jobs, task runs, the scans it makes.
        crate::background::index_declarations(),
    ]
    .into_iter()
    .flatten()
    .chain(platform)
    .collect()
}

/// Creates every declared index; existing ones are left as they are.
pub async fn create_all(store: &Store) -> StoreResult<MigrateReport> {
    migrate(store, &all()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_indexes_include_uniqueness_and_ttl_rules() {
        let all = all();
        let has = |collection: &str, pred: &dyn Fn(&IndexDecl) -> bool| {
            all.iter().any(|d| d.collection == collection && pred(d))
        };
        assert!(has("users", &|d| d.spec.unique));
        assert!(has("brands", &|d| d.spec.unique));
        assert!(has("sessions", &|d| d.spec.expire_after.is_some()));
        assert!(has("auth_failures", &|d| d.spec.expire_after.is_some()));
        assert!(has("idempotency_keys", &|d| d.spec.unique));
        assert!(has("idempotency_keys", &|d| d.spec.expire_after.is_some()));
    }
}
