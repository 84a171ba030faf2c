//! Inserting, finding, updating and deleting documents.

use bson::{Bson, doc};
use keel::store::{FindOptions, IndexSpec, PageStamp, PageVisitor, StoreError, UpdateOptions};

conformance!(inserted_document_is_found_by_id, |store| {
    let items = store.collection("items");
    let id = items.insert_one(doc! {"name": "lamp", "price": 12}).await?;
    let found = items
        .find_one(doc! {"_id": id.clone()}, FindOptions::default())
        .await?
        .ok_or_else(|| anyhow::anyhow!("inserted document not found"))?;
    assert_eq!(found, doc! {"_id": id, "name": "lamp", "price": 12});
    Ok(())
});

conformance!(insert_generates_an_object_id_only_when_absent, |store| {
    let items = store.collection("items");
    let generated = items.insert_one(doc! {"name": "a"}).await?;
    assert!(matches!(generated, Bson::ObjectId(_)), "{generated:?}");
    let chosen = items.insert_one(doc! {"name": "b", "_id": "b-1"}).await?;
    assert_eq!(chosen, Bson::String("b-1".into()));
    let stored = items
        .find_one(doc! {"_id": "b-1"}, FindOptions::default())
        .await?;
    assert_eq!(stored, Some(doc! {"_id": "b-1", "name": "b"}));
    Ok(())
});

conformance!(duplicate_id_is_a_duplicate_key_on_the_id_index, |store| {
    let items = store.collection("items");
    items.insert_one(doc! {"_id": 7, "v": 1}).await?;
    match items.insert_one(doc! {"_id": 7, "v": 2}).await {
        Err(StoreError::DuplicateKey { index, key }) => {
            assert_eq!(index, "_id_");
            assert!(key.contains('7'), "{key}");
        }
        other => anyhow::bail!("expected DuplicateKey, got {other:?}"),
    }
    let kept = items
        .find_one(doc! {"_id": 7}, FindOptions::default())
        .await?;
    assert_eq!(kept, Some(doc! {"_id": 7, "v": 1}));
    Ok(())
});

conformance!(
    insert_many_returns_ids_in_order_and_stops_at_the_first_error,
    |store| {
        let items = store.collection("items");
        let ids = items
            .insert_many(vec![doc! {"_id": 1}, doc! {"_id": 2}, doc! {"_id": 3}])
            .await?;
        assert_eq!(ids, vec![Bson::Int32(1), Bson::Int32(2), Bson::Int32(3)]);
        let failed = items
            .insert_many(vec![doc! {"_id": 4}, doc! {"_id": 1}, doc! {"_id": 5}])
            .await;
        assert!(
            matches!(failed, Err(StoreError::DuplicateKey { .. })),
            "{failed:?}"
        );
        assert_eq!(
            items.count(doc! {"_id": 4}).await?,
            1,
            "writes before the error stay"
        );
        assert_eq!(
            items.count(doc! {"_id": 5}).await?,
            0,
            "writes after the error are not made"
        );
        Ok(())
    }
);

conformance!(find_sorts_skips_limits_and_projects, |store| {
    let items = store.collection("items");
    for n in 0..10 {
        items
            .insert_one(doc! {"_id": n, "n": n, "even": n % 2 == 0, "tag": "x"})
            .await?;
    }
    let options = FindOptions::default()
        .sort(doc! {"n": -1})
        .skip(1)
        .limit(3)
        .projection(doc! {"n": 1, "_id": 0});
    let page = items.find(doc! {"even": true}, options).await?;
    assert_eq!(page, vec![doc! {"n": 6}, doc! {"n": 4}, doc! {"n": 2}]);
    let excluded = items
        .find_one(
            doc! {"_id": 3},
            FindOptions::default().projection(doc! {"tag": 0, "even": 0}),
        )
        .await?;
    assert_eq!(excluded, Some(doc! {"_id": 3, "n": 3}));
    Ok(())
});

conformance!(
    find_each_visits_what_find_returns_and_stops_at_the_visitors_error,
    |store| {
        let items = store.collection("items");
        for n in 0..30 {
            items
                .insert_one(doc! {"_id": n, "n": n, "third": n % 3, "tag": "x"})
                .await?;
        }
        items
            .create_index(IndexSpec::new(doc! {"third": 1}))
            .await?;
        // Bounded reads the embedded store runs on the calling thread (no filter in table
        // order, a point) and reads it runs off the async workers (an `_id` range, an index's
        // keys, a filter, a sort, a projection).
        let queries = [
            (
                doc! {"_id": {"$gte": 10, "$lt": 14}},
                FindOptions::default(),
            ),
            (
                doc! {"third": {"$in": [0, 2]}, "n": {"$lt": 12}},
                FindOptions::default(),
            ),
            (doc! {"tag": "x", "n": {"$gt": 26}}, FindOptions::default()),
            (doc! {}, FindOptions::default().limit(10)),
            (doc! {}, FindOptions::default().skip(25).limit(10)),
            (doc! {"_id": 7}, FindOptions::default()),
            (doc! {"_id": 99}, FindOptions::default()),
            (doc! {"third": 1}, FindOptions::default().limit(4)),
            (
                doc! {"n": {"$gte": 5}},
                FindOptions::default().sort(doc! {"n": -1}).skip(2).limit(3),
            ),
            (
                doc! {"third": 2},
                FindOptions::default().projection(doc! {"n": 1, "_id": 0}),
            ),
        ];
        for (filter, options) in queries {
            let found = items.find(filter.clone(), options.clone()).await?;
            let mut visited = Vec::new();
            items
                .find_each(filter.clone(), options, |raw| {
                    visited.push(bson::Document::try_from(raw).map_err(|e| {
                        keel::store::StoreError::Backend(format!("undecodable: {e}"))
                    })?);
                    Ok(())
                })
                .await?;
            assert_eq!(visited, found, "find_each and find disagree on {filter}");
        }

        // On the calling thread (limit 10) and off it (no limit).
        for options in [FindOptions::default().limit(10), FindOptions::default()] {
            let mut visits = 0;
            let stopped = items
                .find_each(doc! {}, options, |_| {
                    visits += 1;
                    if visits == 3 {
                        return Err(StoreError::invalid("the visitor stops here"));
                    }
                    Ok(())
                })
                .await;
            assert!(
                matches!(&stopped, Err(StoreError::InvalidQuery { reason }) if reason == "the visitor stops here"),
                "{stopped:?}"
            );
            assert_eq!(visits, 3, "the read ends at the visitor's error");
        }
        Ok(())
    }
);

conformance!(count_counts_only_matching_documents, |store| {
    let items = store.collection("items");
    assert_eq!(
        items.count(doc! {}).await?,
        0,
        "a collection never written is empty"
    );
    for n in 0..25 {
        items.insert_one(doc! {"n": n}).await?;
    }
    assert_eq!(items.count(doc! {}).await?, 25);
    assert_eq!(items.count(doc! {"n": {"$gte": 20}}).await?, 5);
    Ok(())
});

conformance!(
    a_whole_collection_count_follows_every_kind_of_write,
    |store| {
        // The embedded store remembers a whole-collection count per read connection until the
        // data changes: each count is asked twice, so the second one is the remembered one.
        let items = store.collection("items");
        let counts = || async {
            let first = items.count(doc! {}).await?;
            let again = items.count(doc! {}).await?;
            assert_eq!(first, again, "a count changed with no write in between");
            Ok::<u64, StoreError>(first)
        };
        assert_eq!(counts().await?, 0);
        items.insert_one(doc! {"_id": 1}).await?;
        assert_eq!(counts().await?, 1);
        items
            .insert_many(vec![doc! {"_id": 2}, doc! {"_id": 3}, doc! {"_id": 4}])
            .await?;
        assert_eq!(counts().await?, 4);
        let upsert = UpdateOptions { upsert: true };
        items
            .update_one(doc! {"_id": 5}, doc! {"$set": {"n": 5}}, upsert)
            .await?;
        assert_eq!(counts().await?, 5, "after an upsert");
        items
            .update_many(doc! {}, doc! {"$set": {"seen": true}}, Default::default())
            .await?;
        assert_eq!(counts().await?, 5, "an update adds nothing");
        items.delete_one(doc! {"_id": 1}).await?;
        assert_eq!(counts().await?, 4);
        items.delete_many(doc! {"_id": {"$gte": 4}}).await?;
        assert_eq!(counts().await?, 2);
        // Many counts at once (several read connections), then a write: none is stale.
        let many = futures::future::try_join_all((0..8).map(|_| items.count(doc! {}))).await?;
        assert!(many.iter().all(|&n| n == 2), "{many:?}");
        items.insert_one(doc! {"_id": 9}).await?;
        let many = futures::future::try_join_all((0..8).map(|_| items.count(doc! {}))).await?;
        assert!(many.iter().all(|&n| n == 3), "{many:?}");
        Ok(())
    }
);

conformance!(a_page_read_again_follows_every_kind_of_write, |store| {
    // The embedded store remembers a page in table order with no filter per read connection
    // until the data changes: each page is read twice (the second one remembered, on the same
    // connection or another) and must be what `find`, which never remembers, returns. In
    // `_id` order (table order on the embedded store; the page returned) and in natural order
    // (getData's; MongoDB's is not `_id` order, so only compared with `find`).
    let items = store.collection("items");
    let page =
        |skip: u64, limit: i64| {
            let items = items.clone();
            async move {
                let natural = FindOptions::default().skip(skip).limit(limit);
                let by_id = natural.clone().sort(doc! {"_id": 1});
                let mut expected = Vec::new();
                for options in [natural, by_id] {
                    expected = items.find(doc! {}, options.clone()).await?;
                    for _ in 0..2 {
                        let mut visited = Vec::new();
                        items
                            .find_each(doc! {}, options.clone(), |raw| {
                                visited.push(bson::Document::try_from(raw).map_err(|e| {
                                    StoreError::Backend(format!("undecodable: {e}"))
                                })?);
                                Ok(())
                            })
                            .await?;
                        assert_eq!(visited, expected, "page skip {skip} limit {limit}");
                        let typed: Vec<bson::Document> =
                            items.find_as(doc! {}, options.clone()).await?;
                        assert_eq!(typed, expected, "typed page skip {skip} limit {limit}");
                    }
                }
                Ok::<Vec<bson::Document>, anyhow::Error>(expected)
            }
        };
    let ids = |page: Vec<bson::Document>| -> Vec<i32> {
        page.iter()
            .map(|d| d.get_i32("_id").unwrap_or(-1))
            .collect()
    };
    assert!(page(0, 3).await?.is_empty());
    items
        .insert_many((1..=6).map(|n| doc! {"_id": n, "v": n}).collect())
        .await?;
    assert_eq!(ids(page(0, 3).await?), [1, 2, 3]);
    assert_eq!(
        ids(page(3, 3).await?),
        [4, 5, 6],
        "another page is another key"
    );
    assert_eq!(
        ids(page(0, 2).await?),
        [1, 2],
        "another limit is another key"
    );
    items
        .update_one(
            doc! {"_id": 2},
            doc! {"$set": {"v": 20}},
            Default::default(),
        )
        .await?;
    let updated = page(0, 3).await?;
    assert_eq!(updated[1], doc! {"_id": 2, "v": 20}, "after an update");
    items.delete_one(doc! {"_id": 1}).await?;
    assert_eq!(ids(page(0, 3).await?), [2, 3, 4], "after a delete");
    items.insert_one(doc! {"_id": 0, "v": 0}).await?;
    assert_eq!(
        ids(page(0, 3).await?),
        [0, 2, 3],
        "after an insert before the page"
    );
    items
        .update_many(doc! {}, doc! {"$set": {"seen": true}}, Default::default())
        .await?;
    assert!(
        page(0, 3)
            .await?
            .iter()
            .all(|d| d.get_bool("seen").is_ok_and(|seen| seen))
    );
    // Many reads at once (several read connections), then a write: none is stale.
    let many = futures::future::try_join_all((0..8).map(|_| page(0, 3))).await?;
    assert!(many.iter().all(|p| ids(p.clone()) == [0, 2, 3]));
    items.delete_many(doc! {"_id": {"$lte": 2}}).await?;
    let many = futures::future::try_join_all((0..8).map(|_| page(0, 3))).await?;
    assert!(many.iter().all(|p| ids(p.clone()) == [3, 4, 5]), "{many:?}");
    Ok(())
});

conformance!(
    counting_a_whole_indexed_collection_counts_every_document,
    |store| {
        // The embedded store counts a whole collection from its smallest non-multikey index:
        // documents without the field, with a null or with an array must each count once.
        let items = store.collection("items");
        items
            .create_index(IndexSpec::new(doc! {"brand": 1}))
            .await?;
        items.create_index(IndexSpec::new(doc! {"tags": 1})).await?;
        items
            .insert_one(doc! {"_id": 1, "brand": "a", "tags": ["x", "y"]})
            .await?;
        items.insert_one(doc! {"_id": 2, "brand": null}).await?;
        items.insert_one(doc! {"_id": 3, "tags": []}).await?;
        items
            .insert_one(doc! {"_id": 4, "brand": "b", "tags": "z"})
            .await?;
        assert_eq!(items.count(doc! {}).await?, 4);
        items.delete_one(doc! {"_id": 2}).await?;
        assert_eq!(items.count(doc! {}).await?, 3);
        items
            .update_one(
                doc! {"_id": 3},
                doc! {"$set": {"brand": ["p", "q"]}},
                Default::default(),
            )
            .await?;
        assert_eq!(
            items.count(doc! {}).await?,
            3,
            "after brand became multikey"
        );
        Ok(())
    }
);

conformance!(update_one_changes_one_match_and_update_many_all, |store| {
    let items = store.collection("items");
    for n in 0..4 {
        items
            .insert_one(doc! {"_id": n, "group": "a", "hits": 0})
            .await?;
    }
    let one = items
        .update_one(
            doc! {"group": "a"},
            doc! {"$inc": {"hits": 1}},
            UpdateOptions::default(),
        )
        .await?;
    assert_eq!((one.matched, one.modified, one.upserted_id), (1, 1, None));
    let many = items
        .update_many(
            doc! {"group": "a"},
            doc! {"$inc": {"hits": 1}},
            UpdateOptions::default(),
        )
        .await?;
    assert_eq!((many.matched, many.modified), (4, 4));
    let hits: i64 = items
        .aggregate(vec![
            doc! {"$group": {"_id": Bson::Null, "total": {"$sum": "$hits"}}},
        ])
        .await?
        .first()
        .and_then(|d| d.get("total").cloned())
        .and_then(|total| match total {
            Bson::Int32(n) => Some(i64::from(n)),
            Bson::Int64(n) => Some(n),
            _ => None,
        })
        .unwrap_or(-1);
    assert_eq!(hits, 5);
    Ok(())
});

conformance!(
    update_that_changes_nothing_is_matched_but_not_modified,
    |store| {
        let items = store.collection("items");
        items.insert_one(doc! {"_id": 1, "state": "done"}).await?;
        let result = items
            .update_one(
                doc! {"_id": 1},
                doc! {"$set": {"state": "done"}},
                UpdateOptions::default(),
            )
            .await?;
        assert_eq!((result.matched, result.modified), (1, 0));
        let none = items
            .update_one(
                doc! {"_id": 2},
                doc! {"$set": {"state": "x"}},
                UpdateOptions::default(),
            )
            .await?;
        assert_eq!(
            (none.matched, none.modified, none.upserted_id),
            (0, 0, None)
        );
        Ok(())
    }
);

conformance!(delete_one_deletes_one_and_delete_many_the_rest, |store| {
    let items = store.collection("items");
    for n in 0..5 {
        items.insert_one(doc! {"n": n, "kind": "old"}).await?;
    }
    items.insert_one(doc! {"n": 99, "kind": "new"}).await?;
    assert_eq!(items.delete_one(doc! {"kind": "old"}).await?, 1);
    assert_eq!(items.delete_many(doc! {"kind": "old"}).await?, 4);
    assert_eq!(items.delete_many(doc! {"kind": "old"}).await?, 0);
    let left = items.find(doc! {}, FindOptions::default()).await?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].get_i32("n")?, 99);
    Ok(())
});

conformance!(update_that_would_change_id_is_refused, |store| {
    let items = store.collection("items");
    items.insert_one(doc! {"_id": 1}).await?;
    let changed = items
        .update_one(
            doc! {"_id": 1},
            doc! {"$set": {"_id": 2}},
            UpdateOptions::default(),
        )
        .await;
    assert!(changed.is_err(), "{changed:?}");
    assert_eq!(items.count(doc! {"_id": 1}).await?, 1);
    Ok(())
});

/// Records what a `find_page` read hands over: its stamp, its documents, and answers `stamped`
/// with true for the stamps in `known`.
#[derive(Default)]
struct Recorder {
    known: Vec<PageStamp>,
    stamps: Vec<PageStamp>,
    documents: Vec<bson::Document>,
}

impl PageVisitor for Recorder {
    fn stamped(&mut self, stamp: PageStamp) -> bool {
        self.stamps.push(stamp);
        self.known.contains(&stamp)
    }

    fn document(&mut self, document: &bson::RawDocument) -> keel::store::StoreResult<()> {
        let document = bson::Document::try_from(document)
            .map_err(|e| StoreError::Backend(format!("undecodable: {e}")))?;
        self.documents.push(document);
        Ok(())
    }
}

/// A page of three in table order read with `find_page` and checked: its documents are
/// `find`'s, and those of every earlier read in `seen` with its stamp (then it joins them).
async fn read_stamped(
    items: &keel::store::Collection,
    known: Vec<PageStamp>,
    seen: &mut Vec<(PageStamp, Vec<bson::Document>)>,
) -> anyhow::Result<Recorder> {
    let page = FindOptions::default().limit(3);
    let mut recorder = Recorder {
        known,
        ..Recorder::default()
    };
    items
        .find_page(doc! {}, page.clone(), &mut recorder)
        .await?;
    assert!(recorder.stamps.len() <= 1, "one stamp per read");
    if let Some(&stamp) = recorder.stamps.first()
        && !recorder.known.contains(&stamp)
    {
        let expected = items.find(doc! {}, page).await?;
        assert_eq!(recorder.documents, expected);
        for (earlier, documents) in seen.iter() {
            if *earlier == stamp {
                assert_eq!(documents, &recorder.documents, "one stamp, other documents");
            }
        }
        seen.push((stamp, recorder.documents.clone()));
    }
    Ok(recorder)
}

conformance!(
    a_stamped_page_is_the_same_documents_until_the_data_changes,
    |store| {
        // Every read with a stamp hands over the documents of every other read with that stamp
        // (what a caller keeps for a stamp, its rendering, stays right); a write changes the page,
        // and its stamp; a visitor that knows the stamp ends the read there. The embedded store
        // stamps the pages it remembers (in table order, no filter); MongoDB stamps none.
        let items = store.collection("items");
        items
            .insert_many((1..=6).map(|n| doc! {"_id": n, "v": n}).collect())
            .await?;
        let seen = &mut Vec::new();
        // More reads than the pool has connections: some connection answers from its page.
        for _ in 0..12 {
            read_stamped(&items, Vec::new(), seen).await?;
        }
        items
            .update_one(
                doc! {"_id": 2},
                doc! {"$set": {"v": 20}},
                Default::default(),
            )
            .await?;
        let after = read_stamped(&items, Vec::new(), seen).await?;
        assert_eq!(after.documents[1], doc! {"_id": 2, "v": 20});
        for _ in 0..12 {
            read_stamped(&items, Vec::new(), seen).await?;
        }
        let stamps: Vec<PageStamp> = seen.iter().map(|(stamp, _)| *stamp).collect();
        if store.backend_name() == "embedded" {
            let repeated = stamps
                .iter()
                .filter(|s| stamps.iter().filter(|t| t == s).count() > 1);
            assert!(
                repeated.count() > 0,
                "a remembered page keeps its stamp: {stamps:?}"
            );
            let before: Vec<_> = stamps[..12].to_vec();
            assert!(
                stamps[12..].iter().all(|s| !before.contains(s)),
                "a write changes the page's stamp"
            );
            // A visitor that knows the stamp gets no document.
            let known = read_stamped(&items, stamps.clone(), seen).await?;
            assert!(known.documents.is_empty() && known.stamps.len() == 1);
        } else {
            assert!(stamps.is_empty(), "MongoDB's reads carry no stamp");
        }
        Ok(())
    }
);
