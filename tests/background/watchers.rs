//! The watcher runtime: resume from the saved position, restart on error, claims across
//! replicas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bson::{Bson, doc};
use futures::FutureExt;
use futures::future::BoxFuture;
use keel::store::{ChangeEvent, ChangeOp, Store, StoreError, UpdateOptions, WatchOptions};
use keel::watchers::{
    Watcher, WatcherError, WatcherHealth, WatcherRuntime, WatcherState, WatchersConfig,
};
use tokio_util::sync::CancellationToken;

use crate::support::eventually;
use crate::support::store::on_every_backend;

/// Counts the inserts into `source`: every call in `calls` (per document id), and the effect
/// once per document, claimed by inserting `{_id: document id}` into `handled`.
#[derive(Clone)]
struct CountingWatcher {
    store: Store,
    calls: Arc<Mutex<HashMap<String, u32>>>,
    failures_left: Arc<Mutex<u32>>,
}

impl CountingWatcher {
    fn new(store: &Store) -> Self {
        CountingWatcher {
            store: store.clone(),
            calls: Arc::default(),
            failures_left: Arc::default(),
        }
    }

    fn calls_of(&self, id: &str) -> u32 {
        self.calls
            .lock()
            .expect("test mutex")
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    fn total_calls(&self) -> u32 {
        self.calls.lock().expect("test mutex").values().sum()
    }
}

impl Watcher for CountingWatcher {
    fn name(&self) -> &str {
        "counting"
    }

    fn collection(&self) -> &str {
        "source"
    }

    fn options(&self) -> WatchOptions {
        WatchOptions {
            ops: Some(vec![ChangeOp::Insert]),
            ..WatchOptions::default()
        }
    }

    fn handle<'a>(&'a self, event: &'a ChangeEvent) -> BoxFuture<'a, Result<(), WatcherError>> {
        async move {
            let id = match &event.id {
                Bson::String(id) => id.clone(),
                other => other.to_string(),
            };
            *self
                .calls
                .lock()
                .expect("test mutex")
                .entry(id.clone())
                .or_default() += 1;
            let poison = event
                .full_document
                .as_ref()
                .is_some_and(|d| d.get_bool("poison").unwrap_or(false));
            if poison {
                return Err(WatcherError::handler(format!("{id} can never be handled")));
            }
            let fails = event
                .full_document
                .as_ref()
                .is_some_and(|d| d.get_bool("failOnce").unwrap_or(false));
            if fails {
                let mut left = self.failures_left.lock().expect("test mutex");
                if *left > 0 {
                    *left -= 1;
                    return Err(WatcherError::handler(format!("refusing {id} once")));
                }
            }
            match self
                .store
                .collection("handled")
                .insert_one(doc! { "_id": &id })
                .await
            {
                Ok(_) => {
                    self.store
                        .collection("totals")
                        .update_one(
                            doc! { "_id": "effects" },
                            doc! { "$inc": { "n": 1 } },
                            UpdateOptions { upsert: true },
                        )
                        .await?;
                    Ok(())
                }
                // Claimed before (a replay, or the other replica): the effect already happened.
                Err(StoreError::DuplicateKey { .. }) => Ok(()),
                Err(error) => Err(error.into()),
            }
        }
        .boxed()
    }
}

fn config() -> WatchersConfig {
    WatchersConfig {
        backoff_base_ms: 5,
        backoff_max_ms: 50,
        max_event_attempts: 3,
    }
}

/// Starts a runtime with `watcher` and waits until it follows its feed.
async fn start(
    store: &Store,
    watcher: &CountingWatcher,
) -> anyhow::Result<(
    CancellationToken,
    tokio::task::JoinHandle<()>,
    WatcherHealth,
)> {
    let mut runtime = WatcherRuntime::new(store, config());
    runtime.register(watcher.clone());
    let health = runtime.health();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runtime.run(stop.clone()));
    eventually("the watcher to be running", || async {
        Ok((health.state("counting") == Some(WatcherState::Running)).then_some(()))
    })
    .await;
    Ok((stop, task, health))
}

async fn insert_sources(store: &Store, from: u32, to: u32) -> anyhow::Result<()> {
    for n in from..to {
        store
            .collection("source")
            .insert_one(doc! { "_id": format!("doc-{n}") })
            .await?;
    }
    Ok(())
}

async fn effects(store: &Store) -> anyhow::Result<i64> {
    let totals = store
        .collection("totals")
        .find_one(doc! { "_id": "effects" }, Default::default())
        .await?;
    Ok(totals
        .and_then(|d| d.get("n").and_then(Bson::as_i32).map(i64::from))
        .unwrap_or(0))
}

#[tokio::test]
async fn events_are_handled_exactly_once_across_a_restart_mid_stream() -> anyhow::Result<()> {
    on_every_backend("watcher_restart", |store| async move {
        let watcher = CountingWatcher::new(&store);
        let (stop, task, health) = start(&store, &watcher).await?;
        insert_sources(&store, 0, 30).await?;
        eventually("some events to be handled", || async {
            Ok((watcher.total_calls() >= 10).then_some(()))
        })
        .await;
        // Stop mid-stream: the runtime finishes the event in hand, saves its position and returns.
        stop.cancel();
        task.await?;
        assert_eq!(health.state("counting"), Some(WatcherState::Stopped));
        insert_sources(&store, 30, 40).await?;

        let (stop, task, _) = start(&store, &watcher).await?;
        eventually("all 40 events to be handled", || async {
            Ok((watcher.total_calls() >= 40).then_some(()))
        })
        .await;
        stop.cancel();
        task.await?;
        for n in 0..40 {
            assert_eq!(
                watcher.calls_of(&format!("doc-{n}")),
                1,
                "doc-{n} handled once"
            );
        }
        assert_eq!(watcher.total_calls(), 40, "no replays");
        assert_eq!(effects(&store).await?, 40);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn two_watcher_instances_never_double_count() -> anyhow::Result<()> {
    on_every_backend(
        "two_watcher_instances_never_double_count",
        |store| async move {
            let (first, second) = (CountingWatcher::new(&store), CountingWatcher::new(&store));
            let (stop_a, task_a, _) = start(&store, &first).await?;
            let (stop_b, task_b, _) = start(&store, &second).await?;
            insert_sources(&store, 0, 25).await?;
            eventually("both instances to see every event", || async {
                Ok((first.total_calls() >= 25 && second.total_calls() >= 25).then_some(()))
            })
            .await;
            stop_a.cancel();
            stop_b.cancel();
            task_a.await?;
            task_b.await?;
            assert_eq!(
                effects(&store).await?,
                25,
                "each effect claimed once across replicas"
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_handler_error_restarts_the_watcher_without_losing_the_event() -> anyhow::Result<()> {
    on_every_backend(
        "a_handler_error_restarts_the_watcher_without_losing_the_event",
        |store| async move {
            let watcher = CountingWatcher::new(&store);
            *watcher.failures_left.lock().expect("test mutex") = 1;
            let (stop, task, health) = start(&store, &watcher).await?;
            let source = store.collection("source");
            source.insert_one(doc! { "_id": "before" }).await?;
            source
                .insert_one(doc! { "_id": "fragile", "failOnce": true })
                .await?;
            source.insert_one(doc! { "_id": "after" }).await?;
            eventually("every event to take effect", || async {
                Ok((effects(&store).await? == 3).then_some(()))
            })
            .await;
            assert_eq!(watcher.calls_of("before"), 1);
            assert_eq!(
                watcher.calls_of("fragile"),
                2,
                "failed once, delivered again after the restart"
            );
            assert_eq!(watcher.calls_of("after"), 1);
            eventually("the watcher to be running again", || async {
                Ok((health.state("counting") == Some(WatcherState::Running)).then_some(()))
            })
            .await;
            assert!(health.problems().is_empty());
            stop.cancel();
            task.await?;
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_poison_event_is_set_aside_after_its_attempts_and_the_watcher_moves_on()
-> anyhow::Result<()> {
    on_every_backend(
        "a_poison_event_is_set_aside_after_its_attempts_and_the_watcher_moves_on",
        |store| async move {
            let watcher = CountingWatcher::new(&store);
            let (stop, task, health) = start(&store, &watcher).await?;
            let source = store.collection("source");
            source
                .insert_one(doc! { "_id": "poison", "poison": true })
                .await?;
            source.insert_one(doc! { "_id": "after" }).await?;
            // The event behind it is handled: the watcher is not blocked forever. Meanwhile
            // the replica stays ready: retrying one event is not an outage.
            eventually("the event behind the poison one to take effect", || async {
                assert!(
                    health.problems().is_empty(),
                    "unready while retrying: {:?}",
                    health.problems()
                );
                Ok((effects(&store).await? == 1).then_some(()))
            })
            .await;
            assert_eq!(watcher.calls_of("poison"), 3, "max_event_attempts tries");
            assert_eq!(watcher.calls_of("after"), 1);
            let recorded = store
                .collection(keel::watchers::POISON_COLLECTION)
                .find(doc! {}, Default::default())
                .await?;
            assert_eq!(recorded.len(), 1);
            assert_eq!(recorded[0].get_str("watcher")?, "counting");
            assert_eq!(recorded[0].get_str("collection")?, "source");
            assert_eq!(recorded[0].get("documentId"), Some(&Bson::from("poison")));
            assert_eq!(recorded[0].get_str("error")?, "poison can never be handled");
            // Set aside for good: a restart does not bring it back.
            stop.cancel();
            task.await?;
            let (stop, task, _health) = start(&store, &watcher).await?;
            source.insert_one(doc! { "_id": "later" }).await?;
            eventually("the next event to take effect", || async {
                Ok((effects(&store).await? == 2).then_some(()))
            })
            .await;
            assert_eq!(watcher.calls_of("poison"), 3);
            stop.cancel();
            task.await?;
            Ok(())
        },
    )
    .await
}
