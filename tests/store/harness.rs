//! Runs one conformance case against every backend: embedded always (a fresh temporary
//! directory per case), MongoDB when `KEEL_TEST_MONGODB_URL` is set (a fresh database per case).
//!
//! Write a case once with `conformance!`; it becomes one `#[tokio::test]` that runs the body on
//! each backend in turn and names the backend in the failure.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use keel::secrets::Secret;
use keel::store::{DatabaseConfig, Store};

/// A store under test and what keeps it alive (the temporary directory of an embedded store).
pub struct TestBackend {
    pub name: &'static str,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

/// The configuration of an embedded store in `dir`, with a fast TTL sweep so expiry tests
/// finish quickly.
pub fn embedded_config(dir: &std::path::Path) -> DatabaseConfig {
    DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.display())),
        ttl_sweep_interval_ms: 100,
        ..DatabaseConfig::default()
    }
}

/// Opens an embedded store in a fresh temporary directory.
pub async fn embedded() -> anyhow::Result<TestBackend> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let store = Store::connect(&embedded_config(dir.path()))
        .await
        .context("opening the embedded store")?;
    Ok(TestBackend {
        name: "embedded",
        store,
        _dir: Some(dir),
    })
}

/// Connects to the MongoDB of `KEEL_TEST_MONGODB_URL` with a database of its own, or `None`
/// when the variable is unset.
pub async fn mongodb(case: &str) -> anyhow::Result<Option<TestBackend>> {
    let Ok(url) = std::env::var("KEEL_TEST_MONGODB_URL") else {
        return Ok(None);
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let database = format!(
        "keel_test_{}_{}_{}",
        &case[..case.len().min(24)],
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let config = DatabaseConfig {
        url: Secret::new(with_database(&url, &database)),
        ..DatabaseConfig::default()
    };
    let store = Store::connect(&config)
        .await
        .context("connecting to KEEL_TEST_MONGODB_URL")?;
    Ok(Some(TestBackend {
        name: "mongodb",
        store,
        _dir: None,
    }))
}

/// Every backend this run can test, each fresh and empty.
pub async fn backends(case: &str) -> anyhow::Result<Vec<TestBackend>> {
    let mut all = vec![embedded().await?];
    all.extend(mongodb(case).await?);
    Ok(all)
}

/// Runs `case` on each backend; the first failure names its backend.
pub async fn on_every_backend<F, Fut>(case_name: &str, case: F) -> anyhow::Result<()>
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for backend in backends(case_name).await? {
        case(backend.store.clone())
            .await
            .with_context(|| format!("{case_name} on the {} backend", backend.name))?;
        backend.store.close().await.ok();
    }
    Ok(())
}

/// Replaces the database path of a MongoDB URL (`mongodb://host/olddb?opts` → `…/db?opts`).
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("mongodb", url));
    let (authority, tail) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash + 1..]),
        None => match rest.find('?') {
            Some(q) => (&rest[..q], &rest[q..]),
            None => (rest, ""),
        },
    };
    let query = tail.find('?').map(|q| &tail[q..]).unwrap_or("");
    format!("{scheme}://{authority}/{database}{query}")
}

/// Polls `check` until it returns `Some` or `timeout` passes (tests never sleep to wait).
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One test, run on every backend. The body is a block returning `anyhow::Result<()>`, with
/// `$store` (a fresh, empty `keel::store::Store`) in scope:
///
/// ```ignore
/// conformance!(insert_then_find, |store| {
///     let users = store.collection("users");
///     /* ... */
///     Ok(())
/// });
/// ```
macro_rules! conformance {
    ($(#[$meta:meta])* $name:ident, |$store:ident| $body:block) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> anyhow::Result<()> {
            $crate::harness::on_every_backend(
                stringify!($name),
                |$store: keel::store::Store| async move { $body },
            )
            .await
        }
    };
}

#[test]
fn mongodb_url_gets_the_test_database() {
    assert_eq!(
        with_database("mongodb://localhost:27017", "t1"),
        "mongodb://localhost:27017/t1"
    );
    assert_eq!(
        with_database("mongodb://u:p@h1,h2/app?replicaSet=rs0", "t1"),
        "mongodb://u:p@h1,h2/t1?replicaSet=rs0"
    );
    assert_eq!(
        with_database("mongodb://h?replicaSet=rs0", "t1"),
        "mongodb://h/t1?replicaSet=rs0"
    );
}
