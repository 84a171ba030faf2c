//! Unit tests of aggregation pipelines, stage by stage.

use bson::{Bson, Document, doc};

use super::super::StoreError;
use super::Pipeline;

fn orders() -> Vec<Document> {
    vec![
        doc! {"_id": 1, "user": "a", "total": 10, "items": ["x", "y"], "status": "paid"},
        doc! {"_id": 2, "user": "b", "total": 5.5, "items": [], "status": "paid"},
        doc! {"_id": 3, "user": "a", "total": 7, "items": ["z"], "status": "open"},
        doc! {"_id": 4, "user": "c", "status": "open"},
    ]
}

fn run(stages: Vec<Document>, documents: Vec<Document>) -> Vec<Document> {
    Pipeline::parse(&stages)
        .unwrap_or_else(|e| panic!("{e}"))
        .run(documents)
        .unwrap()
}

#[test]
fn match_sort_skip_limit() {
    let out = run(
        vec![
            doc! {"$match": {"status": "paid"}},
            doc! {"$sort": {"total": -1}},
            doc! {"$skip": 1},
            doc! {"$limit": 5},
        ],
        orders(),
    );
    assert_eq!(out, vec![orders()[1].clone()]);
}

#[test]
fn leading_filter_is_the_first_match_only() {
    let p = Pipeline::parse(&[doc! {"$match": {"user": "a"}}, doc! {"$limit": 1}]).unwrap();
    assert!(
        p.leading_filter()
            .is_some_and(|f| f.matches(&doc! {"user": "a"}))
    );
    let p = Pipeline::parse(&[doc! {"$limit": 1}, doc! {"$match": {"user": "a"}}]).unwrap();
    assert!(p.leading_filter().is_none());
}

#[test]
fn group_with_every_accumulator() {
    let out = run(
        vec![
            doc! {"$group": {
                "_id": "$user",
                "sum": {"$sum": "$total"},
                "n": {"$sum": 1},
                "count": {"$count": {}},
                "avg": {"$avg": "$total"},
                "min": {"$min": "$total"},
                "max": {"$max": "$total"},
                "ids": {"$push": "$_id"},
                "statuses": {"$addToSet": "$status"},
                "first": {"$first": "$_id"},
                "last": {"$last": "$_id"},
            }},
            doc! {"$sort": {"_id": 1}},
        ],
        orders(),
    );
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0],
        doc! {
            "_id": "a", "sum": 17, "n": 2, "count": 2, "avg": 8.5, "min": 7, "max": 10,
            "ids": [1, 3], "statuses": ["paid", "open"], "first": 1, "last": 3,
        }
    );
    assert_eq!(out[1].get("sum"), Some(&Bson::Double(5.5)));
    assert_eq!(out[2].get("avg"), Some(&Bson::Null));
    assert_eq!(out[2].get("min"), Some(&Bson::Null));
}

#[test]
fn group_by_null_and_by_compound_keys() {
    let out = run(
        vec![doc! {"$group": {"_id": null, "total": {"$sum": "$total"}}}],
        orders(),
    );
    assert_eq!(out, vec![doc! {"_id": null, "total": 22.5}]);
    let out = run(
        vec![
            doc! {"$group": {"_id": {"u": "$user", "s": "$status"}, "n": {"$sum": 1}}},
            doc! {"$match": {"_id.u": "a"}},
            doc! {"$sort": {"_id.s": 1}},
        ],
        orders(),
    );
    assert_eq!(
        out,
        vec![
            doc! {"_id": {"u": "a", "s": "open"}, "n": 1},
            doc! {"_id": {"u": "a", "s": "paid"}, "n": 1},
        ]
    );
}

#[test]
fn group_keys_equal_across_number_types() {
    let out = run(
        vec![doc! {"$group": {"_id": "$k", "n": {"$sum": 1}}}],
        vec![doc! {"k": 1}, doc! {"k": 1.0}, doc! {"k": 1i64}],
    );
    assert_eq!(out, vec![doc! {"_id": 1, "n": 3}]);
}

#[test]
fn sum_widens_to_int64_on_overflow() {
    let out = run(
        vec![doc! {"$group": {"_id": null, "s": {"$sum": "$n"}}}],
        vec![doc! {"n": i32::MAX}, doc! {"n": 1}],
    );
    assert_eq!(out[0].get("s"), Some(&Bson::Int64(i64::from(i32::MAX) + 1)));
}

#[test]
fn count_stage() {
    let out = run(
        vec![doc! {"$match": {"user": "a"}}, doc! {"$count": "n"}],
        orders(),
    );
    assert_eq!(out, vec![doc! {"n": 2}]);
    let out = run(
        vec![doc! {"$match": {"user": "nobody"}}, doc! {"$count": "n"}],
        orders(),
    );
    assert!(out.is_empty());
}

#[test]
fn unwind_string_and_document_forms() {
    let out = run(
        vec![doc! {"$unwind": "$items"}, doc! {"$project": {"items": 1}}],
        orders(),
    );
    assert_eq!(
        out,
        vec![
            doc! {"_id": 1, "items": "x"},
            doc! {"_id": 1, "items": "y"},
            doc! {"_id": 3, "items": "z"},
        ]
    );
    let out = run(
        vec![
            doc! {"$unwind": {"path": "$items", "preserveNullAndEmptyArrays": true, "includeArrayIndex": "i"}},
            doc! {"$project": {"items": 1, "i": 1}},
        ],
        orders(),
    );
    assert_eq!(out.len(), 5);
    assert_eq!(out[1], doc! {"_id": 1, "items": "y", "i": 1i64});
    assert_eq!(out[2], doc! {"_id": 2, "i": null});
    assert_eq!(out[4], doc! {"_id": 4, "i": null});
}

#[test]
fn project_and_add_fields_compute_from_field_references() {
    let out = run(
        vec![
            doc! {"$match": {"_id": 1}},
            doc! {"$addFields": {"who": "$user", "meta.src": "web", "pair": ["$user", "$status"]}},
            doc! {"$project": {"_id": 0, "who": 1, "meta": 1, "pair": 1, "amount": "$total"}},
        ],
        orders(),
    );
    assert_eq!(
        out,
        vec![doc! {"who": "a", "meta": {"src": "web"}, "pair": ["a", "paid"], "amount": 10}]
    );
    let out = run(
        vec![doc! {"$unset": ["items", "status"]}, doc! {"$limit": 1}],
        orders(),
    );
    assert_eq!(out, vec![doc! {"_id": 1, "user": "a", "total": 10}]);
}

#[test]
fn unsupported_stages_and_expressions_are_named() {
    for (stages, name) in [
        (vec![doc! {"$lookup": {}}], "$lookup"),
        (vec![doc! {"$project": {"t": {"$add": ["$a", 1]}}}], "$add"),
        (
            vec![doc! {"$group": {"_id": null, "x": {"$stdDevPop": "$a"}}}],
            "$stdDevPop",
        ),
    ] {
        match Pipeline::parse(&stages) {
            Err(StoreError::Unsupported { what }) => assert_eq!(what, name),
            other => panic!("expected Unsupported {name}, got {other:?}"),
        }
    }
}

#[test]
fn malformed_stages_are_invalid() {
    for stages in [
        vec![doc! {"$limit": 0}],
        vec![doc! {"$skip": -1}],
        vec![doc! {"$match": {"a": 1}, "$limit": 1}],
        vec![doc! {"$count": "$n"}],
        vec![doc! {"$unwind": "items"}],
        vec![doc! {"$group": {"total": {"$sum": 1}}}],
        vec![doc! {"$project": {}}],
    ] {
        assert!(
            matches!(
                Pipeline::parse(&stages),
                Err(StoreError::InvalidQuery { .. })
            ),
            "{stages:?}"
        );
    }
}
