//! `keel::store::migrate`: declared indexes are created once, a second run changes nothing, a
//! declaration added later is the only one reported, and conflicting declarations are refused
//! before anything is touched.

use std::time::Duration;

use bson::doc;
use keel::store::migrate::{APPLIED_INDEXES_COLLECTION, AppliedIndex, IndexDecl, migrate};
use keel::store::{IndexSpec, StoreError};

fn declared() -> Vec<IndexDecl> {
    vec![
        IndexDecl::new("users", IndexSpec::new(doc! {"email": 1}).unique()),
        IndexDecl::new(
            "sessions",
            IndexSpec::new(doc! {"expires_at": 1}).ttl(Duration::from_secs(3600)),
        ),
        IndexDecl::new(
            "orders",
            IndexSpec::new(doc! {"user_id": 1, "created_at": -1}),
        ),
    ]
}

fn applied(collection: &str, index: &str) -> AppliedIndex {
    AppliedIndex {
        collection: collection.to_string(),
        index: index.to_string(),
    }
}

conformance!(migrate_creates_declared_indexes_then_is_a_no_op, |store| {
    let first = migrate(&store, &declared()).await?;
    assert_eq!(
        first.created,
        vec![
            applied("users", "email_1"),
            applied("sessions", "expires_at_1"),
            applied("orders", "user_id_1_created_at_-1"),
        ]
    );
    assert!(first.unchanged.is_empty());

    // The unique index is really there.
    let users = store.collection("users");
    users.insert_one(doc! {"email": "a@b.c"}).await?;
    match users.insert_one(doc! {"email": "a@b.c"}).await {
        Err(StoreError::DuplicateKey { index, .. }) => assert_eq!(index, "email_1"),
        other => anyhow::bail!("expected DuplicateKey, got {other:?}"),
    }

    let second = migrate(&store, &declared()).await?;
    assert!(second.is_no_op(), "{second:?}");
    assert_eq!(second.unchanged.len(), 3);
    assert_eq!(
        store
            .collection(APPLIED_INDEXES_COLLECTION)
            .count(doc! {})
            .await?,
        3
    );
    Ok(())
});

conformance!(migrate_reports_only_a_newly_declared_index, |store| {
    migrate(&store, &declared()).await?;
    let mut more = declared();
    more.push(IndexDecl::new(
        "jobs",
        IndexSpec::new(doc! {"run_at": 1}).named("due"),
    ));
    let report = migrate(&store, &more).await?;
    assert_eq!(report.created, vec![applied("jobs", "due")]);
    assert_eq!(report.unchanged.len(), 3);
    Ok(())
});

conformance!(
    migrate_refuses_conflicting_declarations_before_touching_anything,
    |store| {
        let mut conflicting = declared();
        conflicting.push(IndexDecl::new("users", IndexSpec::new(doc! {"email": 1})));
        match migrate(&store, &conflicting).await {
            Err(StoreError::InvalidQuery { reason }) => {
                assert!(reason.contains("email_1 on users"), "{reason}")
            }
            other => anyhow::bail!("expected InvalidQuery, got {other:?}"),
        }
        assert_eq!(
            store
                .collection(APPLIED_INDEXES_COLLECTION)
                .count(doc! {})
                .await?,
            0,
            "nothing recorded"
        );
        // Nothing created either: duplicates are still accepted.
        let users = store.collection("users");
        users.insert_one(doc! {"email": "a@b.c"}).await?;
        users.insert_one(doc! {"email": "a@b.c"}).await?;
        Ok(())
    }
);
