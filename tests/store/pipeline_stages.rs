//! Sort, projection and aggregation stages, backend-agnostic, with MongoDB's answers.

use bson::{Document, doc};
use keel::store::FindOptions;

use crate::operators::fixture;

conformance!(
    sort_orders_by_type_then_value_with_arrays_by_min_or_max,
    |store| {
        let things = fixture(&store).await?;
        let order = |docs: Vec<Document>| -> anyhow::Result<Vec<i32>> {
            docs.iter().map(|d| Ok(d.get_i32("_id")?)).collect()
        };
        let asc = things
            .find(
                doc! {},
                FindOptions::default().sort(doc! {"n": 1, "_id": 1}),
            )
            .await?;
        assert_eq!(order(asc)?, vec![5, 1, 4, 2, 3]);
        let desc = things
            .find(
                doc! {},
                FindOptions::default().sort(doc! {"n": -1, "_id": 1}),
            )
            .await?;
        assert_eq!(order(desc)?, vec![3, 5, 2, 4, 1]);
        let by_s = things
            .find(
                doc! {},
                FindOptions::default()
                    .sort(doc! {"s": 1, "_id": -1})
                    .skip(1)
                    .limit(3),
            )
            .await?;
        assert_eq!(order(by_s)?, vec![3, 2, 1]);
        Ok(())
    }
);

conformance!(projection_includes_or_excludes_dotted_paths, |store| {
    let things = fixture(&store).await?;
    let find = |projection: Document| {
        let things = things.clone();
        async move {
            things
                .find_one(
                    doc! {"_id": 3},
                    FindOptions::default().projection(projection),
                )
                .await
        }
    };
    assert_eq!(
        find(doc! {"s": 1, "items.sku": 1}).await?,
        Some(doc! {"_id": 3, "s": null, "items": [{"sku": "a"}, {"sku": "b"}]})
    );
    assert_eq!(
        find(doc! {"tags": 1, "_id": 0}).await?,
        Some(doc! {"tags": "x"})
    );
    assert_eq!(
        find(doc! {"items": 0, "n": 0, "s": 0}).await?,
        Some(doc! {"_id": 3, "tags": "x"})
    );
    assert!(
        find(doc! {"s": 1, "n": 0}).await.is_err(),
        "mixing inclusion and exclusion"
    );
    Ok(())
});

conformance!(pipeline_match_group_sort_project, |store| {
    let things = fixture(&store).await?;
    let out = things.aggregate(vec![
        doc! {"$unwind": "$items"},
        doc! {"$group": {"_id": "$items.sku", "qty": {"$sum": "$items.q"}, "docs": {"$push": "$_id"},
                         "n": {"$count": {}}, "avg": {"$avg": "$items.q"}, "lo": {"$min": "$items.q"}, "hi": {"$max": "$items.q"}}},
        doc! {"$sort": {"_id": 1}},
        doc! {"$project": {"_id": 0, "sku": "$_id", "qty": 1, "docs": 1, "n": 1, "avg": 1, "lo": 1, "hi": 1}},
    ]).await?;
    let expect = vec![
        doc! {"qty": 1, "docs": [3], "n": 1, "avg": 1.0, "lo": 1, "hi": 1, "sku": "a"},
        doc! {"qty": 11, "docs": [3, 4], "n": 2, "avg": 5.5, "lo": 2, "hi": 9, "sku": "b"},
    ];
    for (got, want) in out.iter().zip(&expect) {
        for (key, value) in want {
            anyhow::ensure!(got.get(key) == Some(value), "{key}: {got} vs {want}");
        }
    }
    anyhow::ensure!(out.len() == 2, "{out:?}");
    Ok(())
});

conformance!(
    pipeline_count_skip_limit_add_fields_and_unwind_options,
    |store| {
        let things = fixture(&store).await?;
        let out = things
            .aggregate(vec![
                doc! {"$match": {"tags": "x"}},
                doc! {"$count": "total"},
            ])
            .await?;
        assert_eq!(out, vec![doc! {"total": 2}]);
        let out = things
            .aggregate(vec![
                doc! {"$sort": {"_id": 1}},
                doc! {"$skip": 1},
                doc! {"$limit": 2},
                doc! {"$addFields": {"label": "$s", "meta.src": "fixture"}},
                doc! {"$project": {"label": 1, "meta": 1}},
            ])
            .await?;
        assert_eq!(
            out,
            vec![
                doc! {"_id": 2, "meta": {"k": 2, "src": "fixture"}, "label": "Banana"},
                doc! {"_id": 3, "meta": {"src": "fixture"}, "label": null},
            ]
        );
        let out = things
            .aggregate(vec![
                doc! {"$match": {"_id": {"$in": [1, 2, 4]}}},
                doc! {"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": true}},
                doc! {"$sort": {"_id": 1, "tags": 1}},
                doc! {"$project": {"tags": 1}},
            ])
            .await?;
        assert_eq!(
            out,
            vec![
                doc! {"_id": 1, "tags": "x"},
                doc! {"_id": 1, "tags": "y"},
                doc! {"_id": 2},
                doc! {"_id": 4},
            ]
        );
        Ok(())
    }
);
