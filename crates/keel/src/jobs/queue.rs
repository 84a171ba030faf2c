//! `JobQueue`: every store operation on `jobs` — enqueue, claim, lease renewal, completion,
//! failure, and the operator's list / retry / purge. The runner (`runner.rs`) decides *when*;
//! this file is the only one that builds queries on `jobs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bson::{Bson, doc, oid::ObjectId};
use tokio::sync::Notify;

use super::{JOBS_COLLECTION, Job, JobError, JobStatus, JobsConfig, NewJob};
use crate::store::{
    Collection, FindOneAndUpdateOptions, FindOptions, IndexSpec, ReturnDocument, Store, StoreError,
    UpdateOptions, from_document,
};

/// Whether `enqueue` added a job or found the one its idempotency key had already added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueOutcome {
    pub id: String,
    pub created: bool,
}

/// The queue. Cheap to clone; clones share the wake-up signal of local runners.
#[derive(Clone)]
pub struct JobQueue {
    jobs: Collection,
    config: Arc<JobsConfig>,
    /// Wakes this process's idle runners when it enqueues a due job.
    wake: Arc<Notify>,
}

impl JobQueue {
    pub fn new(store: &Store, config: JobsConfig) -> Self {
        JobQueue {
            jobs: store.collection(JOBS_COLLECTION),
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    pub(super) fn wake_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// The indexes the claim and the listings use.
    pub fn indexes() -> Vec<IndexSpec> {
        vec![
            IndexSpec::new(doc! { "status": 1, "runAt": 1 }),
            IndexSpec::new(doc! { "status": 1, "leaseExpiresAt": 1 }),
            IndexSpec::new(doc! { "createdAt": -1 }),
        ]
    }

    /// Creates the indexes (idempotent).
    pub async fn ensure_indexes(&self) -> Result<(), JobError> {
        for index in Self::indexes() {
            self.jobs.create_index(index).await?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "jobs.enqueue", skip(self, job), fields(kind = %job.kind))]
    pub async fn enqueue(&self, job: NewJob) -> Result<EnqueueOutcome, JobError> {
        if job.kind.is_empty() {
            return Err(JobError::Invalid("a job needs a kind".to_owned()));
        }
        let id = match &job.idempotency_key {
            Some(key) if key.is_empty() => {
                return Err(JobError::Invalid(
                    "an idempotency key cannot be empty".to_owned(),
                ));
            }
            Some(key) => format!("{}:{key}", job.kind),
            None => ObjectId::new().to_hex(),
        };
        let now = bson::DateTime::now();
        let run_at = job.run_at.unwrap_or(now);
        let max_attempts = job
            .max_attempts
            .unwrap_or(self.config.default_max_attempts)
            .max(1);
        let document = doc! {
            "_id": &id,
            "kind": &job.kind,
            "payload": job.payload,
            "status": JobStatus::Queued.as_str(),
            "runAt": run_at,
            "attempts": 0_i32,
            "maxAttempts": i32::try_from(max_attempts).unwrap_or(i32::MAX),
            "createdAt": now,
            "updatedAt": now,
        };
        match self.jobs.insert_one(document).await {
            Ok(_) => {
                metrics::counter!("keel_jobs_enqueued_total", "kind" => job.kind.clone())
                    .increment(1);
                if run_at <= now {
                    self.wake.notify_one();
                }
                Ok(EnqueueOutcome { id, created: true })
            }
            Err(StoreError::DuplicateKey { .. }) if job.idempotency_key.is_some() => {
                Ok(EnqueueOutcome { id, created: false })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Atomically claims the next due job of one of `kinds` for `owner`: a queued job whose
    /// `runAt` has come, or a running one whose lease expired (its runner died). Counts the
    /// attempt and sets a lease of `lease`.
    pub async fn claim(
        &self,
        owner: &str,
        kinds: &[String],
        lease: Duration,
    ) -> Result<Option<Job>, JobError> {
        let now = bson::DateTime::now();
        let filter = doc! {
            "kind": { "$in": kinds.iter().map(|k| Bson::String(k.clone())).collect::<Vec<_>>() },
            "$or": [
                { "status": "queued", "runAt": { "$lte": now } },
                { "status": "running", "leaseExpiresAt": { "$lt": now } },
            ],
        };
        let update = doc! {
            "$set": {
                "status": "running",
                "leaseOwner": owner,
                "leaseExpiresAt": now.saturating_add_duration(lease),
                "claimedAt": now,
                "updatedAt": now,
            },
            "$inc": { "attempts": 1_i32 },
        };
        let options = FindOneAndUpdateOptions {
            return_document: ReturnDocument::After,
            sort: Some(doc! { "runAt": 1 }),
            ..FindOneAndUpdateOptions::default()
        };
        let claimed = self
            .jobs
            .find_one_and_update(filter, update, options)
            .await?;
        Ok(claimed.map(from_document).transpose()?)
    }

    /// Extends the lease of a running job; `false` when `owner` no longer holds it.
    pub async fn renew_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, JobError> {
        let expires = bson::DateTime::now().saturating_add_duration(lease);
        let result = self
            .jobs
            .update_one(
                doc! { "_id": id, "status": "running", "leaseOwner": owner },
                doc! { "$set": { "leaseExpiresAt": expires } },
                UpdateOptions::default(),
            )
            .await?;
        Ok(result.matched == 1)
    }

    /// Marks the job done, if `owner` still holds it; `false` otherwise (the lease was lost and
    /// another runner owns the job now).
    pub async fn complete(
        &self,
        id: &str,
        owner: &str,
        result: Option<bson::Document>,
    ) -> Result<bool, JobError> {
        let now = bson::DateTime::now();
        let mut set = doc! { "status": "done", "finishedAt": now, "updatedAt": now };
        if let Some(result) = result {
            set.insert("result", result);
        }
        let outcome = self
            .jobs
            .update_one(
                doc! { "_id": id, "status": "running", "leaseOwner": owner },
                doc! { "$set": set, "$unset": { "leaseOwner": "", "leaseExpiresAt": "" } },
                UpdateOptions::default(),
            )
            .await?;
        Ok(outcome.matched == 1)
    }

    /// Records a failed attempt: back to `queued` at `retry_at`, or `dead` when `retry_at` is
    /// `None` (no attempts left). The error is kept either way. `false` when `owner` no longer
    /// holds the job.
    pub async fn fail(
        &self,
        job: &Job,
        owner: &str,
        error: &str,
        retry_at: Option<bson::DateTime>,
    ) -> Result<bool, JobError> {
        let now = bson::DateTime::now();
        let mut set = doc! { "lastError": error, "updatedAt": now };
        match retry_at {
            Some(at) => {
                set.insert("status", "queued");
                set.insert("runAt", at);
            }
            None => {
                set.insert("status", "dead");
                set.insert("finishedAt", now);
            }
        }
        let outcome = self
            .jobs
            .update_one(
                doc! { "_id": &job.id, "status": "running", "leaseOwner": owner },
                doc! {
                    "$set": set,
                    "$unset": { "leaseOwner": "", "leaseExpiresAt": "" },
                    "$push": { "errors": { "attempt": job.attempts, "error": error, "at": now } },
                },
                UpdateOptions::default(),
            )
            .await?;
        Ok(outcome.matched == 1)
    }

    /// Hands a running job back untouched (its runner is shutting down): queued again, due now,
    /// and the interrupted attempt is not counted.
    pub async fn release(&self, id: &str, owner: &str) -> Result<bool, JobError> {
        let now = bson::DateTime::now();
        let outcome = self
            .jobs
            .update_one(
                doc! { "_id": id, "status": "running", "leaseOwner": owner },
                doc! {
                    "$set": { "status": "queued", "runAt": now, "updatedAt": now },
                    "$unset": { "leaseOwner": "", "leaseExpiresAt": "" },
                    "$inc": { "attempts": -1_i32 },
                },
                UpdateOptions::default(),
            )
            .await?;
        Ok(outcome.matched == 1)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        let found = self
            .jobs
            .find_one(doc! { "_id": id }, FindOptions::default())
            .await?;
        Ok(found.map(from_document).transpose()?)
    }

    /// The newest jobs first, optionally of one status.
    pub async fn list(&self, status: Option<JobStatus>, limit: i64) -> Result<Vec<Job>, JobError> {
        let filter = status.map_or_else(bson::Document::new, |s| doc! { "status": s.as_str() });
        let options = FindOptions::default()
            .sort(doc! { "createdAt": -1 })
            .limit(limit.max(1));
        Ok(self.jobs.find_as(filter, options).await?)
    }

    /// Puts a dead job back in the queue, due now, with a fresh set of attempts (its error
    /// history stays). Only dead jobs: a queued or running one is already on its way.
    pub async fn retry(&self, id: &str) -> Result<(), JobError> {
        let now = bson::DateTime::now();
        let outcome = self
            .jobs
            .update_one(
                doc! { "_id": id, "status": "dead" },
                doc! {
                    "$set": { "status": "queued", "runAt": now, "attempts": 0_i32, "updatedAt": now },
                    "$unset": { "finishedAt": "" },
                },
                UpdateOptions::default(),
            )
            .await?;
        if outcome.matched == 1 {
            self.wake.notify_one();
            return Ok(());
        }
        match self.get(id).await? {
            None => Err(JobError::NotFound(id.to_owned())),
            Some(job) => Err(JobError::Invalid(format!(
                "job {id} is {}; only dead jobs can be retried",
                job.status
            ))),
        }
    }

    /// Deletes every job with `status`: `dead` or `done` only; queued and running jobs are work
    /// still to do and cannot be purged.
    pub async fn purge(&self, status: JobStatus) -> Result<u64, JobError> {
        if !matches!(status, JobStatus::Dead | JobStatus::Done) {
            return Err(JobError::Invalid(format!(
                "only dead or done jobs can be purged, not {status}"
            )));
        }
        Ok(self
            .jobs
            .delete_many(doc! { "status": status.as_str() })
            .await?)
    }

    /// How many jobs are in each status (every status present, zero included).
    pub async fn count_by_status(&self) -> Result<BTreeMap<JobStatus, u64>, JobError> {
        let mut counts = BTreeMap::new();
        for status in JobStatus::ALL {
            counts.insert(
                status,
                self.jobs.count(doc! { "status": status.as_str() }).await?,
            );
        }
        Ok(counts)
    }
}
