//! Durability of the embedded store: what was acknowledged is there after a reopen, and after
//! the writing process is killed with SIGKILL in the middle of a write loop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use bson::{Bson, doc};
use futures::StreamExt;
use keel::store::{FindOptions, IndexSpec, Store, StoreError, WatchOptions};

use crate::change_feed::next_event;
use crate::support::store::embedded_config;

#[tokio::test]
async fn writes_indexes_and_change_log_survive_a_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = embedded_config(dir.path());
    let token = {
        let store = Store::connect(&config).await?;
        let users = store.collection("users");
        users
            .create_index(IndexSpec::new(doc! {"email": 1}).unique())
            .await?;
        let mut feed = users.watch(WatchOptions::default()).await?;
        users.insert_one(doc! {"_id": 1, "email": "a@x"}).await?;
        users.insert_one(doc! {"_id": 2, "email": "b@x"}).await?;
        let token = next_event(&mut feed).await?.resume_token;
        store.close().await?;
        token
    };
    let store = Store::connect(&config).await?;
    let users = store.collection("users");
    let found = users
        .find_one(doc! {"email": "b@x"}, FindOptions::default())
        .await?;
    assert_eq!(found, Some(doc! {"_id": 2, "email": "b@x"}));
    let again = users.insert_one(doc! {"email": "a@x"}).await;
    assert!(
        matches!(again, Err(StoreError::DuplicateKey { .. })),
        "index survived: {again:?}"
    );
    let mut resumed = users
        .watch(WatchOptions {
            resume_after: Some(token),
            ..Default::default()
        })
        .await?;
    assert_eq!(next_event(&mut resumed).await?.id, Bson::Int32(2));
    store.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_closed_store_answers_unavailable() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::connect(&embedded_config(dir.path())).await?;
    let items = store.collection("items");
    let mut feed = items.watch(WatchOptions::default()).await?;
    items.insert_one(doc! {"n": 1}).await?;
    store.close().await?;
    let write = items.insert_one(doc! {"n": 2}).await;
    assert!(
        matches!(write, Err(StoreError::Unavailable { .. })),
        "{write:?}"
    );
    let read = items.count(doc! {}).await;
    assert!(
        matches!(read, Err(StoreError::Unavailable { .. })),
        "{read:?}"
    );
    assert!(store.ping().await.is_err());
    let mut ended = false;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(10), feed.next()).await {
        if item.is_err() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the watcher learns the store closed");
    Ok(())
}

/// Set for the child process of the crash test: the directory it writes into.
const CRASH_CHILD_DIR: &str = "KEEL_STORE_CRASH_CHILD_DIR";
const ACK: &str = "ACK ";

/// The child of `killed_writer_loses_no_acknowledged_write`: inserts forever from 8
/// concurrent writers, printing each acknowledged `_id`. Does nothing unless started by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by killed_writer_loses_no_acknowledged_write in a child process"]
async fn crash_child_writer_loop() -> anyhow::Result<()> {
    let Ok(dir) = std::env::var(CRASH_CHILD_DIR) else {
        return Ok(());
    };
    let store = Store::connect(&embedded_config(std::path::Path::new(&dir))).await?;
    let items = store.collection("items");
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let items = items.clone();
        writers.spawn(async move {
            for n in 0u64.. {
                let id = format!("{writer}-{n}");
                items
                    .insert_one(doc! {"_id": &id, "payload": "x".repeat(150)})
                    .await?;
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{ACK}{id}")?;
                out.flush()?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    Ok(())
}

#[tokio::test]
async fn killed_writer_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "durability::crash_child_writer_loop",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the writer child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    // Reading the pipe blocks: do it on a blocking thread, killing the child mid-loop.
    let acknowledged = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut acknowledged = Vec::new();
        let mut killed = false;
        for line in BufReader::new(stdout).lines() {
            if let Some(id) = line?.strip_prefix(ACK) {
                acknowledged.push(id.to_owned());
            }
            if acknowledged.len() >= 2_000 && !killed {
                child.kill().context("SIGKILL to the writer child")?;
                killed = true;
            }
        }
        child.wait()?;
        anyhow::ensure!(killed, "the writer child stopped on its own");
        Ok(acknowledged)
    })
    .await??;

    let store = Store::connect(&embedded_config(dir.path()))
        .await
        .context("the store does not reopen cleanly after SIGKILL")?;
    let items = store.collection("items");
    let mut missing = Vec::new();
    for chunk in acknowledged.chunks(500) {
        let ids: Vec<Bson> = chunk.iter().map(|id| Bson::String(id.clone())).collect();
        let found = items
            .count(doc! {"_id": {"$in": ids}})
            .await
            .context("reading after the crash")?;
        if found != chunk.len() as u64 {
            for id in chunk {
                if items.count(doc! {"_id": id}).await? == 0 {
                    missing.push(id.clone());
                }
            }
        }
    }
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    items
        .insert_one(doc! {"after": "crash"})
        .await
        .context("writing after the crash")?;
    store.close().await?;
    Ok(())
}
