//! `TestApp`'s HTTP side (the app itself starts in `helpers/app.rs`): every request the API tests
//! send and every response they read, with the session cookie handled explicitly (so tests can
//! tamper with it) and a method per endpoint.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

pub use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// A password that satisfies the rules.
pub const PASSWORD: &str = "correct horse battery staple";

/// A logged-in client: the `sessionId` cookie and the user's id.
#[derive(Debug, Clone)]
pub struct Login {
    pub cookie: String,
    pub user_id: String,
}

impl TestApp {
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

    pub async fn get_health(&self) -> Response {
        self.get("/api/health", None).await
    }

    pub async fn get_ready(&self) -> Response {
        self.get("/api/ready", None).await
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
