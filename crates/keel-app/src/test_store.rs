//! A temporary embedded store and a detached task context, for the unit tests that need them.

use keel::secrets::Secret;
use keel::store::{DatabaseConfig, Store};
use keel::tasks::{TaskConfig, TaskContext};
use tokio_util::sync::CancellationToken;

/// A fresh embedded store in a temporary directory (kept alive by the returned guard).
pub async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.path().display())),
        ..DatabaseConfig::default()
    };
    (Store::connect(&config).await.expect("embedded store"), dir)
}

/// A task context that no scheduler or lock owns.
pub fn context(name: &str) -> TaskContext {
    TaskContext::detached(name, TaskConfig::default(), CancellationToken::new())
}
