//! `keel serve` on a MongoDB that fails: down at start, stopped under load, back again. Each
//! test owns its SecantusDB (`helpers::TestMongoServer`: same port and storage directory across
//! a restart), so it can stop it without disturbing the other tests.
//!
//! `#[ignore]`d in a plain `cargo test` (listed as ignored, never passing as if they had run);
//! `scripts/mongo-test-server cargo test --test api -- --ignored mongo_faults::` runs them
//! (the script exports `KEEL_TEST_SECANTUSD`). Without it they fail saying so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bson::doc;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::{PASSWORD, session_cookie};
use crate::helpers::{KeelProcess, TestMongoServer, http_client};
use crate::replicas::connect;
use crate::support::eventually;

/// The database password of these tests: it must never appear in a log line or a response.
const DB_PASSWORD: &str = "pw-hunter2-do-not-log";

/// Short timeouts so an outage shows within a second or two (production keeps the defaults).
const FAST_FAILURE: [(&str, &str); 4] = [
    ("KEEL_DATABASE__SERVER_SELECTION_TIMEOUT_MS", "1000"),
    ("KEEL_DATABASE__CONNECT_TIMEOUT_MS", "1000"),
    ("KEEL_SERVER__REQUEST_TIMEOUT", "5s"),
    ("KEEL_RATE_LIMIT__ENABLED", "false"),
];

async fn get(address: std::net::SocketAddr, path: &str) -> (StatusCode, String) {
    let response = http_client()
        .get(format!("http://{address}{path}"))
        .send()
        .await
        .expect("GET");
    let status = response.status();
    (status, response.text().await.expect("a body"))
}

async fn post(address: std::net::SocketAddr, path: &str, body: &Value) -> reqwest::Response {
    http_client()
        .post(format!("http://{address}{path}"))
        .json(body)
        .send()
        .await
        .expect("POST")
}

/// A 503 in the JSON error envelope; returns its `error.code`.
fn unavailable_code(status: StatusCode, body: &str) -> String {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    assert_eq!(body["success"], false, "{body}");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

fn assert_no_secret(keel: &KeelProcess, bodies: &[String]) {
    for line in keel.lines() {
        assert!(
            !line.contains(DB_PASSWORD),
            "the password in a log line: {line}"
        );
    }
    for body in bodies {
        assert!(
            !body.contains(DB_PASSWORD),
            "the password in a response: {body}"
        );
    }
}

#[tokio::test]
#[ignore = "needs SecantusDB: scripts/mongo-test-server cargo test --test api -- --ignored mongo_faults::"]
async fn keel_started_while_mongodb_is_down_is_not_ready_and_comes_good_without_a_restart() {
    let mut server = TestMongoServer::new();
    server.provision_user(DB_PASSWORD).await;
    let url = server.url_with_credentials("faults_start", DB_PASSWORD);
    let mut env = vec![("KEEL_DATABASE__URL", url.as_str())];
    env.extend_from_slice(&FAST_FAILURE);
    let keel = KeelProcess::serve(&env);

    let warning = keel
        .wait_for_line(|l| l.contains("the database is not reachable at start"))
        .await;
    let warning: Value = serde_json::from_str(&warning).expect("a JSON log line");
    assert_eq!(warning["level"], "warn");
    let port = format!("127.0.0.1:{}", server.port);
    assert!(
        warning["error"].as_str().is_some_and(|e| e.contains(&port)),
        "{warning}"
    );
    let address = keel.address().await;
    let mut bodies = Vec::new();

    let (status, body) = get(address, "/api/ready").await;
    assert_eq!(unavailable_code(status, &body), "unavailable");
    let ready: Value = serde_json::from_str(&body).expect("JSON");
    let down = ready["error"]["details"]["down"].to_string();
    assert!(down.contains("\"database\""), "{ready}");
    bodies.push(body);
    let register = post(
        address,
        "/api/auth/register",
        &json!({"email": "early@example.com", "password": PASSWORD}),
    )
    .await;
    let (status, body) = (register.status(), register.text().await.expect("a body"));
    assert_eq!(unavailable_code(status, &body), "unavailable");
    bodies.push(body);

    server.start().await;
    eventually("/api/ready to answer 200 once MongoDB is up", || async {
        let (status, body) = get(address, "/api/ready").await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    keel.wait_for_log("the database answers: start-up finished")
        .await;
    // The same process, now on the database: a write and the unique index start-up created.
    for expected in [StatusCode::CREATED, StatusCode::CONFLICT] {
        let register = post(
            address,
            "/api/auth/register",
            &json!({"email": "later@example.com", "password": PASSWORD}),
        )
        .await;
        assert_eq!(register.status(), expected);
        bodies.push(register.text().await.expect("a body"));
    }
    assert_no_secret(&keel, &bodies);
}

/// Requests that need the store — a listing, a login, and a logged-in `GET /api/auth/me` whose
/// session must be checked — sent in a loop until `stop`: each answer's status, body and
/// duration; `failed` counts the answers that were not 2xx.
async fn load(
    address: std::net::SocketAddr,
    cookie: String,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
) -> Vec<(StatusCode, String, Duration)> {
    let mut answers = Vec::new();
    let mut n = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let response = if n.is_multiple_of(3) {
            http_client()
                .get(format!("http://{address}/api/auth/me"))
                .header("cookie", format!("sessionId={cookie}"))
                .send()
                .await
        } else if n.is_multiple_of(2) {
            http_client()
                .get(format!("http://{address}/api/items?limit=5"))
                .send()
                .await
        } else {
            http_client()
                .post(format!("http://{address}/api/auth/login"))
                .json(&json!({"email": "load@example.com", "password": PASSWORD}))
                .send()
                .await
        };
        let response = response.expect("keel answers (no hang, no reset)");
        let status = response.status();
        let body = response.text().await.expect("a body");
        if !status.is_success() {
            failed.fetch_add(1, Ordering::Relaxed);
        }
        answers.push((status, body, started.elapsed()));
    }
    answers
}

#[tokio::test]
#[ignore = "needs SecantusDB: scripts/mongo-test-server cargo test --test api -- --ignored mongo_faults::"]
async fn mongodb_stopped_under_load_answers_503_json_and_watchers_resume_when_it_is_back() {
    let mut server = TestMongoServer::new();
    server.provision_user(DB_PASSWORD).await;
    server.start().await;
    let url = server.url_with_credentials("faults_load", DB_PASSWORD);
    let mut env = vec![
        ("KEEL_DATABASE__URL", url.as_str()),
        // Sparse watcher retries: the feed is still closed when the test writes after the
        // restart, so only resuming from the stored token can deliver those events.
        ("KEEL_WATCHERS__BACKOFF_BASE_MS", "2000"),
    ];
    env.extend_from_slice(&FAST_FAILURE);
    let keel = KeelProcess::serve(&env);
    let address = keel.address().await;
    eventually("ready", || async {
        (get(address, "/api/ready").await.0 == StatusCode::OK).then_some(())
    })
    .await;

    // Two completions counted before the outage: the watcher has a stored token.
    let register = post(
        address,
        "/api/auth/register",
        &json!({"email": "load@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(register.status(), StatusCode::CREATED);
    let cookie = session_cookie(&register).expect("a session");
    for score in [10, 2] {
        let created = http_client()
            .post(format!("http://{address}/api/surveys"))
            .header("cookie", format!("sessionId={cookie}"))
            .json(&json!({}))
            .send()
            .await
            .expect("create a survey");
        let created: Value = created.json().await.expect("JSON");
        let id = created["data"]["_id"].as_str().expect("an id").to_owned();
        let done = http_client()
            .post(format!("http://{address}/api/surveys/{id}/complete"))
            .header("cookie", format!("sessionId={cookie}"))
            .json(&json!({"score": score}))
            .send()
            .await
            .expect("complete a survey");
        assert_eq!(done.status(), StatusCode::OK);
    }
    let store = connect(&url).await;
    let responses = |store: keel::store::Store| async move {
        let stats = store
            .collection("survey_stats")
            .find(doc! {}, Default::default())
            .await
            .ok()?;
        Some(
            stats
                .iter()
                .map(|s| s.get_i64("responses").unwrap_or(0))
                .sum::<i64>(),
        )
    };
    eventually("the two completions counted", || async {
        (responses(store.clone()).await == Some(2)).then_some(())
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..3)
        .map(|_| tokio::spawn(load(address, cookie.clone(), stop.clone(), failed.clone())))
        .collect();
    server.stop().await;
    eventually("/api/ready to report the outage", || async {
        let (status, body) = get(address, "/api/ready").await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
    })
    .await;
    // Every load client meets the outage a few times.
    eventually("a dozen requests answered during the outage", || async {
        (failed.load(Ordering::Relaxed) >= 12).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut during = Vec::new();
    for client in clients {
        during.extend(client.await.expect("a load client"));
    }
    let failures: Vec<_> = during.iter().filter(|(s, _, _)| !s.is_success()).collect();
    assert!(failures.len() >= 12, "the outage was met: {during:?}");
    for (status, body, took) in &failures {
        let code = unavailable_code(*status, body);
        assert!(code == "unavailable" || code == "timeout", "{body}");
        assert!(
            *took < Duration::from_secs(6),
            "past the request timeout: {took:?}"
        );
    }

    server.start().await;
    // Written while keel's watchers are still backing off: the feed must resume from the
    // stored token to see them.
    let completed_at = bson::DateTime::now();
    store
        .collection("surveys")
        .insert_many(vec![
            doc! {"status": "completed", "score": 9_i32, "processed": false, "completedAt": completed_at},
            doc! {"status": "completed", "score": 5_i32, "processed": false, "completedAt": completed_at},
        ])
        .await
        .expect("surveys completed while keel reconnects");
    let (_, ready) = get(address, "/api/ready").await;
    assert!(
        ready.contains("watcher"),
        "the watchers had already reopened their feeds; the test proves nothing: {ready}"
    );
    eventually("/api/ready back to 200 without a restart", || async {
        (get(address, "/api/ready").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    eventually(
        "the completions written after the restart counted",
        || async { (responses(store.clone()).await == Some(4)).then_some(()) },
    )
    .await;
    let processed = store
        .collection("surveys")
        .count(doc! {"processed": true})
        .await
        .expect("count");
    assert_eq!(processed, 4);
    assert!(
        !keel.lines().iter().any(|l| l.contains("panicked")),
        "a panic during the outage"
    );
    let bodies: Vec<String> = during.into_iter().map(|(_, body, _)| body).collect();
    assert_no_secret(&keel, &bodies);
}

#[tokio::test]
#[ignore = "needs SecantusDB: scripts/mongo-test-server cargo test --test api -- --ignored mongo_faults::"]
async fn a_wrong_database_password_stops_keel_at_start_without_printing_either_password() {
    let mut server = TestMongoServer::new();
    server.provision_user(DB_PASSWORD).await;
    server.start().await;
    let wrong = "pw-wrong-guess-do-not-log";
    let url = server.url_with_credentials("faults_auth", wrong);
    let mut env = vec![("KEEL_DATABASE__URL", url.as_str())];
    env.extend_from_slice(&FAST_FAILURE);
    let mut keel = KeelProcess::serve(&env);
    let status = keel.wait_for_exit().await;
    assert!(!status.success(), "keel ran on wrong credentials");
    // The last lines may still be in the pipes when the exit status arrives.
    let stopped = keel
        .wait_for_line(|l| l.contains("keel stopped on an error"))
        .await;
    assert!(stopped.contains("authentication failed"), "{stopped}");
    keel.wait_for_line(|l| l.starts_with("keel: ")).await;
    let output = keel.lines().join("\n");
    assert!(
        !output.contains(wrong) && !output.contains(DB_PASSWORD),
        "{output}"
    );
}
