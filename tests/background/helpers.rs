//! Shared helpers: a fresh embedded store per test, and polling with a deadline (never a
//! guessed sleep).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use keel::secrets::Secret;
use keel::store::{DatabaseConfig, Store};

/// A store in a fresh temporary directory; the directory lives as long as the value.
pub struct TestStore {
    pub store: Store,
    _dir: tempfile::TempDir,
}

pub async fn embedded_store() -> anyhow::Result<TestStore> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let config = DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.path().display())),
        ..DatabaseConfig::default()
    };
    let store = Store::connect(&config)
        .await
        .context("opening the embedded store")?;
    Ok(TestStore { store, _dir: dir })
}

/// How long any polled condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, failing after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
