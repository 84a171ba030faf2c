//! Surveys over HTTP: create, complete once, another user's survey is 404, and the statistics
//! read `survey_stats`.

use bson::doc;
use keel::store::FindOptions;
use reqwest::StatusCode;
use serde_json::json;

use crate::api_support::{body, expect_error, spawn_app};

#[tokio::test]
async fn a_survey_completes_once_and_hands_work_to_the_watcher() {
    let app = spawn_app().await;
    let login = app.register("nps@example.com").await;
    let created = app
        .post(
            "/api/surveys",
            &json!({"customerId": "cust-1", "caseId": "case-9"}),
            Some(&login.cookie),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body(created).await;
    assert_eq!(created["data"]["status"], "pending");
    let id = created["data"]["_id"].as_str().unwrap().to_owned();
    let path = format!("/api/surveys/{id}/complete");

    let bad = app
        .post(
            &path,
            &json!({"score": 11, "comment": 5}),
            Some(&login.cookie),
        )
        .await;
    expect_error(bad, StatusCode::BAD_REQUEST, "validation_failed").await;

    let stranger = app.register("stranger@example.com").await;
    let theirs = app
        .post(&path, &json!({"score": 9}), Some(&stranger.cookie))
        .await;
    expect_error(theirs, StatusCode::NOT_FOUND, "not_found").await;

    let done = app
        .post(
            &path,
            &json!({"score": 9, "comment": "great"}),
            Some(&login.cookie),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let done = body(done).await;
    assert_eq!(done["data"]["status"], "completed");
    assert_eq!(done["data"]["score"], 9);
    assert!(done["data"]["completedAt"].is_string());

    let stored = app
        .store
        .collection("surveys")
        .find_one(
            doc! {"_id": bson::oid::ObjectId::parse_str(&id).unwrap()},
            FindOptions::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.get_bool("processed").unwrap(),
        "the watcher's claim flag"
    );

    let again = app
        .post(&path, &json!({"score": 1}), Some(&login.cookie))
        .await;
    expect_error(again, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn stats_are_read_from_survey_stats_newest_first() {
    let app = spawn_app().await;
    let login = app.register("stats@example.com").await;
    let stats = app.store.collection("survey_stats");
    stats.insert_one(doc! {"day": "2025-01-01", "responses": 4_i64, "promoters": 2_i64, "passives": 1_i64, "detractors": 1_i64, "nps": 25.0}).await.unwrap();
    stats
        .insert_one(
            doc! {"day": "2025-01-02", "promoters": 1_i32, "passives": 0_i32, "detractors": 0_i32},
        )
        .await
        .unwrap();
    let listed = app.get("/api/surveys/stats", Some(&login.cookie)).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed = body(listed).await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["data"][0]["day"], "2025-01-02");
    assert_eq!(listed["data"][0]["nps"], 100.0);
    assert_eq!(listed["data"][1]["responses"], 4);
    expect_error(
        app.get("/api/surveys/stats", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}
