//! Runs one conformance case against every backend: embedded always (a fresh temporary
//! directory per case), MongoDB when `KEEL_TEST_MONGODB_URL` is set (a fresh database per case).
//!
//! Write a case once with `conformance!`; it becomes one `#[tokio::test]` that runs the body on
//! each backend in turn and names the backend in the failure.

use std::future::Future;
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
    Ok(crate::mongodb_support::fresh_store(case)
        .await?
        .map(|store| TestBackend {
            name: "mongodb",
            store,
            _dir: None,
        }))
}

/// What answers at `KEEL_TEST_MONGODB_URL`, from its `buildInfo` (asked once per test binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoServer {
    /// The MongoDB version the server reports (`version`).
    pub version: String,
    /// `secantusVersion`: set only by SecantusDB, the test server CI runs.
    pub secantus_version: Option<String>,
}

impl MongoServer {
    pub fn from_build_info(build_info: &bson::Document) -> MongoServer {
        MongoServer {
            version: build_info
                .get_str("version")
                .unwrap_or("unknown")
                .to_owned(),
            secantus_version: build_info
                .get_str("secantusVersion")
                .ok()
                .map(str::to_owned),
        }
    }
}

/// The server behind `KEEL_TEST_MONGODB_URL`, or `None` when the variable is unset. Only the
/// answer is kept: each test has its own runtime, which a driver client must not outlive.
pub async fn mongodb_server() -> anyhow::Result<Option<MongoServer>> {
    static SERVER: tokio::sync::OnceCell<Option<MongoServer>> = tokio::sync::OnceCell::const_new();
    SERVER
        .get_or_try_init(|| async {
            let Ok(url) = std::env::var(crate::mongodb_support::URL_VARIABLE) else {
                return Ok(None);
            };
            // The URL may carry credentials: errors name the variable, never its value.
            let client = mongodb::Client::with_uri_str(&url)
                .await
                .context("parsing KEEL_TEST_MONGODB_URL")?;
            let build_info = client
                .database("admin")
                .run_command(bson::doc! {"buildInfo": 1})
                .await
                .context("buildInfo at KEEL_TEST_MONGODB_URL")?;
            client.shutdown().await;
            Ok(Some(MongoServer::from_build_info(&build_info)))
        })
        .await
        .cloned()
}

/// A known way a MongoDB-wire test server answers differently from MongoDB itself. A case that
/// meets one keeps MongoDB's answer as its expectation and asserts the server's documented
/// deviation exactly where it applies, so a server that stops deviating fails the case and the
/// marker is removed. Each is described in `docs/store.md` ("Test servers' deviations").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deviation {
    /// SecantusDB intersects the bounds of a two-sided range (`{$gte: 2, $lt: 5}`) on a
    /// multikey index. MongoDB does not without `$elemMatch`: each bound may be met by a
    /// different element, so `[1, 5]` matches `{$gte: 2, $lt: 5}`. The indexed query loses
    /// such documents; the same query without an index answers as MongoDB does.
    MultikeyRangeBoundsIntersected,
}

impl Deviation {
    pub fn applies_to(self, server: &MongoServer) -> bool {
        match self {
            Deviation::MultikeyRangeBoundsIntersected => server.secantus_version.is_some(),
        }
    }
}

/// Whether `store` is the MongoDB backend on a server known to have `deviation`.
pub async fn deviates(store: &Store, deviation: Deviation) -> anyhow::Result<bool> {
    if store.backend_name() != "mongodb" {
        return Ok(false);
    }
    let server = mongodb_server()
        .await?
        .context("a mongodb store without KEEL_TEST_MONGODB_URL")?;
    Ok(deviation.applies_to(&server))
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
    use crate::mongodb_support::with_database;
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

#[test]
fn only_secantusdb_is_marked_as_intersecting_multikey_bounds() {
    let mongod = MongoServer::from_build_info(&bson::doc! {"version": "7.0.14", "ok": 1.0});
    let secantus = MongoServer::from_build_info(
        &bson::doc! {"version": "8.2.11", "secantusVersion": "0.7.0b3", "ok": 1.0},
    );
    assert_eq!(secantus.secantus_version.as_deref(), Some("0.7.0b3"));
    assert!(!Deviation::MultikeyRangeBoundsIntersected.applies_to(&mongod));
    assert!(Deviation::MultikeyRangeBoundsIntersected.applies_to(&secantus));
}
