//! Upserts, `find_one_and_update` (and its atomicity) and unordered bulk writes.

use std::collections::HashSet;

use bson::{Bson, doc};
use keel::store::{
    FindOneAndUpdateOptions, FindOptions, IndexSpec, ReturnDocument, StoreError, UpdateOptions,
    WriteOp,
};

conformance!(
    upsert_inserts_a_document_seeded_from_equality_fields,
    |store| {
        let stats = store.collection("survey_stats");
        let upsert = UpdateOptions { upsert: true };
        let result = stats
            .update_one(
                doc! {"survey": "s1", "day": {"$eq": 3}, "count": {"$gt": 10}},
                doc! {"$inc": {"count": 1}, "$setOnInsert": {"created": true}},
                upsert,
            )
            .await?;
        assert_eq!((result.matched, result.modified), (0, 0));
        let id = result
            .upserted_id
            .ok_or_else(|| anyhow::anyhow!("no upserted id"))?;
        let stored = stats
            .find_one(doc! {"_id": id.clone()}, FindOptions::default())
            .await?
            .ok_or_else(|| anyhow::anyhow!("upserted document missing"))?;
        assert_eq!(
            stored,
            doc! {"_id": id, "survey": "s1", "day": 3, "count": 1, "created": true}
        );
        let again = stats
            .update_one(
                doc! {"survey": "s1"},
                doc! {"$inc": {"count": 1}, "$setOnInsert": {"created": false}},
                upsert,
            )
            .await?;
        assert_eq!(
            (again.matched, again.modified, again.upserted_id),
            (1, 1, None)
        );
        let stored = stats
            .find_one(doc! {"survey": "s1"}, FindOptions::default())
            .await?;
        assert_eq!(
            stored.as_ref().map(|d| d.get("count")),
            Some(Some(&Bson::Int32(2)))
        );
        assert_eq!(stored.map(|d| d.get_bool("created").ok()), Some(Some(true)));
        Ok(())
    }
);

conformance!(find_one_and_update_returns_before_or_after, |store| {
    let jobs = store.collection("jobs");
    jobs.insert_one(doc! {"_id": 1, "state": "queued", "tries": 0})
        .await?;
    let before = jobs
        .find_one_and_update(
            doc! {"state": "queued"},
            doc! {"$set": {"state": "running"}, "$inc": {"tries": 1}},
            FindOneAndUpdateOptions::default(),
        )
        .await?;
    assert_eq!(before, Some(doc! {"_id": 1, "state": "queued", "tries": 0}));
    let after = jobs
        .find_one_and_update(
            doc! {"_id": 1},
            doc! {"$inc": {"tries": 1}},
            FindOneAndUpdateOptions {
                return_document: ReturnDocument::After,
                projection: Some(doc! {"tries": 1, "_id": 0}),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(after, Some(doc! {"tries": 2}));
    let nothing = jobs
        .find_one_and_update(
            doc! {"state": "queued"},
            doc! {"$set": {"state": "running"}},
            FindOneAndUpdateOptions::default(),
        )
        .await?;
    assert_eq!(nothing, None);
    Ok(())
});

conformance!(find_one_and_update_claims_in_sort_order, |store| {
    let jobs = store.collection("jobs");
    for (id, priority) in [(1, 5), (2, 1), (3, 3)] {
        jobs.insert_one(doc! {"_id": id, "priority": priority, "state": "queued"})
            .await?;
    }
    let mut claimed = Vec::new();
    for _ in 0..3 {
        let job = jobs
            .find_one_and_update(
                doc! {"state": "queued"},
                doc! {"$set": {"state": "running"}},
                FindOneAndUpdateOptions {
                    sort: Some(doc! {"priority": 1}),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("a queued job was not claimed"))?;
        claimed.push(job.get_i32("_id")?);
    }
    assert_eq!(claimed, vec![2, 3, 1]);
    Ok(())
});

conformance!(
    find_one_and_update_upserts_and_returns_the_new_document,
    |store| {
        let counters = store.collection("counters");
        let options = FindOneAndUpdateOptions {
            upsert: true,
            return_document: ReturnDocument::After,
            ..Default::default()
        };
        let created = counters
            .find_one_and_update(
                doc! {"_id": "orders"},
                doc! {"$inc": {"next": 1}},
                options.clone(),
            )
            .await?;
        assert_eq!(created, Some(doc! {"_id": "orders", "next": 1}));
        let before = counters
            .find_one_and_update(
                doc! {"_id": "invoices"},
                doc! {"$inc": {"next": 1}},
                FindOneAndUpdateOptions {
                    upsert: true,
                    ..Default::default()
                },
            )
            .await?;
        assert_eq!(before, None, "Before of an upsert is nothing");
        assert_eq!(counters.count(doc! {}).await?, 2);
        Ok(())
    }
);

conformance!(concurrent_incrementers_never_lose_an_update, |store| {
    const TASKS: i32 = 32;
    const EACH: i32 = 20;
    let counters = store.collection("counters");
    counters.insert_one(doc! {"_id": "c", "n": 0}).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let counters = counters.clone();
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..EACH {
                let after = counters
                    .find_one_and_update(
                        doc! {"_id": "c"},
                        doc! {"$inc": {"n": 1}},
                        FindOneAndUpdateOptions {
                            return_document: ReturnDocument::After,
                            ..Default::default()
                        },
                    )
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("counter vanished"))?;
                seen.push(after.get_i32("n")?);
            }
            Ok::<_, anyhow::Error>(seen)
        });
    }
    let mut all = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        for value in joined?? {
            assert!(all.insert(value), "value {value} was handed out twice");
        }
    }
    let expected: HashSet<i32> = (1..=TASKS * EACH).collect();
    assert_eq!(all, expected);
    let last = counters
        .find_one(doc! {"_id": "c"}, FindOptions::default())
        .await?;
    assert_eq!(last, Some(doc! {"_id": "c", "n": TASKS * EACH}));
    Ok(())
});

conformance!(bulk_write_reports_failures_and_applies_the_rest, |store| {
    let items = store.collection("items");
    items
        .create_index(IndexSpec::new(doc! {"sku": 1}).unique())
        .await?;
    items
        .insert_one(doc! {"_id": 1, "sku": "a", "n": 0})
        .await?;
    let result = items
        .bulk_write(vec![
            WriteOp::InsertOne {
                document: doc! {"_id": 2, "sku": "b", "n": 0},
            },
            WriteOp::InsertOne {
                document: doc! {"_id": 3, "sku": "a"},
            },
            WriteOp::UpdateOne {
                filter: doc! {"_id": 1},
                update: doc! {"$inc": {"n": 5}},
                upsert: false,
            },
            WriteOp::UpdateMany {
                filter: doc! {"sku": "zzz"},
                update: doc! {"$set": {"n": 1}},
                upsert: true,
            },
            WriteOp::DeleteOne {
                filter: doc! {"_id": 2},
            },
            WriteOp::InsertOne {
                document: doc! {"_id": 1},
            },
        ])
        .await?;
    assert_eq!(result.inserted, 1);
    assert_eq!(
        (result.matched, result.modified, result.upserted),
        (1, 1, 1)
    );
    assert_eq!(result.deleted, 1);
    let failed: Vec<usize> = result.errors.iter().map(|(at, _)| *at).collect();
    assert_eq!(failed, vec![1, 5]);
    for (_, error) in &result.errors {
        assert!(
            matches!(error, StoreError::DuplicateKey { .. }),
            "{error:?}"
        );
    }
    let one = items
        .find_one(doc! {"_id": 1}, FindOptions::default())
        .await?;
    assert_eq!(one, Some(doc! {"_id": 1, "sku": "a", "n": 5}));
    assert_eq!(items.count(doc! {}).await?, 2);
    Ok(())
});
