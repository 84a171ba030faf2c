//! Job handlers: what runs a job of a given kind.
//!
//! A handler gets the job (payload, attempt number) and a context with the worker pool — CPU work
//! inside a handler goes to `ctx.workers`, never onto the async runtime — and a cancellation
//! token that fires on shutdown or when the job's lease is lost. It returns an optional result
//! document (stored on the job) or an error message (kept as `lastError`; the job is retried or
//! dead-lettered).

use std::collections::BTreeMap;
use std::sync::Arc;

use std::future::Future;

use bson::Document;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{Job, JobKind};
use crate::workers::Workers;

/// What a handler may use while it runs one job.
#[derive(Clone)]
pub struct JobRunContext {
    pub workers: Workers,
    /// Cancelled on shutdown and when the job's lease was lost: stop, the job will run again.
    pub cancel: CancellationToken,
}

/// Runs jobs of one kind. Implemented for closures `Fn(Job, JobRunContext) -> BoxFuture<…>`.
pub trait JobHandler: Send + Sync + 'static {
    fn run(
        &self,
        job: Job,
        ctx: JobRunContext,
    ) -> BoxFuture<'static, Result<Option<Document>, String>>;
}

impl<F> JobHandler for F
where
    F: Fn(Job, JobRunContext) -> BoxFuture<'static, Result<Option<Document>, String>>
        + Send
        + Sync
        + 'static,
{
    fn run(
        &self,
        job: Job,
        ctx: JobRunContext,
    ) -> BoxFuture<'static, Result<Option<Document>, String>> {
        self(job, ctx)
    }
}

/// The job kinds this process can run, each with its handler. Runners only claim these kinds,
/// so a replica never claims a job it cannot run.
#[derive(Clone, Default)]
pub struct JobHandlers {
    handlers: BTreeMap<String, Arc<dyn JobHandler>>,
}

impl JobHandlers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, kind: &str, handler: impl JobHandler) -> &mut Self {
        self.handlers.insert(kind.to_owned(), Arc::new(handler));
        self
    }

    /// Registers `handler` for the job type `J`: it gets the payload decoded as `J` (a payload
    /// that is not one fails the attempt with the reason, like any handler error).
    pub fn register_typed<J, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        J: JobKind,
        F: Fn(J, Job, JobRunContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Document>, String>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.register(J::KIND, move |job: Job, ctx: JobRunContext| {
            let handler = Arc::clone(&handler);
            async move {
                let payload = job.payload_as::<J>()?;
                handler(payload, job, ctx).await
            }
            .boxed()
        })
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}
