//! Locks in `__system_locks`: one atomic acquire, growing fencing tokens, renewal, takeover.

use std::time::{Duration, Instant};

use bson::doc;
use keel::lock::{LOCKS_COLLECTION, LockError, Locks, Renewal};
use keel::store::UpdateOptions;

use crate::support::eventually;
use crate::support::store::on_every_backend;

#[tokio::test]
async fn sixteen_concurrent_acquirers_have_exactly_one_holder_per_round_and_tokens_grow()
-> anyhow::Result<()> {
    on_every_backend("sixteen_concurrent_acquirers", |store| async move {
        // 17 writes a round: fewer rounds on a MongoDB server, where CI's is a slow one.
        let rounds: i64 = if store.backend_name() == "embedded" {
            100
        } else {
            20
        };
        let mut last_token = 0;
        for round in 0..rounds {
            let attempts: Vec<_> = (0..16)
                .map(|_| {
                    let locks = Locks::new(&store);
                    tokio::spawn(async move {
                        locks.acquire("contended", Duration::from_secs(30)).await
                    })
                })
                .collect();
            let mut holders = Vec::new();
            for attempt in attempts {
                if let Some(lease) = attempt.await?? {
                    holders.push(lease);
                }
            }
            anyhow::ensure!(
                holders.len() == 1,
                "round {round}: {} holders",
                holders.len()
            );
            let lease = holders.pop().expect("exactly one, checked above");
            anyhow::ensure!(
                lease.token() > last_token,
                "round {round}: token {} after {last_token}",
                lease.token()
            );
            last_token = lease.token();
            anyhow::ensure!(lease.release().await?, "the holder releases its own lock");
        }
        anyhow::ensure!(
            last_token == rounds,
            "one token per round, none skipped or reused: {last_token} after {rounds} rounds"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_holder_that_stops_renewing_is_taken_over_after_its_ttl() -> anyhow::Result<()> {
    on_every_backend(
        "a_holder_that_stops_renewing_is_taken_over_after_its_ttl",
        |store| async move {
            let (first, second) = (Locks::new(&store), Locks::new(&store));
            let ttl = Duration::from_millis(300);
            // Taken before acquiring: the lock cannot expire earlier than a ttl after this instant.
            let taken_at = Instant::now();
            let stalled = first
                .acquire_with("importer", ttl, Renewal::Manual)
                .await?
                .expect("a free lock is taken");
            let successor = eventually("the expired lock to be taken over", || async {
                Ok(second.acquire("importer", ttl).await?)
            })
            .await;
            assert!(taken_at.elapsed() >= ttl, "taken over only after the ttl");
            assert!(successor.token() > stalled.token());
            // The stalled holder finds out as soon as it tries to renew, and cannot release.
            assert!(matches!(stalled.renew().await, Err(LockError::Lost { .. })));
            assert!(stalled.is_lost());
            assert!(!stalled.release().await?);
            let holder = first
                .holder("importer")
                .await?
                .expect("the successor holds it");
            assert_eq!(holder.token, successor.token());
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_renewed_lease_is_never_taken_while_its_holder_lives() -> anyhow::Result<()> {
    on_every_backend(
        "a_renewed_lease_is_never_taken_while_its_holder_lives",
        |store| async move {
            let (first, second) = (Locks::new(&store), Locks::new(&store));
            // Renewed every third of the ttl: a renewal would have to be 600 ms late (a badly
            // overloaded machine) for the lock to lapse.
            let ttl = Duration::from_secs(1);
            let lease = first
                .acquire("busy", ttl)
                .await?
                .expect("a free lock is taken");
            // Keep trying for three ttls: the automatic renewal must keep the lock ours throughout.
            let until = Instant::now() + ttl * 3;
            while Instant::now() < until {
                assert!(
                    second.acquire("busy", ttl).await?.is_none(),
                    "taken while renewed"
                );
                tokio::task::yield_now().await;
            }
            assert!(!lease.is_lost());
            assert!(lease.release().await?);
            assert!(
                second.acquire("busy", ttl).await?.is_some(),
                "free after release"
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_holder_whose_lease_was_taken_over_is_told_to_stop() -> anyhow::Result<()> {
    on_every_backend(
        "a_holder_whose_lease_was_taken_over_is_told_to_stop",
        |store| async move {
            let (first, second) = (Locks::new(&store), Locks::new(&store));
            let ttl = Duration::from_millis(600);
            let lease = first
                .acquire("paused", ttl)
                .await?
                .expect("a free lock is taken");
            let lost = lease.lost();
            // Simulate a holder paused past its ttl (GC pause, partition): its lock expires under it.
            store
                .collection(LOCKS_COLLECTION)
                .update_one(
                    doc! { "_id": "paused" },
                    doc! { "$set": { "expiresAt": bson::DateTime::from_millis(1) } },
                    UpdateOptions::default(),
                )
                .await?;
            let successor = second
                .acquire("paused", ttl)
                .await?
                .expect("expired, so taken over");
            tokio::time::timeout(crate::support::DEADLINE, lost.cancelled()).await?;
            assert!(!lease.release().await?, "only the owner releases");
            assert!(!successor.is_lost());
            assert_eq!(
                first.holder("paused").await?.map(|h| h.token),
                Some(successor.token())
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_lease_that_cannot_renew_counts_as_lost_before_anyone_else_can_take_it()
-> anyhow::Result<()> {
    on_every_backend(
        "a_lease_that_cannot_renew_counts_as_lost_before_anyone_else_can_take_it",
        |store| async move {
            let (first, second) = (Locks::new(&store), Locks::new(&store));
            // A holder that never renews (its renewals would fail the same way): the watchdog
            // ends the lease a safety margin (400 ms) before the lock can expire.
            let ttl = Duration::from_secs(2);
            let lease = first
                .acquire_with("margin", ttl, Renewal::Manual)
                .await?
                .expect("a free lock is taken");
            tokio::time::timeout(ttl * 5, lease.lost().cancelled())
                .await
                .expect("the lease is declared lost");
            assert!(lease.is_lost());
            assert!(
                second.acquire("margin", ttl).await?.is_none(),
                "lost only while the lock was still unexpired in the store"
            );
            assert!(matches!(lease.renew().await, Err(LockError::Lost { .. })));
            Ok(())
        },
    )
    .await
}
