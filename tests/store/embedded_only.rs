//! Behaviour specific to the embedded backend: what it refuses, and its change-log retention.

use std::time::Duration;

use bson::doc;
use futures::StreamExt;
use keel::secrets::Secret;
use keel::store::{DatabaseConfig, FindOptions, Store, StoreError, WatchOptions};

use crate::change_feed::next_event;
use crate::harness::{embedded, embedded_config, eventually};

#[tokio::test]
async fn operator_outside_the_subset_is_unsupported_not_ignored() -> anyhow::Result<()> {
    let backend = embedded().await?;
    let items = backend.store.collection("items");
    items.insert_one(doc! {"a": 1}).await?;
    let found = items
        .find(doc! {"$where": "this.a == 1"}, FindOptions::default())
        .await;
    match found {
        Err(StoreError::Unsupported { what }) => assert!(what.contains("$where"), "{what}"),
        other => anyhow::bail!("expected Unsupported, got {other:?}"),
    }
    let updated = items
        .update_one(doc! {}, doc! {"$rename": {"a": "b"}}, Default::default())
        .await;
    assert!(
        matches!(updated, Err(StoreError::Unsupported { .. })),
        "{updated:?}"
    );
    Ok(())
}

#[tokio::test]
async fn resuming_from_a_trimmed_position_is_resume_token_expired() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = DatabaseConfig {
        change_retention_events: 3,
        ttl_sweep_interval_ms: 50,
        ..embedded_config(dir.path())
    };
    let store = Store::connect(&config).await?;
    let items = store.collection("items");
    let mut feed = items.watch(WatchOptions::default()).await?;
    items.insert_one(doc! {"_id": 0}).await?;
    let first = next_event(&mut feed).await?;
    for n in 1..10 {
        items.insert_one(doc! {"_id": n}).await?;
    }
    let options = WatchOptions {
        resume_after: Some(first.resume_token.clone()),
        ..Default::default()
    };
    eventually(Duration::from_secs(20), || async {
        match items.watch(options.clone()).await {
            Err(StoreError::ResumeTokenExpired) => Ok(Some(())),
            Ok(_) => Ok(None),
            Err(other) => Err(other.into()),
        }
    })
    .await?;
    // A watcher that fell behind the window learns it too, instead of silently skipping.
    let lagged = tokio::time::timeout(Duration::from_secs(20), feed.next()).await?;
    assert!(
        matches!(lagged, Some(Err(StoreError::ResumeTokenExpired))),
        "{lagged:?}"
    );
    store.close().await?;
    Ok(())
}

#[tokio::test]
async fn unknown_url_scheme_is_refused() -> anyhow::Result<()> {
    let config = DatabaseConfig {
        url: Secret::new("postgres://localhost/x"),
        ..DatabaseConfig::default()
    };
    assert!(matches!(
        Store::connect(&config).await,
        Err(StoreError::InvalidQuery { .. })
    ));
    Ok(())
}
