//! Every index the application relies on, gathered from the components that declare them.
//!
//! Each repository states the indexes its queries need (uniqueness, TTL, the fields its filters
//! and sorts use) next to the queries themselves, and its component hands them over
//! (`Component::indexes`); [`all`] adds the background machinery's collections (`jobs`,
//! `task_runs`) and the platform's the API uses (`sessions`, `idempotency_keys`). `keel migrate`
//! and `keel serve`'s start (unless `database.migrate_on_start = false`) create them.

use keel::http::idempotency::IdempotencyKeys;
use keel::http::session::SessionManager;
pub use keel::store::migrate::IndexDecl;
use keel::store::migrate::{MigrateReport, migrate};
use keel::store::{Store, StoreResult};

use crate::COMPONENTS;

/// The application's indexes, every component included.
pub fn all() -> Vec<IndexDecl> {
    let platform = SessionManager::indexes()
        .into_iter()
        .chain(IdempotencyKeys::indexes())
        .map(|(collection, spec)| IndexDecl::new(collection, spec));
    COMPONENTS
        .iter()
        .flat_map(|component| component.indexes())
        // The background machinery's own: `jobs`, `task_runs`.
        .chain(crate::background::index_declarations())
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
