//! `TestApp`: the real application (`keel_app::build`) and server loop, in this process, on
//! 127.0.0.1:0, on a temporary store migrated like `keel serve` migrates it (every declared
//! index). Its HTTP side — a method per endpoint — is in `api_support.rs`.
//!
//! - `spawn_app()` / `spawn_app_with(|config| …)`: the API role on a fresh store (a database of
//!   its own on MongoDB when `KEEL_TEST_MONGODB_URL` is set). No background loop runs: a test
//!   runs the queued jobs itself with `app.run_pending_jobs()`.
//! - `spawn_chassis()` / `spawn_chassis_with(…)`: the same, always on the embedded store, for
//!   the HTTP chassis's tests (nothing they check depends on the backend).
//! - `spawn_full_app()`: every role (the watchers, the scheduler and the job runner too).
//! - `TestApp::builder()`: any other combination.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel::Platform;
use keel::config::{Config, LoadOptions};
use keel::shutdown::Shutdown;
use keel::store::Store;
use keel_app::Role;
use keel_app::background::Background;
use tokio::net::TcpListener;

use super::{contract, repo_config_dir};
use crate::support::store::TemporaryDatabase;

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub platform: Platform,
    pub store: Store,
    background: Background,
    config: Config,
    roles: Vec<Role>,
    /// Holds the store's data (a temporary directory, or a MongoDB database name) for the
    /// test's lifetime, across restarts.
    database: Arc<TemporaryDatabase>,
}

/// The API role on a fresh store.
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

/// `spawn_app` with the test configuration adjusted first (limits, proxies, …).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::builder().config(adjust).spawn().await
}

/// Every role in one process: the API, the scheduler, the watchers and the job runner.
pub async fn spawn_full_app() -> TestApp {
    TestApp::builder().roles(&Role::ALL).spawn().await
}

/// The HTTP chassis's tests: the API role on an embedded store, whatever the backend under test.
pub async fn spawn_chassis() -> TestApp {
    TestApp::builder().embedded_store().spawn().await
}

/// `spawn_chassis` with the test configuration adjusted first.
pub async fn spawn_chassis_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::builder()
        .embedded_store()
        .config(adjust)
        .spawn()
        .await
}

/// How to start a `TestApp`: which roles, which configuration, which store.
pub struct TestAppBuilder {
    roles: Vec<Role>,
    config: Config,
    embedded_only: bool,
}

impl TestAppBuilder {
    /// The roles the process runs (default: the API alone).
    pub fn roles(mut self, roles: &[Role]) -> Self {
        self.roles = roles.to_vec();
        self
    }

    /// Adjusts the test configuration (in the order given); `database.url` is then set to the
    /// temporary database's.
    pub fn config(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        adjust(&mut self.config);
        self
    }

    /// The embedded store even when `KEEL_TEST_MONGODB_URL` is set.
    pub fn embedded_store(mut self) -> Self {
        self.embedded_only = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let database = if self.embedded_only {
            TemporaryDatabase::embedded()
        } else {
            TemporaryDatabase::preferring_mongodb("api")
        }
        .expect("a temporary database");
        let mut config = self.config;
        config.database.url = database.url.clone();
        start(config, self.roles, Arc::new(database)).await
    }
}

/// The `test` configuration from `config/`, on an ephemeral port.
fn test_config() -> Config {
    let options = LoadOptions {
        config_dir: repo_config_dir(),
        config_dir_required: true,
        env_vars: vec![("KEEL_ENV".into(), "test".into())],
        overrides: Vec::new(),
    }
    .with_override("server.port", 0);
    keel::config::load(&options).expect("the shipped test configuration is valid")
}

/// Opens the store, creates every declared index (as `keel serve` and `keel migrate` do), and
/// serves the application.
async fn start(config: Config, roles: Vec<Role>, database: Arc<TemporaryDatabase>) -> TestApp {
    let store = Store::connect(&config.database)
        .await
        .expect("opening the store");
    keel_app::indexes::create_all(&store)
        .await
        .expect("creating the indexes");
    let drain = config.server.shutdown_timeout;
    let platform = Platform::new(config.clone(), Shutdown::new(), store.clone());
    let (address, background) = serve_app(&platform, &roles, drain).await;
    TestApp {
        address,
        client: http_client(),
        platform,
        store,
        background,
        config,
        roles,
        database,
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            roles: vec![Role::Api],
            config: test_config(),
            embedded_only: false,
        }
    }

    /// Stops the server, closes the store, and starts a new process-equivalent on the same
    /// data (embedded directory or MongoDB database), configuration and roles.
    pub async fn restart(self) -> TestApp {
        self.platform.shutdown().trigger();
        assert!(
            self.platform
                .shutdown()
                .wait_for_tasks(Duration::from_secs(10))
                .await
        );
        self.store.close().await.expect("closing the store");
        start(
            self.config.clone(),
            self.roles.clone(),
            Arc::clone(&self.database),
        )
        .await
    }

    /// Runs every job that is due now with the application's job handlers, each to the end of
    /// its attempt, and returns how many attempts ran: a job test's deterministic "and then the
    /// job runs". For an app without the jobs role (the default), whose queue nothing else
    /// consumes.
    pub async fn run_pending_jobs(&self) -> usize {
        self.background
            .job_runner(&self.platform)
            .run_pending()
            .await
            .expect("running the pending jobs")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.platform.shutdown().trigger();
        contract::assert_contract_kept(self.address);
    }
}

/// Serves `keel_app::build(platform, roles)` on 127.0.0.1:0 until the platform shuts down;
/// returns the address it listens on and the application's background machinery.
async fn serve_app(
    platform: &Platform,
    roles: &[Role],
    drain: Duration,
) -> (SocketAddr, Background) {
    let app = keel_app::build(platform.clone(), roles);
    // With the API role, every response is checked against the OpenAPI document it serves.
    let router = axum::Router::new().fallback_service(app.router);
    let (router, contract) = match &app.openapi {
        Some(document) => {
            let document = serde_json::to_value(&**document).expect("the document is JSON");
            let (router, contract) = contract::checked(router, document);
            (router, Some(contract))
        }
        None => (router, None),
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let address = listener.local_addr().expect("local address");
    if let Some(contract) = contract {
        contract::keep(address, contract);
    }
    let shutdown = platform.shutdown().clone();
    let stop = shutdown.clone();
    let limits = keel::http::ConnectionLimits::from(&platform.config().server);
    shutdown.spawn("http", async move {
        if let Err(e) = keel::http::serve(listener, router, stop, drain, limits).await {
            panic!("test server failed: {e}");
        }
    });
    (address, app.state.background)
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
