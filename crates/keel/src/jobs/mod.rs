//! The durable job queue in `jobs`: what the guides' `runWorker` becomes when the work must
//! survive a crash or run on another replica.
//!
//! A job is a document `{_id, kind, payload, status, runAt, attempts, maxAttempts, …}`:
//!
//! ```text
//!  enqueue ──► queued ──claim──► running ──ok──────────────► done
//!                ▲                  │  └─error, attempts left──► queued (runAt = now + backoff)
//!                │                  └─error, last attempt─────► dead (lastError kept)
//!                └── lease expired (the runner crashed) ── claimable again as if queued
//! ```
//!
//! - **claim** is one atomic `find_one_and_update` over "queued and due, or running with an
//!   expired lease", setting a lease (owner + expiry) and counting the attempt: any number of
//!   runners on any number of replicas never get the same job at the same time.
//! - while a job runs its runner renews the lease; completion and failure are filtered on the
//!   lease owner, so a runner that lost its lease cannot overwrite the new claimant's outcome.
//! - delivery is therefore at-least-once: a runner that dies after the work but before marking
//!   it done lets the job run again. Handlers make their effects idempotent (claim with an
//!   atomic update, insert with a deterministic `_id`).
//! - an **idempotency key** makes enqueueing idempotent: the job's `_id` becomes `kind:key`, so a
//!   second enqueue with the same key finds the first job instead of adding one.

mod config;
mod handlers;
mod queue;
mod runner;

use bson::Document;
use serde::{Deserialize, Serialize};

pub use config::JobsConfig;
pub use handlers::{JobHandler, JobHandlers, JobRunContext};
pub use queue::{EnqueueOutcome, JobQueue};
pub use runner::JobRunner;

use crate::store::StoreError;

pub const JOBS_COLLECTION: &str = "jobs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Dead,
}

impl JobStatus {
    pub const ALL: [JobStatus; 4] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Result<JobStatus, JobError> {
        JobStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| JobError::InvalidStatus(text.to_owned()))
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(rename = "_id")]
    pub id: String,
    pub kind: String,
    pub payload: Document,
    pub status: JobStatus,
    pub run_at: bson::DateTime,
    pub attempts: i32,
    pub max_attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<bson::DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Document>,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<bson::DateTime>,
}

/// A durable job as a type: its kind name and its payload's shape, declared once. Enqueue a
/// value with `NewJob::of(&job)`; register its handler with `JobHandlers::register_typed`,
/// which hands it the decoded value.
///
/// ```ignore
/// #[derive(Serialize, Deserialize)]
/// #[serde(rename_all = "camelCase")]
/// struct ProcessOrdersJob { order_ids: Vec<Bson> }
/// impl JobKind for ProcessOrdersJob { const KIND: &'static str = "process-orders"; }
/// ```
pub trait JobKind: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    const KIND: &'static str;
}

impl Job {
    /// The payload as the job type `J` (the kind is not checked: handlers are registered by it).
    pub fn payload_as<J: JobKind>(&self) -> Result<J, String> {
        bson::deserialize_from_document(self.payload.clone())
            .map_err(|e| format!("the payload is not a {} job: {e}", J::KIND))
    }
}

/// A job to enqueue: `NewJob::of(&typed)` (or `NewJob::new(kind, payload)`) plus the optional
/// settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub payload: Document,
    /// Not before this instant; now when `None`.
    pub run_at: Option<bson::DateTime>,
    /// `jobs.default_max_attempts` when `None`.
    pub max_attempts: Option<u32>,
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// The job `job`, of kind `J::KIND`, its payload serialized from the value.
    pub fn of<J: JobKind>(job: &J) -> Result<Self, JobError> {
        let payload = bson::serialize_to_document(job)
            .map_err(|e| JobError::Invalid(format!("{} payload: {e}", J::KIND)))?;
        Ok(Self::new(J::KIND, payload))
    }

    pub fn new(kind: impl Into<String>, payload: Document) -> Self {
        Self {
            kind: kind.into(),
            payload,
            run_at: None,
            max_attempts: None,
            idempotency_key: None,
        }
    }

    pub fn run_at(mut self, at: bson::DateTime) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    #[error("unknown job status {0:?} (expected queued, running, done or dead)")]
    InvalidStatus(String),
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("no job with id {0:?}")]
    NotFound(String),
}
