//! The ops console over HTTP: who may see it (401/403/200, the bootstrap list), the
//! API's CSRF rule on its actions, "run now" honouring the task's lock, retrying and purging
//! jobs, the audit trail, heartbeats, the embedded page and its OpenAPI entries. The browser
//! side is tests/browser (scripts/browser-test).

use std::time::Duration;

use keel_app::auth::model::{ADMIN_ROLE, Email};
use keel_app::auth::repository::UserRepository;
use keel_app::ops::heartbeat::Instance;
use keel_app::ops::repository::OpsRepository;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_support::{Login, TestApp, body, expect_error, spawn_app, spawn_app_with};
use crate::helpers::keel_command;
use crate::support::eventually;

/// Registers `email` and grants it the admin role the way `keel users grant-admin` does.
async fn admin(app: &TestApp, email: &str) -> Login {
    let login = app.register(email).await;
    let email = Email::parse(email).unwrap();
    let found = UserRepository::new(&app.store)
        .set_role(&email, ADMIN_ROLE, true)
        .await
        .unwrap();
    assert!(found);
    login
}

async fn ops_get(app: &TestApp, path: &str, login: &Login) -> Value {
    let response = app.get(path, Some(&login.cookie)).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    body(response).await
}

async fn ops_post(app: &TestApp, path: &str, body: &Value, login: &Login) -> reqwest::Response {
    app.post(path, body, Some(&login.cookie)).await
}

async fn audit_actions(app: &TestApp, login: &Login) -> Vec<(String, String, String)> {
    let audit = ops_get(app, "/api/ops/audit", login).await;
    audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_console_needs_a_session_then_the_admin_role() {
    let app = spawn_app().await;
    for path in [
        "/api/ops/tasks",
        "/api/ops/jobs",
        "/api/ops/runtime",
        "/ops/app.js",
    ] {
        expect_error(
            app.get(path, None).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let page = app.get("/ops", None).await;
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    assert!(
        page.text().await.unwrap().contains("sign in"),
        "the sign-in page"
    );

    let user = app.register("user@example.com").await;
    for path in [
        "/api/ops/tasks",
        "/api/ops/locks",
        "/api/ops/instances",
        "/ops/app.css",
    ] {
        expect_error(
            app.get(path, Some(&user.cookie)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    let page = app.get("/ops", Some(&user.cookie)).await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page.text().await.unwrap().contains("403"));

    let admin = admin(&app, "admin@example.com").await;
    let page = app.get("/ops", Some(&admin.cookie)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("/ops/app.js"));
    let me = ops_get(&app, "/api/ops/me", &admin).await;
    assert_eq!(me["data"]["email"], "admin@example.com");
    assert_eq!(me["data"]["adminBy"], "grant");

    // The refusals were audited, with who and what.
    let audit = audit_actions(&app, &admin).await;
    assert!(
        audit
            .iter()
            .any(|(a, t, o)| a == "ops.denied" && t == "GET /api/ops/tasks" && o == "denied"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn emails_listed_in_the_configuration_are_admins_without_a_grant() {
    let app = spawn_app_with(|config| {
        config.ops.admin_emails = vec!["Boot@Example.com".to_owned()];
    })
    .await;
    let boot = app.register("boot@example.com").await;
    let me = ops_get(&app, "/api/ops/me", &boot).await;
    assert_eq!(me["data"]["adminBy"], "config");
}

#[tokio::test]
async fn a_foreign_origin_cannot_act_through_an_admins_session() {
    let app = spawn_app().await;
    let admin = admin(&app, "admin@example.com").await;
    let response = app
        .request(
            Method::POST,
            "/api/ops/tasks/process-data/run",
            Some(&admin.cookie),
        )
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let runs = ops_get(&app, "/api/ops/tasks", &admin).await;
    let process_data = runs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "process-data")
        .unwrap()
        .clone();
    assert_eq!(process_data["recentRuns"], json!([]), "nothing ran");
    // The page's own origin passes.
    let response = app
        .request(
            Method::POST,
            "/api/ops/tasks/process-data/run",
            Some(&admin.cookie),
        )
        .header("origin", app.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn run_now_takes_the_tasks_lock_and_says_skipped_when_it_is_held() {
    let app = spawn_app().await;
    let admin = admin(&app, "admin@example.com").await;
    let done = ops_post(&app, "/api/ops/tasks/process-data/run", &json!({}), &admin).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(body(done).await["data"]["outcome"], "success");

    let locks = keel::lock::Locks::new(&app.store);
    let lease = locks
        .acquire("process-data", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the lock is free");
    let skipped = ops_post(&app, "/api/ops/tasks/process-data/run", &json!({}), &admin).await;
    let skipped = body(skipped).await;
    assert_eq!(skipped["data"]["outcome"], "skipped", "{skipped}");
    assert!(
        skipped["data"]["message"]
            .as_str()
            .unwrap()
            .starts_with("skipped, lock held by"),
        "{skipped}"
    );

    let tasks = ops_get(&app, "/api/ops/tasks", &admin).await;
    let task = tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "process-data")
        .unwrap()
        .clone();
    let outcomes: Vec<&str> = task["recentRuns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["skipped", "success"], "newest first");

    let listed = ops_get(&app, "/api/ops/locks", &admin).await;
    let lock = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "process-data")
        .unwrap()
        .clone();
    assert_eq!(lock["isHeld"], true);
    assert_eq!(lock["token"], 2, "the run's acquisition, then ours");
    lease.release().await.unwrap();

    let audit = eventually("both runs audited", || async {
        let audit = audit_actions(&app, &admin).await;
        let runs = audit.iter().filter(|(a, ..)| a == "task.run").count();
        (runs == 2).then_some(audit)
    })
    .await;
    assert!(audit.contains(&("task.run".into(), "process-data".into(), "skipped".into())));
    assert!(audit.contains(&("task.run".into(), "process-data".into(), "success".into())));

    let unknown = ops_post(&app, "/api/ops/tasks/no-such-task/run", &json!({}), &admin).await;
    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_dead_job_is_retried_and_done_or_dead_jobs_are_purged_after_confirmation() {
    let app = spawn_app().await;
    let admin = admin(&app, "admin@example.com").await;
    let dead = body(app.post("/__test/jobs/dead", &json!({}), None).await).await;
    let id = dead["data"]["id"].as_str().unwrap().to_owned();

    let jobs = ops_get(&app, "/api/ops/jobs?status=dead", &admin).await;
    assert_eq!(jobs["data"]["counts"]["dead"], 1);
    assert_eq!(jobs["data"]["jobs"][0]["id"], id.as_str());
    let job = ops_get(&app, &format!("/api/ops/jobs/{id}"), &admin).await;
    assert_eq!(job["data"]["lastError"], "pricing service answered 502");
    assert_eq!(job["data"]["payload"]["order"], "A-17");
    let history = job["data"]["errors"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{job}");
    assert_eq!(history[2]["attempt"], 3);

    let retried = ops_post(
        &app,
        &format!("/api/ops/jobs/{id}/retry"),
        &json!({}),
        &admin,
    )
    .await;
    let retried = body(retried).await;
    assert_eq!(retried["data"]["status"], "queued", "{retried}");
    assert_eq!(retried["data"]["attempts"], 0);
    let again = ops_post(
        &app,
        &format!("/api/ops/jobs/{id}/retry"),
        &json!({}),
        &admin,
    )
    .await;
    expect_error(again, StatusCode::CONFLICT, "conflict").await;

    app.post("/__test/jobs/dead", &json!({}), None).await;
    let unconfirmed = ops_post(
        &app,
        "/api/ops/jobs/purge",
        &json!({"status": "dead", "confirm": false}),
        &admin,
    )
    .await;
    expect_error(unconfirmed, StatusCode::BAD_REQUEST, "bad_request").await;
    let queued = ops_post(
        &app,
        "/api/ops/jobs/purge",
        &json!({"status": "queued", "confirm": true}),
        &admin,
    )
    .await;
    expect_error(queued, StatusCode::BAD_REQUEST, "bad_request").await;
    let purged = ops_post(
        &app,
        "/api/ops/jobs/purge",
        &json!({"status": "dead", "confirm": true}),
        &admin,
    )
    .await;
    assert_eq!(body(purged).await["data"]["deleted"], 1);
    let counts = ops_get(&app, "/api/ops/jobs", &admin).await;
    assert_eq!(
        counts["data"]["counts"],
        json!({"dead": 0, "done": 0, "queued": 1, "running": 0})
    );

    let audit = audit_actions(&app, &admin).await;
    assert!(audit.contains(&("job.retry".into(), id.clone(), "success".into())));
    assert!(audit.contains(&("job.retry".into(), id, "failure".into())));
    assert!(audit.contains(&("jobs.purge".into(), "dead".into(), "success".into())));
}

#[tokio::test]
async fn every_replica_reports_a_heartbeat_the_console_lists() {
    let app = spawn_app().await;
    let admin = admin(&app, "admin@example.com").await;
    // Another replica of the same database, with background roles only.
    let other = Instance::current(&[keel_app::Role::Jobs, keel_app::Role::Watchers]);
    OpsRepository::new(&app.store)
        .beat(&other.heartbeat())
        .await
        .unwrap();
    let instances = eventually("both replicas listed", || async {
        let listed = ops_get(&app, "/api/ops/instances", &admin).await;
        let rows = listed["data"].as_array().unwrap().clone();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    let this = instances.iter().find(|i| i["isSelf"] == true).unwrap();
    assert_eq!(this["roles"], json!(["api"]));
    assert_eq!(this["version"], env!("CARGO_PKG_VERSION"));
    let that = instances
        .iter()
        .find(|i| i["id"] == other.id.as_str())
        .unwrap();
    assert_eq!(that["roles"], json!(["jobs", "watchers"]));
    assert_eq!(that["isStale"], false);
}

#[tokio::test]
async fn the_other_views_answer_and_the_routes_are_documented() {
    let app = spawn_app().await;
    let admin = admin(&app, "admin@example.com").await;
    let watchers = ops_get(&app, "/api/ops/watchers", &admin).await;
    let names: Vec<&str> = watchers["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{watchers}");
    // An api-only replica does not run the watchers.
    assert!(
        watchers["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["state"] == "not-here"),
        "{watchers}"
    );
    // A poison event set aside by the surveys watcher (on any replica) is listed under it.
    app.store
        .collection(keel::watchers::POISON_COLLECTION)
        .insert_one(bson::doc! {
            "watcher": "surveys", "collection": "surveys", "documentId": "s-1", "op": "update",
            "error": "score is not a number", "attempts": 5_i64, "at": bson::DateTime::now(),
        })
        .await
        .unwrap();
    let watchers = ops_get(&app, "/api/ops/watchers", &admin).await;
    let surveys = watchers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "surveys")
        .unwrap()
        .clone();
    assert_eq!(
        surveys["poisonEvents"][0]["error"], "score is not a number",
        "{surveys}"
    );
    assert_eq!(surveys["poisonEvents"][0]["attempts"], 5);
    let runtime = eventually("a runtime interval", || async {
        let runtime = ops_get(&app, "/api/ops/runtime", &admin).await;
        (!runtime["data"]["points"].as_array().unwrap().is_empty()).then_some(runtime)
    })
    .await;
    assert_eq!(runtime["data"]["metricsEnabled"], true);
    assert_eq!(runtime["data"]["intervalMs"], 2000);

    let document = body(app.get("/api/openapi.json", None).await).await;
    for (method, path) in [
        ("get", "/api/ops/me"),
        ("get", "/api/ops/tasks"),
        ("post", "/api/ops/tasks/{name}/run"),
        ("get", "/api/ops/jobs"),
        ("get", "/api/ops/jobs/{id}"),
        ("post", "/api/ops/jobs/{id}/retry"),
        ("post", "/api/ops/jobs/purge"),
        ("get", "/api/ops/watchers"),
        ("get", "/api/ops/locks"),
        ("get", "/api/ops/instances"),
        ("get", "/api/ops/runtime"),
        ("get", "/api/ops/audit"),
    ] {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        for status in ["200", "401", "403"] {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} does not document {status}"
            );
        }
    }
    assert!(document["components"]["schemas"]["TaskView"].is_object());
}

#[test]
fn the_console_assets_stay_light() {
    let total: usize = keel_app::ops::pages::ASSETS
        .iter()
        .map(|(_, text)| text.len())
        .sum();
    // Uncompressed, so the gzipped size is certainly under the 200 KB.
    assert!(total < 200 * 1024, "{total} bytes of console assets");
}

#[tokio::test]
async fn granting_admin_to_an_unknown_email_fails_with_exit_2() {
    let work_dir = tempfile::tempdir().unwrap();
    let output = keel_command(&["users", "grant-admin", "nobody@example.com"], &work_dir)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no user with email nobody@example.com")
    );
}
