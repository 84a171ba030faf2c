//! Client input never reaches the store as an operator: `$` keys and dotted keys are refused
//! anywhere, getData's filter takes only whitelisted fields and operators, and malformed,
//! mistyped or oversized bodies get the envelope.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::api_support::{expect_error, spawn_app, spawn_app_with};

fn fields(body: &serde_json::Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn get_data_refuses_where_and_every_operator_outside_the_whitelist() {
    let app = spawn_app().await;
    let login = app.register("inject@example.com").await;
    let cases = [
        (
            json!({"filter": {"$where": "sleep(1000)"}}),
            "filter.$where",
        ),
        (
            json!({"filter": {"name": {"$regex": ".*"}}}),
            "filter.name.$regex",
        ),
        (json!({"filter": {"price": {"$ne": 0}}}), "filter.price.$ne"),
        (
            json!({"filter": {"passwordHash": "x"}}),
            "filter.passwordHash",
        ),
        (json!({"filter": {"a.b": 1}}), "filter.a.b"),
        (
            json!({"filter": {"price": {"$gt": {"$expr": 1}}}}),
            "filter.price.$gt.$expr",
        ),
    ];
    for (body, field) in cases {
        let response = app.post("/api/getData", &body, Some(&login.cookie)).await;
        let error = expect_error(response, StatusCode::BAD_REQUEST, "validation_failed").await;
        assert!(
            fields(&error).iter().any(|f| f == field),
            "{field} not in {error}"
        );
    }
}

#[tokio::test]
async fn operator_and_dotted_keys_in_a_create_body_are_refused() {
    let app = spawn_app().await;
    let login = app.register("create@example.com").await;
    app.create_brand(&login, "Acme", true).await;
    let body = json!({"name": "X", "brand": "Acme", "price": {"$gt": 0}, "a.b": 1, "tags": [{"$where": 1}]});
    let response = app.post("/api/items", &body, Some(&login.cookie)).await;
    let error = expect_error(response, StatusCode::BAD_REQUEST, "validation_failed").await;
    let got = fields(&error);
    for want in ["price.$gt", "a.b", "tags[0].$where"] {
        assert!(got.iter().any(|f| f == want), "{want} not in {got:?}");
    }
    let listed = app.get("/api/items", None).await;
    assert_eq!(
        crate::api_support::body(listed).await["total"],
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn unknown_fields_and_wrong_types_are_400() {
    let app = spawn_app().await;
    let login = app.register("types@example.com").await;
    let unknown = app
        .post(
            "/api/orders",
            &json!({"lines": [], "userId": "someone-else"}),
            Some(&login.cookie),
        )
        .await;
    expect_error(unknown, StatusCode::BAD_REQUEST, "validation_failed").await;
    let mistyped = app
        .post(
            "/api/orders",
            &json!({"lines": "many"}),
            Some(&login.cookie),
        )
        .await;
    expect_error(mistyped, StatusCode::BAD_REQUEST, "validation_failed").await;
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversized_bodies_get_the_envelope() {
    let app = spawn_app_with(|c| c.server.body_limit = 2048).await;
    let login = app.register("bodies@example.com").await;
    let send = |content_type: &'static str, body: String| {
        app.request(Method::POST, "/api/orders", Some(&login.cookie))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    expect_error(
        send("application/json", "{\"lines\": [".into())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    expect_error(
        send("text/plain", "{}".into()).await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let huge = format!("{{\"lines\": [{{\"sku\": \"{}\"}}]}}", "x".repeat(10_000));
    expect_error(
        send("application/json", huge).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    expect_error(
        send("application/json", deep).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_10_mb_array_on_login_is_a_413_and_never_parsed() {
    // Anonymous, on the cheapest route to reach: a parsed 10 MB `[0,0,…]` used to cost the
    // server ~170 MiB. The default body limit (64 KB) refuses it from its Content-Length.
    let app = spawn_app().await;
    let mut body = Vec::with_capacity(10_000_000);
    body.push(b'[');
    while body.len() < 10_000_000 - 2 {
        body.extend_from_slice(b"0,");
    }
    body.extend_from_slice(b"0]");
    let response = app
        .request(Method::POST, "/api/auth/login", None)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn login_takes_at_most_4_kb_and_a_raised_body_limit_still_caps_parsed_values() {
    // Operators raising server.body_limit (uploads) must not reopen the parsed-array hole.
    let app = spawn_app_with(|c| c.server.body_limit = 10 * 1024 * 1024).await;
    let padded = serde_json::json!({"email": "a@example.com", "password": "x".repeat(5000)});
    let response = app
        .request(Method::POST, "/api/auth/login", None)
        .json(&padded)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // 30,000 tiny values in 60 KB: under every byte limit, over the value count.
    let login = app.register("values@example.com").await;
    let many = format!(
        "{{\"filter\": {{}}, \"x\": [{}]}}",
        vec!["0"; 30_000].join(",")
    );
    let response = app
        .request(Method::POST, "/api/getData", Some(&login.cookie))
        .header("content-type", "application/json")
        .body(many)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}
