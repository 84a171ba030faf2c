//! Shared helpers: every test runs on a fresh store of each backend — embedded always, MongoDB
//! too when `KEEL_TEST_MONGODB_URL` is set (`on_every_backend`) — and polls with a deadline
//! (never a guessed sleep).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use keel::secrets::Secret;
use keel::store::{DatabaseConfig, Store};

/// A store under test and what keeps it alive (the temporary directory of an embedded store).
struct TestStore {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

/// A store in a fresh temporary directory; the directory lives as long as the value.
async fn embedded_store() -> anyhow::Result<TestStore> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let config = DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.path().display())),
        ..DatabaseConfig::default()
    };
    let store = Store::connect(&config)
        .await
        .context("opening the embedded store")?;
    Ok(TestStore {
        store,
        _dir: Some(dir),
    })
}

/// Runs `case` on a fresh embedded store, then on a fresh MongoDB database when
/// `KEEL_TEST_MONGODB_URL` is set; the first failure names its backend. A case that must size
/// its work for the slower server asks `store.backend_name()`.
pub async fn on_every_backend<F, Fut>(case_name: &str, case: F) -> anyhow::Result<()>
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut stores = vec![embedded_store().await?];
    if let Some(store) = crate::mongodb_support::fresh_store(case_name).await? {
        stores.push(TestStore { store, _dir: None });
    }
    for test in stores {
        let backend = test.store.backend_name();
        case(test.store.clone())
            .await
            .with_context(|| format!("{case_name} on the {backend} backend"))?;
        test.store.close().await.ok();
    }
    Ok(())
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
