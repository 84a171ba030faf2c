//! `/api/health` (liveness) and `/api/ready` (readiness registry).

use reqwest::StatusCode;

use crate::api_support::body;
use crate::helpers::{spawn_app, spawn_chassis, spawn_chassis_with, spawn_full_app};
use crate::support::eventually;

#[tokio::test]
async fn health_answers_healthy_with_a_timestamp() {
    let app = spawn_chassis().await;
    let before = chrono::Utc::now();
    let response = app.get_health().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    // The bytes, not just the JSON: `{"status":…,"timestamp":…}` in this order, the time in
    // milliseconds and UTC (`Z`), as the `json!` map and chrono's RFC 3339 wrote them.
    let text = response.text().await.expect("a body");
    let timestamp = text
        .strip_prefix(r#"{"status":"healthy","timestamp":""#)
        .and_then(|rest| rest.strip_suffix(r#""}"#))
        .unwrap_or_else(|| panic!("{text}"));
    let at = chrono::DateTime::parse_from_rfc3339(timestamp).expect("an RFC 3339 time");
    assert_eq!(
        at.to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        timestamp
    );
    let after = chrono::Utc::now();
    let millis = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis();
    assert!(millis(before) <= millis(at.to_utc()) && millis(at.to_utc()) <= millis(after));
}

#[tokio::test]
async fn ready_lists_what_is_down_with_503() {
    let app = spawn_chassis().await;
    app.platform.readiness().set_up("scheduler");
    assert_eq!(app.get_ready().await.status(), StatusCode::OK);

    app.platform
        .readiness()
        .set_down("watchers", "change stream reconnecting");
    let response = app.get_ready().await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body(response).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "unavailable");
    let down = body["error"]["details"]["down"]
        .as_array()
        .expect("a down list");
    assert_eq!(down.len(), 1);
    assert_eq!(down[0]["name"], "watchers");
    assert_eq!(down[0]["reason"], "change stream reconnecting");

    app.platform.readiness().set_up("watchers");
    assert_eq!(app.get_ready().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn ready_is_503_once_shutdown_begins_while_health_stays_up() {
    let app = spawn_chassis().await;
    app.platform.readiness().mark_shutting_down();
    assert_eq!(
        app.get_ready().await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get_health().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_full_app_is_ready_once_its_store_answers_and_its_watchers_follow_their_feeds() {
    let app = spawn_full_app().await;
    // Not before the watchers have opened their feeds: an event written earlier would be missed.
    let body = eventually("/api/ready to answer 200", || async {
        let response = app.get_ready().await;
        if response.status() == StatusCode::OK {
            Some(body(response).await)
        } else {
            None
        }
    })
    .await;
    let components = body["components"].as_array().expect("components");
    for name in ["store", "watchers"] {
        assert!(
            components
                .iter()
                .any(|c| c["name"] == name && c["up"] == true),
            "{name}: {body}"
        );
    }
}

/// What a client behind a proxy (not the host itself) is told: the status, not why.
#[tokio::test]
async fn ready_details_and_metrics_are_for_the_host_itself_or_the_token_holder() {
    let token = "scrape-token-for-the-probes-test";
    let app =
        spawn_chassis_with(|c| c.metrics.token = Some(keel::secrets::Secret::new(token))).await;
    app.platform
        .readiness()
        .set_down("store", "no answer from mongo-0.internal:27017");
    let forwarded = |path: &str| {
        app.client
            .get(app.url(path))
            .header("x-forwarded-for", "203.0.113.7")
    };

    let response = forwarded("/api/ready").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready = body(response).await;
    assert_eq!(ready["error"]["code"], "unavailable");
    assert!(
        ready["error"].get("details").is_none(),
        "a remote client sees no probe errors: {ready}"
    );
    let response = forwarded("/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let wrong = forwarded("/metrics")
        .bearer_auth("scrape-token-for-the-probes-tesT")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    // With the token, from anywhere.
    let ready = body(
        forwarded("/api/ready")
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready["error"]["details"]["down"][0]["name"], "store");
    let response = forwarded("/metrics")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("# TYPE"));

    // The host itself (loopback, not forwarded) needs no token.
    let ready = body(app.get_ready().await).await;
    assert_eq!(
        ready["error"]["details"]["down"][0]["reason"],
        "no answer from mongo-0.internal:27017"
    );
    assert_eq!(app.get("/metrics", None).await.status(), StatusCode::OK);
}

/// The value of the `keel_http_requests_total` series with exactly these labels, if present.
fn requests_total(metrics: &str, labels: &str) -> Option<f64> {
    let series = format!("keel_http_requests_total{{{labels}}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn requests_are_counted_per_route_pattern_and_status() {
    let app = spawn_app().await;
    let scrape = || async { app.get("/metrics", None).await.text().await.unwrap() };
    let health = r#"method="GET",route="/api/health",status="200""#;
    app.get_health().await;
    let before = requests_total(&scrape().await, health).expect("health counted");
    for _ in 0..3 {
        assert_eq!(app.get_health().await.status(), StatusCode::OK);
    }
    let after = requests_total(&scrape().await, health).expect("health counted");
    assert!(after >= before + 3.0, "{before} → {after}");

    // Two ids, one series: the label is the route's pattern.
    for id in ["507f1f77bcf86cd799439011", "507f1f77bcf86cd799439012"] {
        let response = app.get(&format!("/api/items/{id}"), None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let text = scrape().await;
    let item = r#"method="GET",route="/api/items/{id}",status="404""#;
    assert!(
        requests_total(&text, item).is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(!text.contains("507f1f77bcf86cd799439011"), "{text}");
}
