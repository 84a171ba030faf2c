//! Unit tests of update parsing and application.

use bson::{Bson, Document, doc};

use super::super::StoreError;
use super::Update;

fn now() -> bson::DateTime {
    bson::DateTime::from_millis(1_700_000_000_123)
}

fn apply(update: Document, mut document: Document) -> (Document, bool) {
    let parsed = Update::parse(&update).unwrap_or_else(|e| panic!("{update}: {e}"));
    let changed = parsed
        .apply(&mut document, false, now())
        .unwrap_or_else(|e| panic!("{update}: {e}"));
    (document, changed)
}

fn apply_error(update: Document, mut document: Document) -> StoreError {
    match Update::parse(&update) {
        Err(e) => e,
        Ok(parsed) => {
            let before = document.clone();
            let error = parsed
                .apply(&mut document, false, now())
                .expect_err("update should fail");
            assert_eq!(
                document, before,
                "a failed update leaves the document as it was"
            );
            error
        }
    }
}

fn is_invalid(e: &StoreError) -> bool {
    matches!(e, StoreError::InvalidQuery { .. })
}

#[test]
fn set_creates_intermediate_documents_and_reports_changes() {
    let (d, changed) = apply(doc! {"$set": {"a.b.c": 1, "x": "y"}}, doc! {"_id": 1});
    assert_eq!(d, doc! {"_id": 1, "a": {"b": {"c": 1}}, "x": "y"});
    assert!(changed);
    let (_, changed) = apply(doc! {"$set": {"x": "y"}}, doc! {"_id": 1, "x": "y"});
    assert!(!changed, "setting the same value changes nothing");
}

#[test]
fn set_through_a_scalar_is_refused() {
    assert!(is_invalid(&apply_error(
        doc! {"$set": {"a.b": 1}},
        doc! {"a": 5}
    )));
}

#[test]
fn set_indexes_arrays_and_pads_with_null() {
    let (d, _) = apply(
        doc! {"$set": {"a.1": "z", "b.2.c": 1}},
        doc! {"a": ["x", "y"], "b": []},
    );
    assert_eq!(d, doc! {"a": ["x", "z"], "b": [null, null, {"c": 1}]});
}

#[test]
fn unset_removes_fields_and_nulls_array_elements() {
    let (d, changed) = apply(
        doc! {"$unset": {"a.b": "", "l.0": 1, "nope.x": 1}},
        doc! {"a": {"b": 1, "c": 2}, "l": [1, 2]},
    );
    assert_eq!(d, doc! {"a": {"c": 2}, "l": [null, 2]});
    assert!(changed);
}

#[test]
fn inc_sets_missing_fields_and_widens_like_mongodb() {
    let (d, _) = apply(doc! {"$inc": {"n": 2, "m.k": 1.5}}, doc! {});
    assert_eq!(d, doc! {"n": 2, "m": {"k": 1.5}});
    let (d, _) = apply(doc! {"$inc": {"n": 1}}, doc! {"n": i32::MAX});
    assert_eq!(d, doc! {"n": i64::from(i32::MAX) + 1});
    let (d, _) = apply(doc! {"$inc": {"n": 1}}, doc! {"n": 1i64});
    assert_eq!(d, doc! {"n": 2i64});
    let (d, _) = apply(doc! {"$inc": {"n": 0.5}}, doc! {"n": 1});
    assert_eq!(d, doc! {"n": 1.5});
    assert!(is_invalid(&apply_error(
        doc! {"$inc": {"n": 1i64}},
        doc! {"n": i64::MAX}
    )));
}

#[test]
fn inc_on_a_non_number_is_invalid() {
    assert!(is_invalid(&apply_error(
        doc! {"$inc": {"n": 1}},
        doc! {"n": "1"}
    )));
    assert!(is_invalid(&apply_error(
        doc! {"$inc": {"n": "1"}},
        doc! {"n": 1}
    )));
}

#[test]
fn mul_min_max() {
    let (d, _) = apply(
        doc! {"$mul": {"a": 3, "missing": 2i64}, "$min": {"lo": 1}, "$max": {"hi": 9}},
        doc! {"a": 2, "lo": 5, "hi": 10},
    );
    assert_eq!(d, doc! {"a": 6, "lo": 1, "hi": 10, "missing": 0i64});
}

#[test]
fn push_and_add_to_set_with_each() {
    let (d, _) = apply(
        doc! {"$push": {"l": {"$each": [2, 3]}, "new": "x"}, "$addToSet": {"s": {"$each": [1, 4, 4]}}},
        doc! {"l": [1], "s": [1.0, 2]},
    );
    assert_eq!(d, doc! {"l": [1, 2, 3], "s": [1.0, 2, 4], "new": ["x"]});
    let (_, changed) = apply(doc! {"$addToSet": {"s": 2}}, doc! {"s": [2]});
    assert!(!changed);
    assert!(is_invalid(&apply_error(
        doc! {"$push": {"l": 1}},
        doc! {"l": 1}
    )));
    assert!(matches!(
        Update::parse(&doc! {"$push": {"l": {"$each": [1], "$slice": 2}}}),
        Err(StoreError::Unsupported { .. })
    ));
}

#[test]
fn pull_by_value_by_condition_and_by_query() {
    let (d, _) = apply(
        doc! {"$pull": {"a": 2, "b": {"$gte": 6}, "c": {"k": "x"}}},
        doc! {"a": [1, 2, 2.0, 3], "b": [5, 6, 7], "c": [{"k": "x", "n": 1}, {"k": "y"}]},
    );
    assert_eq!(d, doc! {"a": [1, 3], "b": [5], "c": [{"k": "y"}]});
    let (_, changed) = apply(doc! {"$pull": {"a": 9}}, doc! {});
    assert!(!changed);
}

#[test]
fn set_on_insert_only_on_insert() {
    let update = Update::parse(&doc! {"$setOnInsert": {"created": 1}, "$set": {"n": 1}}).unwrap();
    let mut existing = doc! {"_id": 1};
    update.apply(&mut existing, false, now()).unwrap();
    assert_eq!(existing, doc! {"_id": 1, "n": 1});
    let mut inserted = doc! {"_id": 2};
    update.apply(&mut inserted, true, now()).unwrap();
    assert_eq!(inserted, doc! {"_id": 2, "created": 1, "n": 1});
}

#[test]
fn current_date_as_date_or_timestamp() {
    let (d, _) = apply(
        doc! {"$currentDate": {"at": true, "ts": {"$type": "timestamp"}, "d": {"$type": "date"}}},
        doc! {},
    );
    assert_eq!(d.get("at"), Some(&Bson::DateTime(now())));
    assert_eq!(d.get("d"), Some(&Bson::DateTime(now())));
    assert!(matches!(d.get("ts"), Some(Bson::Timestamp(t)) if t.time == 1_700_000_000));
}

#[test]
fn conflicting_paths_are_refused() {
    for update in [
        doc! {"$set": {"a": 1}, "$inc": {"a": 1}},
        doc! {"$set": {"a": 1, "a.b": 2}},
        doc! {"$unset": {"a.b": 1}, "$set": {"a": {}}},
    ] {
        assert!(is_invalid(&Update::parse(&update).unwrap_err()), "{update}");
    }
}

#[test]
fn id_is_immutable() {
    assert!(is_invalid(
        &Update::parse(&doc! {"$inc": {"_id": 1}}).unwrap_err()
    ));
    assert!(is_invalid(&apply_error(
        doc! {"$set": {"_id": 2}},
        doc! {"_id": 1}
    )));
    let (_, changed) = apply(doc! {"$set": {"_id": 1}}, doc! {"_id": 1});
    assert!(!changed);
}

#[test]
fn replacements_and_unknown_operators_are_refused() {
    let e = Update::parse(&doc! {"name": "x"}).unwrap_err();
    assert!(is_invalid(&e) && e.to_string().contains("replacing"));
    assert!(is_invalid(&Update::parse(&doc! {}).unwrap_err()));
    match Update::parse(&doc! {"$rename": {"a": "b"}}).unwrap_err() {
        StoreError::Unsupported { what } => assert_eq!(what, "$rename"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Update::parse(&doc! {"$set": {"a.$": 1}}),
        Err(StoreError::Unsupported { .. })
    ));
}

#[test]
fn huge_array_indexes_are_refused() {
    assert!(is_invalid(&apply_error(
        doc! {"$set": {"a.99999999": 1}},
        doc! {"a": []}
    )));
}
