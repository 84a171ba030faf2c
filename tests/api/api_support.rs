//! Support for the API tests: the full application (store, indexes, every route) on
//! 127.0.0.1:0, restartable on the same data directory, with a client that handles the session
//! cookie explicitly (so tests can tamper with it) and a method per endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel::Platform;
use keel::config::{Config, LoadOptions};
use keel::shutdown::Shutdown;
use keel::store::Store;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

pub use crate::helpers::eventually;
use crate::helpers::{contract, http_client, repo_config_dir, use_test_mongodb};

/// A password that satisfies the rules.
pub const PASSWORD: &str = "correct horse battery staple";

pub struct ApiApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub platform: Platform,
    pub store: Store,
    config: Config,
    data_dir: Arc<TempDir>,
}

/// A logged-in client: the `sessionId` cookie and the user's id.
#[derive(Debug, Clone)]
pub struct Login {
    pub cookie: String,
    pub user_id: String,
}

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

pub async fn spawn_api() -> ApiApp {
    spawn_api_with(|_| {}).await
}

/// The application with the test configuration adjusted first (limits, proxies, …).
pub async fn spawn_api_with(adjust: impl FnOnce(&mut Config)) -> ApiApp {
    let data_dir = Arc::new(tempfile::tempdir().expect("temporary data directory"));
    let mut config = test_config(&data_dir);
    use_test_mongodb(&mut config);
    adjust(&mut config);
    start(config, data_dir).await
}

async fn start(config: Config, data_dir: Arc<TempDir>) -> ApiApp {
    let store = Store::connect(&config.database)
        .await
        .expect("opening the store");
    keel_app::indexes::create_all(&store)
        .await
        .expect("creating the indexes");
    let drain = config.server.shutdown_timeout;
    let platform = Platform::new(config.clone(), Shutdown::new(), Some(store.clone()));
    let address = contract::serve_checked(&platform, &[keel_app::Role::Api], drain).await;
    let client = http_client();
    ApiApp {
        address,
        client,
        platform,
        store,
        config,
        data_dir,
    }
}

impl ApiApp {
    /// Stops the server, closes the store, and starts a new process-equivalent on the same
    /// data directory (or MongoDB database) and configuration.
    pub async fn restart(self) -> ApiApp {
        self.platform.shutdown().trigger();
        assert!(
            self.platform
                .shutdown()
                .wait_for_tasks(Duration::from_secs(10))
                .await
        );
        self.store.close().await.expect("closing the store");
        start(self.config.clone(), self.data_dir.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str, cookie: Option<&str>) -> RequestBuilder {
        let mut builder = self.client.request(method, self.url(path));
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", format!("sessionId={cookie}"));
        }
        builder
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Response {
        self.request(Method::GET, path, cookie)
            .send()
            .await
            .expect("GET failed")
    }

    pub async fn post(&self, path: &str, body: &Value, cookie: Option<&str>) -> Response {
        self.request(Method::POST, path, cookie)
            .json(body)
            .send()
            .await
            .expect("POST failed")
    }

    pub async fn post_register(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/auth/register",
            &json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    pub async fn post_login(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/auth/login",
            &json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    /// Registers `email` and returns its session.
    pub async fn register(&self, email: &str) -> Login {
        let response = self.post_register(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::CREATED, "register {email}");
        let cookie = session_cookie(&response).expect("register sets the session cookie");
        let body = body(response).await;
        Login {
            cookie,
            user_id: body["data"]["_id"].as_str().expect("user id").to_owned(),
        }
    }

    /// Creates an (active unless said otherwise) brand as `login`.
    pub async fn create_brand(&self, login: &Login, name: &str, active: bool) {
        let response = self
            .post(
                "/api/brands",
                &json!({"name": name, "active": active}),
                Some(&login.cookie),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "create brand {name}"
        );
    }
}

impl Drop for ApiApp {
    fn drop(&mut self) {
        self.platform.shutdown().trigger();
        contract::assert_contract_kept(self.address);
    }
}

/// The `sessionId` value a response sets, if any (empty when it clears the cookie).
pub fn session_cookie(response: &Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("sessionId="))
        .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
}

/// The full `Set-Cookie` header of a response.
pub fn set_cookie_header(response: &Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

pub async fn body(response: Response) -> Value {
    let text = response.text().await.expect("reading the body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts the error envelope with `code` and returns the body.
pub async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let body = body(response).await;
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}
