//! The MongoDB half of the integration tests (`tests/store` and `tests/background` run each case
//! on both backends; `tests/api` runs its in-process application on MongoDB): when
//! `KEEL_TEST_MONGODB_URL` is set, each test gets a database of its own on that server
//! (`keel_test_<case>_<pid>_<n>`), so tests run in parallel without seeing each other's data.
//! `scripts/mongo-test-server` starts a server and sets the variable.
//!
//! The URL may carry credentials: errors name the variable, never its value. A store on such a
//! database is `super::store::TemporaryStore::mongodb`.

use std::sync::atomic::{AtomicU64, Ordering};

use keel::secrets::Secret;

/// The variable that points the tests at a MongoDB server.
pub const URL_VARIABLE: &str = "KEEL_TEST_MONGODB_URL";

/// The URL of a fresh database for `case`, or `None` when `KEEL_TEST_MONGODB_URL` is unset.
pub fn fresh_url(case: &str) -> Option<Secret> {
    let url = std::env::var(URL_VARIABLE).ok()?;
    Some(Secret::new(with_database(&url, &fresh_database_name(case))))
}

/// `keel_test_<case, at most 24 characters>_<pid>_<n>`: unique within the server for this run.
fn fresh_database_name(case: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let short: String = case.chars().take(24).collect();
    format!(
        "keel_test_{short}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
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
