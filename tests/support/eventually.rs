//! `eventually`: how every integration test waits for something asynchronous. It polls a check
//! until the check answers, with a deadline (never a guessed sleep), and fails the test naming
//! what it waited for.
//!
//! ```ignore
//! let job = eventually("the job to be done", || async {
//!     queue.get(&id).await.ok().flatten().filter(|job| job.status == JobStatus::Done)
//! })
//! .await;
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long a condition may take before the test fails, unless the test gives its own deadline.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How long to wait between two checks.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What a check answers: `Option<T>` (`None`: not yet), or `anyhow::Result<Option<T>>` when
/// checking can itself fail, which ends the wait at once and fails the test with the error.
pub trait Check {
    type Value;
    fn into_outcome(self) -> anyhow::Result<Option<Self::Value>>;
}

impl<T> Check for Option<T> {
    type Value = T;
    fn into_outcome(self) -> anyhow::Result<Option<T>> {
        Ok(self)
    }
}

impl<T> Check for anyhow::Result<Option<T>> {
    type Value = T;
    fn into_outcome(self) -> anyhow::Result<Option<T>> {
        self
    }
}

/// Polls `check` until it answers `Some(value)` and returns the value; panics naming `what` when
/// `DEADLINE` passes first or the check fails.
pub async fn eventually<C, F, Fut>(what: &str, check: F) -> C::Value
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    eventually_within(what, DEADLINE, check).await
}

/// `eventually` for a test without an async runtime (`tests/deploy` drives processes with
/// blocking calls): the same polling, deadline and failure message, on this thread.
pub fn eventually_blocking<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `eventually` with a deadline of its own: for a bound the test asserts (a cache that must
/// forget within its TTL) or a wait known to be longer than `DEADLINE` (a TTL sweep).
pub async fn eventually_within<C, F, Fut>(what: &str, deadline: Duration, mut check: F) -> C::Value
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let until = Instant::now() + deadline;
    loop {
        match check().await.into_outcome() {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(error) => panic!("checking for {what} failed: {error:#}"),
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
