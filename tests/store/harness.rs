//! Runs one conformance case against every backend: embedded always (a fresh temporary
//! directory per case), MongoDB when `KEEL_TEST_MONGODB_URL` is set (a fresh database per case),
//! with the shared `support::store::on_every_backend`. Also what this suite alone needs: which
//! MongoDB-wire server answers, and its known deviations.
//!
//! Write a case once with `conformance!`; it becomes one `#[tokio::test]` that runs the body on
//! each backend in turn and names the backend in the failure.

use anyhow::Context;
use keel::store::Store;

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
            let Ok(url) = std::env::var(crate::support::mongodb::URL_VARIABLE) else {
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
            $crate::support::store::on_every_backend(
                stringify!($name),
                |$store: keel::store::Store| async move { $body },
            )
            .await
        }
    };
}

#[test]
fn mongodb_url_gets_the_test_database() {
    use crate::support::mongodb::with_database;
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
