//! The surveys watcher against a real (temporary, embedded) store.

use bson::{Bson, doc};
use keel::store::{ChangeEvent, ChangeOp, DatabaseConfig, FindOptions, ResumeToken, Store};
use keel::watchers::Watcher;
use tokio_util::sync::CancellationToken;

use super::watcher::SurveysWatcher;
use crate::support::store::{TemporaryDatabase, TemporaryStore};

#[tokio::test]
async fn two_surveys_watchers_count_a_completed_survey_once() {
    let test = TemporaryStore::embedded().await.expect("a temporary store");
    let store = test.store.clone();
    let completed_at = bson::DateTime::parse_rfc3339_str("2026-05-06T08:00:00Z").expect("date");
    let survey = doc! { "_id": "s-1", "status": "completed", "score": 9, "processed": false, "completedAt": completed_at };
    store
        .collection("surveys")
        .insert_one(survey.clone())
        .await
        .expect("insert");
    let event = ChangeEvent {
        op: ChangeOp::Insert,
        id: Bson::String("s-1".into()),
        full_document: Some(survey),
        resume_token: ResumeToken(doc! {}),
        cluster_time: None,
    };
    let (first, second) = (SurveysWatcher::new(&store), SurveysWatcher::new(&store));
    let (a, b) = tokio::join!(first.handle(&event), second.handle(&event));
    a.expect("first instance");
    b.expect("second instance");
    // A replay after a restart changes nothing either.
    first.handle(&event).await.expect("replay");
    let stats = store
        .collection("survey_stats")
        .find_one(doc! { "_id": "2026-05-06" }, FindOptions::default())
        .await
        .expect("find")
        .expect("stats for the day");
    assert_eq!(stats.get_i64("responses").ok(), Some(1));
    assert_eq!(stats.get_i64("promoters").ok(), Some(1));
    assert_eq!(stats.get_f64("nps").ok(), Some(100.0));
}

/// The surveys watcher was down while the change log moved past its saved position: the feed
/// cannot replay the gap, so the watcher reopens from now and catches up by query.
#[tokio::test]
async fn a_watcher_behind_the_change_log_catches_up_by_query() {
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use keel::store::{StoreError, WatchOptions};
    use keel::watchers::{Offsets, WatcherRuntime, WatcherState, WatchersConfig};

    // An embedded store whose change log keeps only three events.
    let database = TemporaryDatabase::embedded().expect("a temporary directory");
    let config = DatabaseConfig {
        change_retention_events: 3,
        ttl_sweep_interval_ms: 50,
        ..database.config()
    };
    let store = Store::connect(&config).await.expect("embedded store");
    let surveys = store.collection("surveys");
    // The position the watcher saved before it went down.
    let mut feed = surveys.watch(WatchOptions::default()).await.expect("watch");
    surveys
        .insert_one(doc! { "_id": "s-0", "status": "open", "processed": false })
        .await
        .expect("insert");
    let saved = feed
        .next()
        .await
        .expect("an event")
        .expect("an event")
        .resume_token;
    drop(feed);
    Offsets::new(&store)
        .save("surveys", &saved)
        .await
        .expect("save the position");
    // While it is down: three completions among enough writes to trim the change log.
    for n in 1..=10 {
        let status = if n % 3 == 0 { "completed" } else { "open" };
        surveys
            .insert_one(
                doc! { "_id": format!("s-{n}"), "status": status, "score": 10, "processed": false },
            )
            .await
            .expect("insert");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let stale = WatchOptions {
        resume_after: Some(saved),
        ..WatchOptions::default()
    };
    while !matches!(
        surveys.watch(stale.clone()).await,
        Err(StoreError::ResumeTokenExpired)
    ) {
        assert!(
            Instant::now() < deadline,
            "the change log was never trimmed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut runtime = WatcherRuntime::new(&store, WatchersConfig::default());
    runtime.register(SurveysWatcher::new(&store));
    let health = runtime.health();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runtime.run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let claimed = surveys
            .count(doc! { "status": "completed", "processed": true })
            .await
            .expect("count");
        if claimed == 3 && health.state("surveys") == Some(WatcherState::Running) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gap's completions were not caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let responses: i64 = store
        .collection("survey_stats")
        .find(doc! {}, FindOptions::default())
        .await
        .expect("stats")
        .iter()
        .map(|day| day.get_i64("responses").unwrap_or(0))
        .sum();
    assert_eq!(responses, 3, "each completion counted once");
    // And it follows the feed from now on.
    surveys
        .insert_one(doc! { "_id": "s-11", "status": "completed", "score": 0, "processed": false })
        .await
        .expect("insert");
    let deadline = Instant::now() + Duration::from_secs(20);
    while surveys
        .count(doc! { "_id": "s-11", "processed": true })
        .await
        .expect("count")
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "a new completion was not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.expect("the runtime stops");
}
