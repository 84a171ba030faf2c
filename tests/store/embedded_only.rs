//! Behaviour specific to the embedded backend: what it refuses, and its change-log retention.

use std::time::Duration;

use bson::doc;
use futures::StreamExt;
use keel::secrets::Secret;
use keel::store::{DatabaseConfig, FindOptions, Store, StoreError, WatchOptions};

use crate::change_feed::next_event;
use crate::support::eventually;
use crate::support::store::{TemporaryStore, embedded_config};

#[tokio::test]
async fn operator_outside_the_subset_is_unsupported_not_ignored() -> anyhow::Result<()> {
    let backend = TemporaryStore::embedded().await?;
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
    eventually(
        "resuming from the trimmed position to be refused",
        || async {
            match items.watch(options.clone()).await {
                Err(StoreError::ResumeTokenExpired) => Ok(Some(())),
                Ok(_) => Ok(None),
                Err(other) => Err(other.into()),
            }
        },
    )
    .await;
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

/// Peak resident memory of this process in KiB, reset to the current size first when `reset`.
#[cfg(target_os = "linux")]
fn peak_rss_kib(reset: bool) -> u64 {
    if reset {
        // "5" resets VmHWM to the current RSS (Linux ≥ 4.0).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A sorted page over 100,000 documents holds the page, not every match: the answer equals
/// the same slice of a full sort, and the process's peak memory barely moves (every match held
/// as a document would take well over 100 MiB here).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_sorted_page_over_100_000_documents_is_a_bounded_top_k() -> anyhow::Result<()> {
    let backend = TemporaryStore::embedded().await?;
    let items = backend.store.collection("items");
    let padding = "p".repeat(1000);
    for chunk in 0..100 {
        let documents = (0..1000)
            .map(|n| {
                let i = chunk * 1000 + n;
                // Many ties on `name`, broken by `_id`.
                doc! {"_id": i, "name": format!("name-{:03}", (i * 7919) % 997), "pad": &padding}
            })
            .collect();
        items.insert_many(documents).await?;
    }
    let sort = doc! {"name": -1, "_id": 1};
    let page = |skip: u64, limit: i64| {
        let items = items.clone();
        let sort = sort.clone();
        async move {
            let options = FindOptions::default()
                .sort(sort)
                .skip(skip)
                .limit(limit)
                .projection(doc! {"pad": 0});
            let found = items.find(doc! {"_id": {"$gte": 0}}, options).await?;
            anyhow::Ok(
                found
                    .iter()
                    .map(|d| d.get_i32("_id").unwrap())
                    .collect::<Vec<_>>(),
            )
        }
    };
    let before = peak_rss_kib(true);
    let deep = page(60_000, 100).await?;
    let grew_mib = peak_rss_kib(false).saturating_sub(before) / 1024;
    assert!(
        grew_mib < 60,
        "a 100-document page raised peak memory by {grew_mib} MiB"
    );

    // The same slice of everything, sorted (by ids only, projected, to compare).
    let everything = items
        .find(
            doc! {},
            FindOptions::default()
                .sort(sort.clone())
                .projection(doc! {"_id": 1, "name": 1}),
        )
        .await?;
    let all_ids: Vec<i32> = everything
        .iter()
        .map(|d| d.get_i32("_id").unwrap())
        .collect();
    assert_eq!(deep, all_ids[60_000..60_100]);
    assert_eq!(page(0, 7).await?, all_ids[..7]);
    assert_eq!(page(99_990, 100).await?, all_ids[99_990..]);
    Ok(())
}
