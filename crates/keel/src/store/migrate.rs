//! `keel migrate`: create every index the application declares, idempotently.
//!
//! Indexes are declared in code next to the repository that relies on them — a repository
//! exposes `fn indexes() -> Vec<IndexDecl>` and the binary passes them all to `migrate` (from
//! `keel migrate`, and from `serve` at start unless `database.migrate_on_start = false`).
//!
//! Each run calls `create_index` for every declaration (a no-op on the database when the index
//! exists, and the way an index dropped by hand comes back) and records what it applied in the
//! `__system_indexes` collection, so the report can say which indexes are new since the last run
//! and a second run reports nothing created. Declarations are checked before anything is
//! touched: two different specs under one (collection, index name) are refused.

use std::collections::HashMap;

use bson::{Bson, Document, doc};

use super::{FindOptions, IndexSpec, Store, StoreError, StoreResult, UpdateOptions};

/// Where `migrate` records the indexes it applied, one document per (collection, index).
pub const APPLIED_INDEXES_COLLECTION: &str = "__system_indexes";

/// An index the application needs on `collection`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexDecl {
    pub collection: &'static str,
    pub spec: IndexSpec,
}

impl IndexDecl {
    pub fn new(collection: &'static str, spec: IndexSpec) -> Self {
        Self { collection, spec }
    }
}

/// One index `migrate` dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedIndex {
    pub collection: String,
    pub index: String,
}

/// What a `migrate` run did: indexes new (or re-declared differently) since the last run, and
/// indexes exactly as the last run left them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub created: Vec<AppliedIndex>,
    pub unchanged: Vec<AppliedIndex>,
}

impl MigrateReport {
    /// True when the run changed nothing.
    pub fn is_no_op(&self) -> bool {
        self.created.is_empty()
    }
}

/// Creates every declared index (in declaration order) and reports what was new.
#[tracing::instrument(name = "store.migrate", skip_all, fields(declared = decls.len()))]
pub async fn migrate(store: &Store, decls: &[IndexDecl]) -> StoreResult<MigrateReport> {
    let decls = distinct_declarations(decls)?;
    let applied = store.collection(APPLIED_INDEXES_COLLECTION);
    let mut report = MigrateReport::default();
    for decl in decls {
        let index = decl.spec.resolved_name();
        let record_id = format!("{}/{index}", decl.collection);
        let record = applied_record(decl);
        let previous = applied
            .find_one(doc! { "_id": &record_id }, FindOptions::default())
            .await?;
        let created_name = store
            .collection(decl.collection)
            .create_index(decl.spec.clone())
            .await?;
        let entry = AppliedIndex {
            collection: decl.collection.to_string(),
            index: created_name,
        };
        let is_unchanged = previous.is_some_and(|p| same_record(&p, &record));
        if is_unchanged {
            tracing::debug!(collection = decl.collection, index = %entry.index, "index unchanged");
            report.unchanged.push(entry);
            continue;
        }
        let mut set = record;
        set.insert("applied_at", bson::DateTime::now());
        applied
            .update_one(
                doc! { "_id": &record_id },
                doc! { "$set": set },
                UpdateOptions { upsert: true },
            )
            .await?;
        tracing::info!(collection = decl.collection, index = %entry.index, "index created");
        report.created.push(entry);
    }
    tracing::info!(
        created = report.created.len(),
        unchanged = report.unchanged.len(),
        "migrate finished"
    );
    Ok(report)
}

/// The declarations without exact repeats (two repositories may declare the same index);
/// different specs under one (collection, name) are an error naming both.
fn distinct_declarations(decls: &[IndexDecl]) -> StoreResult<Vec<&IndexDecl>> {
    let mut seen: HashMap<(&str, String), &IndexDecl> = HashMap::new();
    let mut distinct = Vec::new();
    for decl in decls {
        let key = (decl.collection, decl.spec.resolved_name());
        match seen.get(&key) {
            Some(earlier) if earlier.spec == decl.spec => {}
            Some(earlier) => {
                return Err(StoreError::invalid(format!(
                    "index {} on {} is declared twice with different specs: {:?} and {:?}",
                    key.1, key.0, earlier.spec, decl.spec
                )));
            }
            None => {
                seen.insert(key, decl);
                distinct.push(decl);
            }
        }
    }
    Ok(distinct)
}

/// The fields of the record that describe the index (everything but `_id` and `applied_at`).
fn applied_record(decl: &IndexDecl) -> Document {
    let expire_after_ms = decl
        .spec
        .expire_after
        .map(|ttl| Bson::Int64(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)))
        .unwrap_or(Bson::Null);
    doc! {
        "collection": decl.collection,
        "index": decl.spec.resolved_name(),
        "keys": decl.spec.keys.clone(),
        "unique": decl.spec.unique,
        "expire_after_ms": expire_after_ms,
    }
}

fn same_record(stored: &Document, record: &Document) -> bool {
    record
        .iter()
        .all(|(field, value)| stored.get(field) == Some(value))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn users_email() -> IndexDecl {
        IndexDecl::new("users", IndexSpec::new(doc! { "email": 1 }).unique())
    }

    #[test]
    fn repeated_identical_declarations_are_applied_once() {
        let decls = [users_email(), users_email()];
        assert_eq!(distinct_declarations(&decls).unwrap().len(), 1);
    }

    #[test]
    fn same_name_with_different_specs_is_refused() {
        let loose = IndexDecl::new("users", IndexSpec::new(doc! { "email": 1 }));
        let error = distinct_declarations(&[users_email(), loose]).unwrap_err();
        assert!(
            matches!(&error, StoreError::InvalidQuery { reason } if reason.contains("email_1 on users")),
            "{error:?}"
        );
    }

    #[test]
    fn same_index_name_on_different_collections_is_fine() {
        let other = IndexDecl::new("admins", IndexSpec::new(doc! { "email": 1 }).unique());
        assert_eq!(
            distinct_declarations(&[users_email(), other])
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn record_describes_the_spec_and_detects_changes() {
        let ttl = IndexDecl::new(
            "sessions",
            IndexSpec::new(doc! { "expiresAt": 1 }).ttl(Duration::from_secs(3600)),
        );
        let record = applied_record(&ttl);
        assert_eq!(
            record,
            doc! {
                "collection": "sessions", "index": "expiresAt_1", "keys": { "expiresAt": 1 },
                "unique": false, "expire_after_ms": 3_600_000_i64,
            }
        );
        let mut stored = record.clone();
        stored.insert("_id", "sessions/expiresAt_1");
        stored.insert("applied_at", bson::DateTime::now());
        assert!(same_record(&stored, &record));
        let longer = IndexDecl::new(
            "sessions",
            IndexSpec::new(doc! { "expiresAt": 1 }).ttl(Duration::from_secs(7200)),
        );
        assert!(!same_record(&stored, &applied_record(&longer)));
    }
}
