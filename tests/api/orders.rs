//! Orders over HTTP: server-side totals, own orders only (another user's id is 404), status
//! filter, and an idempotent retry that creates nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_support::{Login, TestApp, body, expect_error, spawn_app};

fn order() -> Value {
    json!({"lines": [{"sku": "ANVIL-1", "qty": 3, "price": 0.1}, {"sku": "ROCKET", "qty": 1, "price": 19.99}]})
}

async fn post_order(
    app: &TestApp,
    login: &Login,
    body: &Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .request(Method::POST, "/api/orders", Some(&login.cookie))
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn an_order_is_priced_by_the_server_and_pending() {
    let app = spawn_app().await;
    let login = app.register("buyer@example.com").await;
    let created = post_order(&app, &login, &order(), None).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body(created).await;
    assert_eq!(created["data"]["subtotal"], 20.29);
    assert_eq!(created["data"]["tax"], 1.62, "8 % from config/default.toml");
    assert_eq!(created["data"]["total"], 21.91);
    assert_eq!(created["data"]["status"], "pending");
    let bad = post_order(
        &app,
        &login,
        &json!({"lines": [{"sku": "bad sku", "qty": 0, "price": -1}]}),
        None,
    )
    .await;
    let bad = expect_error(bad, StatusCode::BAD_REQUEST, "validation_failed").await;
    assert_eq!(
        bad["error"]["details"].as_array().unwrap().len(),
        3,
        "{bad}"
    );
}

#[tokio::test]
async fn users_see_only_their_own_orders_and_another_users_id_is_404() {
    let app = spawn_app().await;
    let alice = app.register("alice@example.com").await;
    let bob = app.register("bob@example.com").await;
    let created = body(post_order(&app, &alice, &order(), None).await).await;
    let id = created["data"]["_id"].as_str().unwrap();

    let own = app
        .get(&format!("/api/orders/{id}"), Some(&alice.cookie))
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    let other = app
        .get(&format!("/api/orders/{id}"), Some(&bob.cookie))
        .await;
    expect_error(other, StatusCode::NOT_FOUND, "not_found").await;

    let bobs = body(app.get("/api/orders", Some(&bob.cookie)).await).await;
    assert_eq!(bobs["total"], 0);
    let pending = body(
        app.get("/api/orders?status=pending", Some(&alice.cookie))
            .await,
    )
    .await;
    assert_eq!(pending["total"], 1);
    let completed = body(
        app.get("/api/orders?status=completed", Some(&alice.cookie))
            .await,
    )
    .await;
    assert_eq!(completed["total"], 0);
    let bad = app
        .get(
            "/api/orders?status=%7B%22%24ne%22%3A1%7D",
            Some(&alice.cookie),
        )
        .await;
    expect_error(bad, StatusCode::BAD_REQUEST, "validation_failed").await;
    expect_error(
        app.get("/api/orders", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn an_idempotent_retry_replays_the_first_order_without_creating_another() {
    let app = spawn_app().await;
    let login = app.register("retry@example.com").await;
    let first = post_order(&app, &login, &order(), Some("order-42")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = body(first).await;
    let retry = post_order(&app, &login, &order(), Some("order-42")).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotency-replayed"], "true");
    assert_eq!(
        body(retry).await,
        first,
        "the first response, byte for byte"
    );
    let listed = body(app.get("/api/orders", Some(&login.cookie)).await).await;
    assert_eq!(listed["total"], 1, "the retry created nothing");

    let other_body = json!({"lines": [{"sku": "OTHER", "qty": 1, "price": 1}]});
    let mismatch = post_order(&app, &login, &other_body, Some("order-42")).await;
    expect_error(mismatch, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable").await;

    // Keys are per user: the same key from someone else is a new request.
    let other = app.register("other@example.com").await;
    let theirs = post_order(&app, &other, &order(), Some("order-42")).await;
    assert_eq!(theirs.status(), StatusCode::CREATED);
    assert!(theirs.headers().get("idempotency-replayed").is_none());
    assert_ne!(body(theirs).await["data"]["_id"], first["data"]["_id"]);
}
