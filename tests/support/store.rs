//! One temporary store per test: embedded in a fresh temporary directory, or a fresh database on
//! the MongoDB of `KEEL_TEST_MONGODB_URL` (see `super::mongodb`). `tests/store` and
//! `tests/background` run each case on every backend (`on_every_backend`); `tests/api` gives its
//! application a `TemporaryDatabase` to connect to with its own configuration.

use std::future::Future;
use std::path::Path;

use anyhow::Context;
use keel::secrets::Secret;
use keel::store::{DatabaseConfig, Store};
use tempfile::TempDir;

use super::mongodb::{URL_VARIABLE, fresh_url};

/// Where a test's data lives, for as long as the value does: a temporary directory for the
/// embedded store, or a database of its own on the MongoDB test server.
pub struct TemporaryDatabase {
    /// `embedded://…` or `mongodb://…/keel_test_…` (may carry credentials: never print it).
    pub url: Secret,
    /// `"embedded"` or `"mongodb"`, as `Store::backend_name` says.
    pub backend: &'static str,
    _dir: Option<TempDir>,
}

impl TemporaryDatabase {
    /// An embedded store's place in a fresh temporary directory.
    pub fn embedded() -> anyhow::Result<TemporaryDatabase> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        Ok(TemporaryDatabase {
            url: Secret::new(format!("embedded://{}", dir.path().display())),
            backend: "embedded",
            _dir: Some(dir),
        })
    }

    /// A fresh database for `case` on `KEEL_TEST_MONGODB_URL`, or `None` when it is unset.
    pub fn mongodb(case: &str) -> Option<TemporaryDatabase> {
        fresh_url(case).map(|url| TemporaryDatabase {
            url,
            backend: "mongodb",
            _dir: None,
        })
    }

    /// A fresh MongoDB database when `KEEL_TEST_MONGODB_URL` is set, an embedded store otherwise.
    pub fn preferring_mongodb(case: &str) -> anyhow::Result<TemporaryDatabase> {
        match TemporaryDatabase::mongodb(case) {
            Some(database) => Ok(database),
            None => TemporaryDatabase::embedded(),
        }
    }

    /// The store configuration of this database: the defaults, with a fast TTL sweep on the
    /// embedded store so expiry tests finish quickly (MongoDB sweeps on its own schedule).
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone(),
            ttl_sweep_interval_ms: FAST_TTL_SWEEP_MS,
            ..DatabaseConfig::default()
        }
    }
}

/// The embedded store's TTL sweep in tests (the default is a minute).
const FAST_TTL_SWEEP_MS: u64 = 100;

/// The configuration of an embedded store in `dir`, for a test that reopens the same files.
pub fn embedded_config(dir: &Path) -> DatabaseConfig {
    DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.display())),
        ttl_sweep_interval_ms: FAST_TTL_SWEEP_MS,
        ..DatabaseConfig::default()
    }
}

/// An open store on a `TemporaryDatabase`, which lives as long as it does.
pub struct TemporaryStore {
    pub store: Store,
    pub database: TemporaryDatabase,
}

impl TemporaryStore {
    /// A store on `database`, opened with `database.config()`.
    pub async fn open(database: TemporaryDatabase) -> anyhow::Result<TemporaryStore> {
        let context = match database.backend {
            "mongodb" => format!("connecting to {URL_VARIABLE}"),
            _ => "opening the embedded store".to_owned(),
        };
        let store = Store::connect(&database.config()).await.context(context)?;
        Ok(TemporaryStore { store, database })
    }

    /// An embedded store in a fresh temporary directory.
    pub async fn embedded() -> anyhow::Result<TemporaryStore> {
        TemporaryStore::open(TemporaryDatabase::embedded()?).await
    }

    /// A store on a fresh MongoDB database for `case`, or `None` when `KEEL_TEST_MONGODB_URL`
    /// is unset.
    pub async fn mongodb(case: &str) -> anyhow::Result<Option<TemporaryStore>> {
        match TemporaryDatabase::mongodb(case) {
            Some(database) => Ok(Some(TemporaryStore::open(database).await?)),
            None => Ok(None),
        }
    }

    /// `"embedded"` or `"mongodb"`.
    pub fn backend(&self) -> &'static str {
        self.database.backend
    }
}

/// Every backend this run tests, each fresh and empty: embedded always, MongoDB when
/// `KEEL_TEST_MONGODB_URL` is set.
pub async fn every_backend(case: &str) -> anyhow::Result<Vec<TemporaryStore>> {
    let mut all = vec![TemporaryStore::embedded().await?];
    all.extend(TemporaryStore::mongodb(case).await?);
    Ok(all)
}

/// Runs `case` on a fresh store of every backend in turn; an error names its backend (and so
/// does the test's output for a panic). A case that must size its work for the slower server
/// asks `store.backend_name()`.
pub async fn on_every_backend<F, Fut>(case_name: &str, case: F) -> anyhow::Result<()>
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for test in every_backend(case_name).await? {
        let backend = test.backend();
        eprintln!("{case_name}: on the {backend} backend");
        case(test.store.clone())
            .await
            .with_context(|| format!("{case_name} on the {backend} backend"))?;
        test.store.close().await.ok();
    }
    Ok(())
}
