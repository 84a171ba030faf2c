//! `x-request-id`: generated when absent, propagated when sane, replaced when not.

use crate::helpers::spawn_chassis;

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("x-request-id in the response")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

#[tokio::test]
async fn a_request_id_is_generated_when_absent() {
    let app = spawn_chassis().await;
    let first = request_id(&app.get_health().await);
    let second = request_id(&app.get_health().await);
    assert!(uuid_like(&first), "{first}");
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_sane_request_id_is_propagated() {
    let app = spawn_chassis().await;
    let response = app
        .client
        .get(app.url("/api/health"))
        .header("x-request-id", "upstream-42.abc")
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(&response), "upstream-42.abc");
}

#[tokio::test]
async fn an_unsafe_request_id_is_replaced() {
    let app = spawn_chassis().await;
    let response = app
        .client
        .get(app.url("/nowhere"))
        .header("x-request-id", "<script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    let id = request_id(&response);
    assert!(uuid_like(&id), "{id}");
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}
