//! The ops console's store queries: the audit trail (`ops_audit`), the replicas' heartbeats
//! (`ops_instances`), and read-only looks at the platform's own collections (`__system_locks`,
//! `watcher_offsets`, `task_runs`) — the only code of the console that builds filters.

use std::time::Duration;

use bson::{Document, doc};
use keel::lock::LOCKS_COLLECTION;
use keel::store::{Collection, FindOptions, IndexSpec, Store, StoreResult, UpdateOptions};
use keel::tasks::TASK_RUNS_COLLECTION;
use keel::watchers::OFFSETS_COLLECTION;

use super::model::{AuditRecord, Heartbeat};
use crate::indexes::IndexDecl;

pub const AUDIT: &str = "ops_audit";
pub const INSTANCES: &str = "ops_instances";

/// A replica that stopped reporting disappears from `ops_instances` after this.
pub const INSTANCE_RETENTION: Duration = Duration::from_secs(600);

/// How long audit records are kept.
pub const AUDIT_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Clone)]
pub struct OpsRepository {
    audit: Collection,
    instances: Collection,
    locks: Collection,
    offsets: Collection,
    runs: Collection,
    jobs: Collection,
    poison: Collection,
}

impl OpsRepository {
    pub fn new(store: &Store) -> Self {
        Self {
            audit: store.collection(AUDIT),
            instances: store.collection(INSTANCES),
            locks: store.collection(LOCKS_COLLECTION),
            offsets: store.collection(OFFSETS_COLLECTION),
            runs: store.collection(TASK_RUNS_COLLECTION),
            jobs: store.collection(keel::jobs::JOBS_COLLECTION),
            poison: store.collection(keel::watchers::POISON_COLLECTION),
        }
    }

    /// Audit records expire after a year; heartbeats of gone replicas after ten minutes.
    pub fn indexes() -> Vec<IndexDecl> {
        vec![
            IndexDecl::new(AUDIT, IndexSpec::new(doc! {"at": 1}).ttl(AUDIT_RETENTION)),
            IndexDecl::new(
                INSTANCES,
                IndexSpec::new(doc! {"lastSeenAt": 1}).ttl(INSTANCE_RETENTION),
            ),
        ]
    }

    pub async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        self.audit.insert_as(record).await.map(|_| ())
    }

    /// The newest audit records first.
    pub async fn recent_audit(&self, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let options = FindOptions::default().sort(doc! {"at": -1}).limit(limit);
        self.audit.find_as(doc! {}, options).await
    }

    /// Writes this replica's heartbeat (one document per replica, replaced each time).
    pub async fn beat(&self, beat: &Heartbeat) -> StoreResult<()> {
        let mut set = keel::store::to_document(beat)?;
        set.remove("_id");
        self.instances
            .update_one(
                doc! {"_id": &beat.id},
                doc! {"$set": set},
                UpdateOptions { upsert: true },
            )
            .await
            .map(|_| ())
    }

    pub async fn instances(&self) -> StoreResult<Vec<Heartbeat>> {
        let options = FindOptions::default()
            .sort(doc! {"startedAt": 1})
            .limit(500);
        self.instances.find_as(doc! {}, options).await
    }

    /// Every lock document, free or held.
    pub async fn locks(&self) -> StoreResult<Vec<Document>> {
        let options = FindOptions::default().sort(doc! {"_id": 1}).limit(500);
        self.locks.find(doc! {}, options).await
    }

    /// Every saved watcher position (`{_id: watcher, token, updatedAt}`).
    pub async fn watcher_offsets(&self) -> StoreResult<Vec<Document>> {
        self.offsets
            .find(doc! {}, FindOptions::default().limit(500))
            .await
    }

    /// The `errors` history of job `id` (`{attempt, error, at}` per failed attempt), which the
    /// queue keeps but its `Job` type does not carry.
    pub async fn job_errors(&self, id: &str) -> StoreResult<Vec<bson::Bson>> {
        let options = FindOptions::default().projection(doc! {"errors": 1});
        let found = self.jobs.find_one(doc! {"_id": id}, options).await?;
        Ok(found
            .and_then(|d| d.get_array("errors").ok().cloned())
            .unwrap_or_default())
    }

    /// The newest poison events (set aside by the watchers), newest first.
    pub async fn poison_events(&self, limit: i64) -> StoreResult<Vec<Document>> {
        let options = FindOptions::default().sort(doc! {"at": -1}).limit(limit);
        self.poison.find(doc! {}, options).await
    }

    /// Runs of `task` still marked running (on any replica), newest first.
    pub async fn running_runs(&self, task: &str) -> StoreResult<Vec<Document>> {
        let options = FindOptions::default()
            .sort(doc! {"startedAt": -1})
            .limit(10);
        self.runs
            .find(doc! {"task": task, "outcome": "running"}, options)
            .await
    }
}
