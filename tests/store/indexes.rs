//! Secondary indexes: uniqueness, idempotent creation, and that an index changes only speed,
//! never answers.

use bson::{Bson, Document, doc};
use keel::store::{Collection, FindOptions, IndexSpec, Store, StoreError, UpdateOptions};

use crate::harness::{Deviation, deviates};

conformance!(
    unique_index_rejects_a_duplicate_naming_index_and_key,
    |store| {
        let users = store.collection("users");
        let name = users
            .create_index(IndexSpec::new(doc! {"email": 1}).unique())
            .await?;
        assert_eq!(name, "email_1");
        users.insert_one(doc! {"email": "a@b.c"}).await?;
        match users.insert_one(doc! {"email": "a@b.c"}).await {
            Err(StoreError::DuplicateKey { index, key }) => {
                assert_eq!(index, "email_1");
                assert!(key.contains("a@b.c"), "{key}");
            }
            other => anyhow::bail!("expected DuplicateKey, got {other:?}"),
        }
        let other = users.insert_one(doc! {"email": "z@b.c"}).await?;
        let moved = users
            .update_one(
                doc! {"_id": other},
                doc! {"$set": {"email": "a@b.c"}},
                UpdateOptions::default(),
            )
            .await;
        assert!(
            matches!(moved, Err(StoreError::DuplicateKey { .. })),
            "{moved:?}"
        );
        assert_eq!(
            users.count(doc! {"email": "z@b.c"}).await?,
            1,
            "failed update left no trace"
        );
        Ok(())
    }
);

conformance!(creating_the_same_index_twice_is_a_no_op, |store| {
    let items = store.collection("items");
    let spec = IndexSpec::new(doc! {"sku": 1, "at": -1}).unique();
    let first = items.create_index(spec.clone()).await?;
    let second = items.create_index(spec).await?;
    assert_eq!(first, "sku_1_at_-1");
    assert_eq!(first, second);
    Ok(())
});

conformance!(unique_index_over_existing_duplicates_is_refused, |store| {
    let items = store.collection("items");
    items.insert_one(doc! {"sku": "x"}).await?;
    items.insert_one(doc! {"sku": "x"}).await?;
    let created = items
        .create_index(IndexSpec::new(doc! {"sku": 1}).unique())
        .await;
    assert!(
        matches!(created, Err(StoreError::DuplicateKey { .. })),
        "{created:?}"
    );
    items.insert_one(doc! {"sku": "x"}).await?;
    Ok(())
});

conformance!(compound_unique_index_allows_each_part_to_repeat, |store| {
    let votes = store.collection("votes");
    votes
        .create_index(IndexSpec::new(doc! {"survey": 1, "user": 1}).unique())
        .await?;
    votes.insert_one(doc! {"survey": 1, "user": "a"}).await?;
    votes.insert_one(doc! {"survey": 1, "user": "b"}).await?;
    votes.insert_one(doc! {"survey": 2, "user": "a"}).await?;
    let again = votes.insert_one(doc! {"survey": 1, "user": "a"}).await;
    assert!(
        matches!(again, Err(StoreError::DuplicateKey { .. })),
        "{again:?}"
    );
    assert_eq!(votes.count(doc! {"survey": 1}).await?, 2);
    Ok(())
});

/// Documents with every shape the planner must get right: numbers of each type, strings,
/// nulls, missing fields, arrays, nested documents.
fn awkward_documents() -> Vec<Document> {
    let values: Vec<Bson> = vec![
        Bson::Int32(1),
        Bson::Int64(2),
        Bson::Double(2.5),
        Bson::Int32(3),
        Bson::Double(-1.0),
        Bson::String("a".into()),
        Bson::String("b".into()),
        Bson::Null,
        Bson::Array(vec![Bson::Int32(1), Bson::Int32(5)]),
        Bson::Array(vec![Bson::String("b".into()), Bson::Int32(9)]),
        Bson::Array(vec![]),
        Bson::Document(doc! {"x": 1}),
        Bson::Boolean(true),
    ];
    let mut documents = Vec::new();
    for (n, value) in values.iter().enumerate() {
        documents.push(doc! {"_id": n as i32, "a": value.clone(), "b": value.clone()});
    }
    documents.push(doc! {"_id": 100});
    documents
}

async fn sorted_ids(collection: &Collection, filter: Document) -> anyhow::Result<Vec<i32>> {
    let found = collection.find(filter, FindOptions::default()).await?;
    let mut ids: Vec<i32> = found.iter().filter_map(|d| d.get_i32("_id").ok()).collect();
    ids.sort_unstable();
    Ok(ids)
}

conformance!(indexed_and_scanned_queries_give_the_same_answers, |store| {
    let items = store.collection("items");
    items.create_index(IndexSpec::new(doc! {"a": 1})).await?;
    items.insert_many(awkward_documents()).await?;
    let conditions: Vec<Bson> = vec![
        Bson::Int32(1),
        Bson::Double(2.0),
        Bson::Null,
        Bson::String("b".into()),
        Bson::Array(vec![Bson::Int32(1), Bson::Int32(5)]),
        Bson::Document(doc! {"$in": [1, "a", Bson::Null]}),
        Bson::Document(doc! {"$gt": 1}),
        Bson::Document(doc! {"$gte": 2, "$lt": 5}),
        Bson::Document(doc! {"$lte": 2.5}),
        Bson::Document(doc! {"$gt": "a"}),
        Bson::Document(doc! {"$ne": 1}),
        Bson::Document(doc! {"$exists": false}),
        Bson::Document(doc! {"$nin": [1, 3]}),
        Bson::Document(doc! {"$elemMatch": {"$gt": 4, "$lt": 6}}),
        Bson::Document(doc! {"x": 1}),
    ];
    // MongoDB's answer, with no index to get wrong: `[1, 5]` (8) matches, 5 ≥ 2 and 1 < 5 being
    // met by two different elements.
    let two_sided = Bson::Document(doc! {"$gte": 2, "$lt": 5});
    let bounds_intersected = deviates(&store, Deviation::MultikeyRangeBoundsIntersected).await?;
    for condition in conditions {
        let indexed = sorted_ids(&items, doc! {"a": condition.clone()}).await?;
        let scanned = sorted_ids(&items, doc! {"b": condition.clone()}).await?;
        if condition == two_sided {
            assert_eq!(scanned, [1, 2, 3, 8], "condition {condition}, scanned");
            if bounds_intersected {
                assert_eq!(
                    indexed,
                    [1, 2, 3],
                    "the server's known deviation changed; see docs/store.md"
                );
                continue;
            }
        }
        assert_eq!(indexed, scanned, "condition {condition}");
    }
    let and_ed = sorted_ids(&items, doc! {"a": {"$gt": 0}, "_id": {"$lt": 9}}).await?;
    let and_scanned = sorted_ids(&items, doc! {"b": {"$gt": 0}, "_id": {"$lt": 9}}).await?;
    assert_eq!(and_ed, and_scanned);
    Ok(())
});

conformance!(index_follows_updates_and_deletes, |store| {
    let items = store.collection("items");
    items
        .create_index(IndexSpec::new(doc! {"state": 1}))
        .await?;
    for n in 0..6 {
        items.insert_one(doc! {"_id": n, "state": "new"}).await?;
    }
    items
        .update_many(
            doc! {"_id": {"$lt": 3}},
            doc! {"$set": {"state": "done"}},
            UpdateOptions::default(),
        )
        .await?;
    items.delete_one(doc! {"_id": 5}).await?;
    assert_eq!(sorted_ids(&items, doc! {"state": "new"}).await?, vec![3, 4]);
    assert_eq!(
        sorted_ids(&items, doc! {"state": "done"}).await?,
        vec![0, 1, 2]
    );
    items
        .update_one(
            doc! {"_id": 0},
            doc! {"$unset": {"state": ""}},
            UpdateOptions::default(),
        )
        .await?;
    assert_eq!(
        sorted_ids(&items, doc! {"state": Bson::Null}).await?,
        vec![0]
    );
    Ok(())
});

/// A document per value: `base(n)` with `a` set to the nth value (left out for `None`).
fn with_a(values: &[Option<Bson>], base: impl Fn(i32) -> Document) -> Vec<Document> {
    (0..)
        .zip(values)
        .map(|(n, value)| {
            let mut document = base(n);
            if let Some(value) = value {
                document.insert("a", value.clone());
            }
            document
        })
        .collect()
}

/// The same documents in two collections, `indexes` created on the first only: each case
/// compares what the indexed one answers with what the plain one does.
async fn indexed_and_plain(
    store: &Store,
    name: &str,
    indexes: &[Document],
    documents: Vec<Document>,
) -> anyhow::Result<(Collection, Collection)> {
    let indexed = store.collection(&format!("{name}_indexed"));
    let plain = store.collection(&format!("{name}_plain"));
    for keys in indexes {
        indexed.create_index(IndexSpec::new(keys.clone())).await?;
    }
    indexed.insert_many(documents.clone()).await?;
    plain.insert_many(documents).await?;
    Ok((indexed, plain))
}

async fn page_ids(
    collection: &Collection,
    filter: &Document,
    sort: &Document,
    skip: u64,
    limit: i64,
) -> anyhow::Result<Vec<i32>> {
    let options = FindOptions::default()
        .sort(sort.clone())
        .skip(skip)
        .limit(limit);
    let found = collection.find(filter.clone(), options).await?;
    Ok(found.iter().filter_map(|d| d.get_i32("_id").ok()).collect())
}

// A sorted page read along an index in the sort's order (the embedded store stops at the page's
// end) is the page sorting every match gives: the same documents as a collection without the
// index, for values of every kind, equal values of different types, missing fields, both
// directions, filters the index narrows and filters it does not, an `_id` order within one key
// of another index, and after the index has become multikey.
conformance!(a_sorted_page_along_an_index_is_the_sorted_page, |store| {
    let values: Vec<Option<Bson>> = vec![
        Some(Bson::Int32(2)),
        Some(Bson::Double(2.0)),
        Some(Bson::Int64(-7)),
        Some(Bson::Double(2.5)),
        Some(Bson::String("b".into())),
        Some(Bson::String("a".into())),
        Some(Bson::String("b".into())),
        Some(Bson::Null),
        None,
        Some(Bson::Boolean(false)),
        Some(Bson::Document(doc! {"x": 1})),
        Some(Bson::DateTime(bson::DateTime::from_millis(5))),
        Some(Bson::Int32(1)),
        None,
        Some(Bson::Int32(2)),
    ];
    let documents = with_a(&values, |n| doc! {"_id": (n * 7) % 15, "c": n % 3});
    let (indexed, plain) = indexed_and_plain(
        &store,
        "ordered",
        &[doc! {"a": 1, "_id": 1}, doc! {"c": 1}],
        documents,
    )
    .await?;
    let filters = [
        doc! {},
        doc! {"a": {"$gte": 2}},
        doc! {"a": {"$gt": "a"}},
        doc! {"a": {"$in": [1, "b", Bson::Null]}},
        doc! {"a": 2},
        doc! {"c": 1},
        doc! {"c": {"$in": [0, 2]}},
        doc! {"a": {"$lt": 3}, "c": {"$ne": 0}},
    ];
    let sorts = [
        doc! {"a": 1, "_id": 1},
        doc! {"a": -1, "_id": -1},
        doc! {"_id": 1},
        doc! {"_id": -1},
    ];
    let pages = [(0, 1), (0, 5), (3, 4), (0, 100), (14, 5), (20, 5)];
    let (filters, sorts, indexed_ref, plain_ref) = (&filters, &sorts, &indexed, &plain);
    let check = |label: &'static str| async move {
        let (indexed, plain) = (indexed_ref, plain_ref);
        for filter in filters {
            for sort in sorts {
                for (skip, limit) in pages {
                    let along = page_ids(indexed, filter, sort, skip, limit).await?;
                    let sorted = page_ids(plain, filter, sort, skip, limit).await?;
                    assert_eq!(
                        along, sorted,
                        "{label}: {filter} sorted by {sort}, skip {skip} limit {limit}"
                    );
                }
            }
        }
        anyhow::Ok(())
    };
    check("scalar values").await?;
    let array = doc! {"_id": 100, "a": [3, "c"], "c": 1};
    indexed.insert_one(array.clone()).await?;
    plain.insert_one(array).await?;
    check("an array among them").await?;
    Ok(())
});

// A page sorted by `_id` under a range an index narrows (the embedded store reads the table in
// `_id` order when the matches are dense, and the index when they are sparse or not where the
// table starts) is the page without the index: matches spread evenly, gathered at the end,
// sparse, mixed with strings and missing fields, both directions, several pages.
conformance!(a_page_in_id_order_under_a_range_is_the_page, |store| {
    let values: Vec<Option<Bson>> = (0..400)
        .map(|n| match n {
            n if n < 200 && n % 17 == 0 => None,
            n if n < 200 && n % 13 == 0 => Some(Bson::String(format!("s{n}"))),
            n if n < 200 => Some(Bson::Int32(n % 10)),
            n => Some(Bson::Double(f64::from(1000 + n))),
        })
        .collect();
    let documents = with_a(&values, |n| doc! {"_id": n});
    let (indexed, plain) = indexed_and_plain(&store, "ranged", &[doc! {"a": 1}], documents).await?;
    let filters = [
        doc! {"a": {"$gte": 5}},
        doc! {"a": {"$gte": 1000}},
        doc! {"a": {"$gte": 9, "$lt": 10}},
        doc! {"a": {"$lt": 3}},
        doc! {"a": {"$gt": "s"}},
    ];
    for filter in &filters {
        for sort in [doc! {"_id": 1}, doc! {"_id": -1}] {
            for (skip, limit) in [(0, 1), (2, 5), (0, 20), (150, 30), (390, 20)] {
                let ranged = page_ids(&indexed, filter, &sort, skip, limit).await?;
                let unranged = page_ids(&plain, filter, &sort, skip, limit).await?;
                assert_eq!(
                    ranged, unranged,
                    "{filter} sorted by {sort}, skip {skip} limit {limit}"
                );
            }
        }
    }
    Ok(())
});

// A count of `{field: value}`, `{field: {$in: […]}}` or a range of one type bracket over an index
// on the field (the embedded store counts index keys, reading no document) is the count without
// the index: for equal numbers of different types, NaN, infinities, -0.0 and integers beyond
// 2^53, `null` and missing fields, strings, dates, booleans and ObjectIds, and after an array
// made the index multikey (then documents are tested again).
conformance!(a_count_over_an_index_is_the_count, |store| {
    let values: Vec<Option<Bson>> = vec![
        Some(Bson::Int32(2)),
        Some(Bson::Double(2.0)),
        Some(Bson::Int64(2)),
        Some(Bson::Double(2.5)),
        Some(Bson::String("b".into())),
        Some(Bson::String("b".into())),
        Some(Bson::String("bb".into())),
        Some(Bson::Null),
        None,
        Some(Bson::Boolean(false)),
        Some(Bson::DateTime(bson::DateTime::from_millis(5))),
        Some(Bson::Document(doc! {"b": 2})),
        Some(Bson::Double(f64::NAN)),
        Some(Bson::Double(f64::INFINITY)),
        Some(Bson::Double(f64::NEG_INFINITY)),
        Some(Bson::Double(-0.0)),
        Some(Bson::Int32(0)),
        Some(Bson::Int64(i64::MAX)),
        Some(Bson::Int64(9_007_199_254_740_993)),
        Some(Bson::String(String::new())),
        Some(Bson::DateTime(bson::DateTime::from_millis(-5))),
        Some(Bson::Boolean(true)),
        Some(Bson::ObjectId(bson::oid::ObjectId::from_bytes([7; 12]))),
    ];
    let documents = with_a(&values, |n| doc! {"_id": n});
    let (indexed, plain) =
        indexed_and_plain(&store, "counted", &[doc! {"a": 1}], documents).await?;
    let filters = [
        doc! {"a": 2},
        doc! {"a": 2.0},
        doc! {"a": {"$eq": 2.5}},
        doc! {"a": "b"},
        doc! {"a": Bson::Null},
        doc! {"a": false},
        doc! {"a": bson::DateTime::from_millis(5)},
        doc! {"a": {"$in": [2, "bb", Bson::Null]}},
        doc! {"a": {"$in": []}},
        doc! {"a": "nothing"},
        doc! {"a": {"$gt": 2}},
        doc! {"a": {"$gte": 2, "$lt": 3}},
        doc! {"a": {"$gt": 2.0, "$gte": 2}},
        doc! {"a": {"$lt": 0}},
        doc! {"a": {"$lte": 0}},
        doc! {"a": {"$gte": f64::NEG_INFINITY}},
        doc! {"a": {"$lte": f64::INFINITY, "$gt": 0}},
        doc! {"a": {"$gt": 9_007_199_254_740_992_i64}},
        doc! {"a": {"$gt": 5, "$lt": 3}},
        doc! {"a": {"$gte": ""}},
        doc! {"a": {"$lt": "bb"}},
        doc! {"a": {"$gt": "b"}},
        doc! {"a": {"$gte": bson::DateTime::from_millis(0)}},
        doc! {"a": {"$lt": true}},
        doc! {"a": {"$gte": false}},
        doc! {"a": {"$gt": bson::oid::ObjectId::from_bytes([0; 12])}},
    ];
    for label in ["scalar values", "an array among them"] {
        for filter in &filters {
            let counted = indexed.count(filter.clone()).await?;
            let tested = plain.count(filter.clone()).await?;
            assert_eq!(counted, tested, "{label}: {filter}");
        }
        if label == "scalar values" {
            let array = doc! {"_id": 100, "a": [2, "b", Bson::Null]};
            indexed.insert_one(array.clone()).await?;
            plain.insert_one(array).await?;
        }
    }
    assert_eq!(
        indexed.count(doc! {"a": 2}).await?,
        4,
        "2, 2.0, 2i64 and the array"
    );
    Ok(())
});
