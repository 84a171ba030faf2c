//! Every error is the JSON envelope: 404, 405, 413, 500 (panic and internal), 503 (timeout).

use std::time::Duration;

use reqwest::StatusCode;

use crate::api_support::body;
use crate::helpers::{spawn_chassis, spawn_chassis_with};

async fn assert_envelope(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers().get("content-type").cloned();
    let body = body(response).await;
    assert_eq!(content_type.unwrap().to_str().unwrap(), "application/json");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn an_unknown_route_is_a_404_envelope() {
    let app = spawn_chassis().await;
    assert_envelope(
        app.get("/api/nothing-here", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_method_is_a_405_envelope() {
    let app = spawn_chassis().await;
    let response = app
        .client
        .delete(app.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_envelope(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_envelope() {
    let app = spawn_chassis_with(|config| config.server.body_limit = 1024).await;
    let small = app
        .client
        .post(app.url("/__test/echo"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(body(small).await["data"]["bytes"], 1024);
    let large = app
        .client
        .post(app.url("/__test/echo"))
        .body(vec![b'x'; 1025])
        .send()
        .await
        .unwrap();
    assert_envelope(large, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn the_default_body_limit_is_64_kb() {
    let app = spawn_chassis().await;
    let at_limit = app
        .client
        .post(app.url("/__test/echo"))
        .body(vec![b'x'; 64 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(at_limit.status(), StatusCode::OK);
    let over = app
        .client
        .post(app.url("/__test/echo"))
        .body(vec![b'x'; (64 << 10) + 1])
        .send()
        .await
        .unwrap();
    assert_envelope(over, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_with_the_request_id_and_no_internals() {
    let app = spawn_chassis().await;
    let response = app.get("/__test/panic", None).await;
    let request_id = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body = assert_envelope(
        response,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
    )
    .await;
    assert_eq!(body["error"]["requestId"], request_id);
    assert!(!body.to_string().contains("on purpose"), "{body}");
    // The server survived the panic.
    assert_eq!(app.get_health().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_internal_error_never_shows_its_cause() {
    let app = spawn_chassis().await;
    let body = assert_envelope(
        app.get("/__test/internal", None).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
    )
    .await;
    assert!(!body.to_string().contains("swordfish"), "{body}");
}

#[tokio::test]
async fn a_request_over_the_timeout_is_a_503_envelope() {
    let app =
        spawn_chassis_with(|config| config.server.request_timeout = Duration::from_millis(100))
            .await;
    let response = app.get("/__test/slow?ms=30000", None).await;
    assert_envelope(response, StatusCode::SERVICE_UNAVAILABLE, "timeout").await;
}

#[tokio::test]
async fn an_extractor_rejection_becomes_an_envelope() {
    let app = spawn_chassis().await;
    let response = app.get("/__test/slow?ms=not-a-number", None).await;
    let body = assert_envelope(response, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("ms"),
        "{body}"
    );
}
