//! `spawn_app()`: the real router and server loop, in this process, on 127.0.0.1:0.

use std::net::SocketAddr;
use std::time::Duration;

use keel::Platform;
use keel::config::{Config, LoadOptions};
use keel::shutdown::Shutdown;
use keel::store::Store;
use tempfile::TempDir;
use tokio::net::TcpListener;

use super::repo_config_dir;

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub platform: Platform,
    /// Holds the embedded store's files (if it uses one) for the test's lifetime.
    _data_dir: TempDir,
}

/// The `test` configuration from `config/`, on an ephemeral port, with its data in `data_dir`.
pub fn test_config(data_dir: &TempDir) -> Config {
    let options = LoadOptions {
        config_dir: repo_config_dir(),
        config_dir_required: true,
        env_vars: vec![("KEEL_ENV".into(), "test".into())],
        overrides: Vec::new(),
    }
    .with_override("server.port", 0)
    .with_override(
        "database.url",
        format!("embedded://{}", data_dir.path().join("data").display()),
    );
    keel::config::load(&options).expect("the shipped test configuration is valid")
}

/// The full application on a fresh store: an embedded one in a temporary directory, or a
/// database of its own on MongoDB when `KEEL_TEST_MONGODB_URL` is set (`use_test_mongodb`).
pub async fn spawn_app() -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let mut config = test_config(&data_dir);
    use_test_mongodb(&mut config);
    let store = Store::connect(&config.database)
        .await
        .expect("opening the store");
    start(config, Some(store), data_dir).await
}

/// Points `config` at a fresh database on the MongoDB of `KEEL_TEST_MONGODB_URL` when that is
/// set: the applications `spawn_app` and `spawn_api` start then run on MongoDB (the chassis
/// and the `keel` binary tests stay on the embedded store).
pub fn use_test_mongodb(config: &mut Config) {
    if let Some(url) = crate::mongodb_support::fresh_url("api") {
        config.database.url = url;
    }
}

/// The HTTP chassis and probes without a store: everything that does not touch data.
pub async fn spawn_chassis() -> TestApp {
    spawn_chassis_with(|_| {}).await
}

/// `spawn_chassis` with the test configuration adjusted first.
pub async fn spawn_chassis_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let mut config = test_config(&data_dir);
    adjust(&mut config);
    start(config, None, data_dir).await
}

async fn start(config: Config, store: Option<Store>, data_dir: TempDir) -> TestApp {
    let shutdown = Shutdown::new();
    let drain = config.server.shutdown_timeout;
    let platform = Platform::new(config, shutdown, store);
    let address = serve_app(&platform, &keel_app::Role::ALL, drain).await;
    TestApp {
        address,
        client: http_client(),
        platform,
        _data_dir: data_dir,
    }
}

/// Serves `keel_app::build(platform, roles)` on 127.0.0.1:0 until the platform shuts down;
/// returns the address it listens on.
pub async fn serve_app(
    platform: &Platform,
    roles: &[keel_app::Role],
    drain: Duration,
) -> SocketAddr {
    let app = keel_app::build(platform.clone(), roles);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let address = listener.local_addr().expect("local address");
    let shutdown = platform.shutdown().clone();
    let stop = shutdown.clone();
    let limits = keel::http::ConnectionLimits::from(&platform.config().server);
    shutdown.spawn("http", async move {
        if let Err(e) = keel::http::serve(listener, app.router, stop, drain, limits).await {
            panic!("test server failed: {e}");
        }
    });
    address
}

/// The tests' HTTP client: no proxy, no redirects, a generous timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building the HTTP client")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET failed")
    }

    pub async fn get_health(&self) -> reqwest::Response {
        self.get("/api/health").await
    }

    pub async fn get_ready(&self) -> reqwest::Response {
        self.get("/api/ready").await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.platform.shutdown().trigger();
    }
}

/// The JSON body of a response (panics with the text if it is not JSON).
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    let text = response.text().await.expect("reading the body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Polls `check` until it returns `Some`, failing after 30 s: how every test here waits for
/// something asynchronous to happen (never a fixed sleep).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
