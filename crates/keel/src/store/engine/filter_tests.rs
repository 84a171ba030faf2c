//! Unit tests of filter parsing and matching (MongoDB's semantics, case by case).

use bson::{Bson, Document, doc};

use super::super::StoreError;
use super::{Filter, IndexScan};

fn matches(filter: Document, document: Document) -> bool {
    Filter::parse(&filter)
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
        .matches(&document)
}

fn parse_error(filter: Document) -> StoreError {
    Filter::parse(&filter).expect_err("filter should be refused")
}

#[test]
fn implicit_equality_matches_array_elements_and_whole_arrays() {
    assert!(matches(doc! {"tags": "x"}, doc! {"tags": ["y", "x"]}));
    assert!(matches(
        doc! {"tags": ["y", "x"]},
        doc! {"tags": ["y", "x"]}
    ));
    assert!(!matches(
        doc! {"tags": ["x", "y"]},
        doc! {"tags": ["y", "x"]}
    ));
    assert!(!matches(doc! {"tags": "z"}, doc! {"tags": ["y", "x"]}));
    assert!(matches(doc! {"n": 1}, doc! {"n": 1.0}));
}

#[test]
fn null_matches_missing_and_null_but_exists_tells_them_apart() {
    assert!(matches(doc! {"f": null}, doc! {}));
    assert!(matches(doc! {"f": null}, doc! {"f": null}));
    assert!(!matches(doc! {"f": null}, doc! {"f": 0}));
    assert!(matches(doc! {"f": {"$exists": true}}, doc! {"f": null}));
    assert!(!matches(doc! {"f": {"$exists": true}}, doc! {}));
    assert!(matches(doc! {"f": {"$exists": false}}, doc! {}));
    assert!(matches(doc! {"f": {"$ne": null}}, doc! {"f": 1}));
    assert!(!matches(doc! {"f": {"$ne": null}}, doc! {}));
}

#[test]
fn dotted_paths_reach_into_documents_and_arrays_of_documents() {
    let d = doc! {"a": {"b": 1}, "items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 5}]};
    assert!(matches(doc! {"a.b": 1}, d.clone()));
    assert!(matches(doc! {"items.sku": "y"}, d.clone()));
    assert!(matches(doc! {"items.qty": {"$gt": 4}}, d.clone()));
    assert!(matches(doc! {"items.1.sku": "y"}, d.clone()));
    assert!(!matches(doc! {"items.0.sku": "y"}, d.clone()));
    assert!(matches(doc! {"items.price": null}, d.clone()));
    assert!(!matches(doc! {"a.b.c": 1}, d));
}

#[test]
fn comparisons_stay_within_a_type_bracket() {
    assert!(matches(doc! {"f": {"$gt": 5}}, doc! {"f": 6}));
    assert!(!matches(doc! {"f": {"$gt": 5}}, doc! {"f": "6"}));
    assert!(!matches(doc! {"f": {"$lt": "a"}}, doc! {"f": 1}));
    assert!(matches(
        doc! {"f": {"$gte": "a", "$lt": "b"}},
        doc! {"f": "apple"}
    ));
    assert!(matches(doc! {"f": {"$lte": 5.5}}, doc! {"f": 5i64}));
    assert!(!matches(doc! {"f": {"$gt": null}}, doc! {}));
    assert!(matches(doc! {"f": {"$gte": null}}, doc! {}));
}

#[test]
fn nan_is_only_equal_to_nan() {
    assert!(!matches(doc! {"f": {"$lt": 5}}, doc! {"f": f64::NAN}));
    assert!(!matches(doc! {"f": {"$gt": f64::NAN}}, doc! {"f": 1}));
    assert!(matches(
        doc! {"f": {"$gte": f64::NAN}},
        doc! {"f": f64::NAN}
    ));
    assert!(matches(doc! {"f": f64::NAN}, doc! {"f": f64::NAN}));
}

#[test]
fn range_conditions_may_be_met_by_different_array_elements() {
    assert!(matches(
        doc! {"f": {"$gt": 5, "$lt": 10}},
        doc! {"f": [1, 20]}
    ));
    assert!(!matches(
        doc! {"f": {"$elemMatch": {"$gt": 5, "$lt": 10}}},
        doc! {"f": [1, 20]}
    ));
    assert!(matches(
        doc! {"f": {"$elemMatch": {"$gt": 5, "$lt": 10}}},
        doc! {"f": [1, 7]}
    ));
}

#[test]
fn elem_match_on_documents_needs_one_element_to_satisfy_everything() {
    let d = doc! {"items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 5}]};
    assert!(matches(
        doc! {"items": {"$elemMatch": {"sku": "y", "qty": {"$gte": 5}}}},
        d.clone()
    ));
    assert!(!matches(
        doc! {"items": {"$elemMatch": {"sku": "x", "qty": {"$gte": 5}}}},
        d.clone()
    ));
    assert!(!matches(
        doc! {"items": {"$elemMatch": {"sku": "x"}}},
        doc! {"items": "x"}
    ));
}

#[test]
fn negations_reject_any_matching_element() {
    let d = doc! {"tags": ["x", "y"]};
    assert!(!matches(doc! {"tags": {"$ne": "x"}}, d.clone()));
    assert!(matches(doc! {"tags": {"$ne": "z"}}, d.clone()));
    assert!(!matches(doc! {"tags": {"$nin": ["z", "y"]}}, d.clone()));
    assert!(matches(doc! {"tags": {"$nin": ["z"]}}, d.clone()));
    assert!(matches(doc! {"missing": {"$nin": ["z"]}}, d.clone()));
    assert!(!matches(doc! {"tags": {"$not": {"$eq": "x"}}}, d.clone()));
    assert!(matches(
        doc! {"n": {"$not": {"$gt": 5}}},
        doc! {"n": "text"}
    ));
}

#[test]
fn in_matches_values_regexes_and_null_for_missing() {
    assert!(matches(doc! {"f": {"$in": [1, 2]}}, doc! {"f": 2.0}));
    assert!(matches(doc! {"f": {"$in": [null]}}, doc! {}));
    let regex = Bson::RegularExpression(bson::Regex {
        pattern: "^ab".try_into().unwrap(),
        options: "".try_into().unwrap(),
    });
    assert!(matches(
        doc! {"f": {"$in": [regex.clone()]}},
        doc! {"f": "abc"}
    ));
    assert!(matches(doc! {"f": regex}, doc! {"f": ["zz", "abc"]}));
}

#[test]
fn regex_with_options() {
    assert!(matches(
        doc! {"name": {"$regex": "^AL", "$options": "i"}},
        doc! {"name": "alice"}
    ));
    assert!(!matches(
        doc! {"name": {"$regex": "^AL"}},
        doc! {"name": "alice"}
    ));
    assert!(!matches(doc! {"name": {"$regex": "1"}}, doc! {"name": 1}));
    assert!(matches(
        doc! {"name": {"$not": Bson::RegularExpression(bson::Regex {
            pattern: "^b".try_into().unwrap(),
            options: "".try_into().unwrap(),
        })}},
        doc! {"name": "alice"}
    ));
}

#[test]
fn logical_operators_combine() {
    let d = doc! {"a": 1, "b": 2};
    assert!(matches(doc! {"$or": [{"a": 5}, {"b": 2}]}, d.clone()));
    assert!(!matches(doc! {"$and": [{"a": 1}, {"b": 3}]}, d.clone()));
    assert!(matches(doc! {"$nor": [{"a": 5}, {"b": 3}]}, d.clone()));
    assert!(!matches(doc! {"$nor": [{"a": 1}]}, d));
}

#[test]
fn literal_documents_compare_whole() {
    assert!(matches(doc! {"a": {"b": 1}}, doc! {"a": {"b": 1}}));
    assert!(!matches(doc! {"a": {"b": 1}}, doc! {"a": {"b": 1, "c": 2}}));
}

#[test]
fn unknown_operators_are_unsupported_by_name() {
    for (filter, name) in [
        (doc! {"$where": "1"}, "$where"),
        (doc! {"$expr": {}}, "$expr"),
        (doc! {"f": {"$type": "string"}}, "$type"),
        (doc! {"f": {"$near": [0, 0]}}, "$near"),
    ] {
        match parse_error(filter) {
            StoreError::Unsupported { what } => assert_eq!(what, name),
            other => panic!("expected Unsupported for {name}, got {other:?}"),
        }
    }
}

#[test]
fn malformed_filters_are_invalid() {
    for filter in [
        doc! {"$or": []},
        doc! {"$and": {"a": 1}},
        doc! {"f": {"$in": 5}},
        doc! {"f": {"$not": 5}},
        doc! {"f": {"$gt": 1, "b": 2}},
        doc! {"a..b": 1},
        doc! {"f": {"$options": "i"}},
        doc! {"f": {"$regex": "("}},
    ] {
        assert!(
            matches!(parse_error(filter.clone()), StoreError::InvalidQuery { .. }),
            "{filter}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut filter = doc! {"a": 1};
    for _ in 0..200 {
        filter = doc! {"$and": [filter]};
    }
    assert!(matches!(
        parse_error(filter),
        StoreError::InvalidQuery { .. }
    ));
}

#[test]
fn id_equality_finds_pinned_ids() {
    let f = Filter::parse(&doc! {"_id": 7, "x": 1}).unwrap();
    assert_eq!(f.id_equality(), Some(&Bson::Int32(7)));
    let f = Filter::parse(&doc! {"$and": [{"x": 1}, {"_id": {"$eq": "k"}}]}).unwrap();
    assert_eq!(f.id_equality(), Some(&Bson::String("k".into())));
    let f = Filter::parse(&doc! {"_id": {"$gt": 7}}).unwrap();
    assert_eq!(f.id_equality(), None);
    let f = Filter::parse(&doc! {"$or": [{"_id": 1}, {"_id": 2}]}).unwrap();
    assert_eq!(f.id_equality(), None);
}

#[test]
fn upsert_seed_takes_equalities_only() {
    let f = Filter::parse(&doc! {
        "user": "u1",
        "meta.kind": {"$eq": "a"},
        "n": {"$gt": 3},
        "$and": [{"day": 5}],
        "$or": [{"x": 1}],
    })
    .unwrap();
    assert_eq!(
        f.upsert_seed(),
        doc! {"user": "u1", "meta": {"kind": "a"}, "day": 5}
    );
}

#[test]
fn index_scan_uses_equality_in_and_one_range() {
    let scan = |filter: Document, multikey: bool| {
        Filter::parse(&filter)
            .unwrap()
            .index_scan_for("f", multikey)
    };
    assert_eq!(
        scan(doc! {"f": 3, "g": 1}, true),
        Some(IndexScan::Keys(vec![Bson::Int32(3)]))
    );
    assert_eq!(
        scan(doc! {"f": {"$in": [1, 2]}}, true),
        Some(IndexScan::Keys(vec![Bson::Int32(1), Bson::Int32(2)]))
    );
    assert_eq!(
        scan(doc! {"f": {"$gte": 1, "$lt": 9}}, false),
        Some(IndexScan::Range {
            lower: Some((Bson::Int32(1), true)),
            upper: Some((Bson::Int32(9), false)),
        })
    );
    assert_eq!(
        scan(doc! {"f": {"$gte": 1, "$lt": 9}}, true),
        Some(IndexScan::Range {
            lower: Some((Bson::Int32(1), true)),
            upper: Some((Bson::Double(f64::INFINITY), true)),
        })
    );
    assert_eq!(
        scan(doc! {"$or": [{"f": 1}, {"f": {"$in": [2]}}]}, true),
        Some(IndexScan::Keys(vec![Bson::Int32(1), Bson::Int32(2)]))
    );
    for unusable in [
        doc! {"f": {"$ne": 1}},
        doc! {"f": {"$nin": [1]}},
        doc! {"f": {"$exists": false}},
        doc! {"f": {"$regex": "a"}},
        doc! {"$or": [{"f": 1}, {"g": 2}]},
        doc! {"g": 1},
    ] {
        assert_eq!(scan(unusable.clone(), true), None, "{unusable}");
    }
}

#[test]
fn exact_scans_only_for_one_field_equal_to_plain_values_or_in_one_bracket() {
    let exact = |filter: Document| {
        Filter::parse(&filter)
            .unwrap()
            .exact_scan()
            .map(|(field, scan)| (field.to_owned(), scan))
    };
    assert_eq!(
        exact(doc! {"f": 3}),
        Some(("f".into(), IndexScan::Keys(vec![Bson::Int32(3)])))
    );
    assert_eq!(
        exact(doc! {"$and": [{"f": {"$in": ["a", Bson::Null]}}]}),
        Some((
            "f".into(),
            IndexScan::Keys(vec![Bson::String("a".into()), Bson::Null])
        ))
    );
    assert_eq!(
        exact(doc! {"f": {"$gt": 3, "$lte": 9.5}}),
        Some((
            "f".into(),
            IndexScan::Range {
                lower: Some((Bson::Int32(3), false)),
                upper: Some((Bson::Double(9.5), true)),
            }
        ))
    );
    assert_eq!(
        exact(doc! {"f": {"$gte": "m"}}),
        Some((
            "f".into(),
            IndexScan::Range {
                lower: Some((Bson::String("m".into()), true)),
                upper: Some((Bson::Document(doc! {}), false)),
            }
        ))
    );
    for inexact in [
        doc! {},
        doc! {"f": 3, "g": 1},
        doc! {"f": {"$eq": 3, "$ne": 4}},
        doc! {"f": {"$gt": 3, "$ne": 4}},
        doc! {"f": {"$gt": 3, "$lt": "z"}},
        doc! {"f": {"$gt": f64::NAN}},
        doc! {"f": {"$gte": Bson::Null}},
        doc! {"f": {"$lt": [3]}},
        doc! {"f": {"$gt": {"x": 1}}},
        doc! {"f": {"$gt": 3}, "g": {"$gt": 3}},
        doc! {"f": [3]},
        doc! {"f": {"x": 1}},
        doc! {"f": f64::NAN},
        doc! {"f": {"$in": [1, [2]]}},
        doc! {"f": {"$regex": "a"}},
        doc! {"$or": [{"f": 1}, {"f": 2}]},
    ] {
        assert_eq!(exact(inexact.clone()), None, "{inexact}");
    }
}

#[test]
fn stored_bytes_are_matched_for_top_level_fields_only() {
    let stored = |document: Document| bson::RawDocumentBuf::try_from(&document).unwrap();
    let item = stored(doc! {"_id": 1, "brand": "Acme", "price": 12.5, "tags": ["a", "b"]});
    let raw = |filter: Document| Filter::parse(&filter).unwrap().matches_raw(&item);
    assert_eq!(raw(doc! {"price": {"$gte": 10, "$lte": 200}}), Some(true));
    assert_eq!(raw(doc! {"price": {"$gt": 12.5}}), Some(false));
    assert_eq!(raw(doc! {"brand": "Acme", "tags": "b"}), Some(true));
    assert_eq!(raw(doc! {"brand": "Acme", "tags": "c"}), Some(false));
    assert_eq!(raw(doc! {"processed": {"$exists": false}}), Some(true));
    assert_eq!(raw(doc! {"processed": Bson::Null}), Some(true));
    assert_eq!(raw(doc! {}), Some(true));
    assert_eq!(raw(doc! {"tags.0": "a"}), None, "a dotted path");
    assert_eq!(
        raw(doc! {"$or": [{"brand": "Acme"}]}),
        None,
        "a logical operator"
    );
    // A field stored twice (not by keel, which writes documents it encoded itself).
    let mut twice = bson::RawDocumentBuf::new();
    twice.append(bson::raw::cstr!("price"), 1);
    twice.append(bson::raw::cstr!("price"), 300);
    let filter = Filter::parse(&doc! {"price": {"$gt": 100}}).unwrap();
    assert_eq!(filter.matches_raw(&twice), None);
}
