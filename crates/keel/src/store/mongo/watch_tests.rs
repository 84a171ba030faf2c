use bson::{Timestamp, oid::ObjectId};

use super::*;

/// The driver's token as the document the store hands to watchers.
fn from_driver_token(token: &DriverResumeToken) -> StoreResult<ResumeToken> {
    match bson::serialize_to_bson(token) {
        Ok(Bson::Document(document)) => Ok(ResumeToken(document)),
        Ok(other) => Err(StoreError::Backend(format!(
            "resume token is not a document: {other}"
        ))),
        Err(e) => Err(StoreError::Backend(format!(
            "cannot encode resume token: {e}"
        ))),
    }
}

/// A resume token as MongoDB 7 sends it (`_data` is an opaque hex KeyString).
fn token() -> Document {
    doc! { "_data": "8265F1C2D2000000012B042C0100296E5A1004A1B2C3D4E5F60718293A4B5C6D7E8F9046645F69640064" }
}

#[test]
fn no_options_means_no_stages() {
    assert!(watch_pipeline(&WatchOptions::default()).unwrap().is_empty());
    let empty_filter = WatchOptions {
        filter: Some(doc! {}),
        ..WatchOptions::default()
    };
    assert!(watch_pipeline(&empty_filter).unwrap().is_empty());
}

#[test]
fn ops_become_an_operation_type_match() {
    let options = WatchOptions {
        ops: Some(vec![ChangeOp::Insert, ChangeOp::Replace]),
        ..WatchOptions::default()
    };
    assert_eq!(
        watch_pipeline(&options).unwrap(),
        vec![doc! { "$match": { "operationType": { "$in": ["insert", "replace"] } } }]
    );
}

#[test]
fn filter_fields_move_under_full_document() {
    let options = WatchOptions {
        filter: Some(doc! { "status": "new", "total.amount": { "$gt": 10 } }),
        ops: Some(vec![ChangeOp::Update]),
        ..WatchOptions::default()
    };
    assert_eq!(
        watch_pipeline(&options).unwrap(),
        vec![
            doc! { "$match": { "operationType": { "$in": ["update"] } } },
            doc! { "$match": {
                "fullDocument": { "$type": "object" },
                "fullDocument.status": "new",
                "fullDocument.total.amount": { "$gt": 10 },
            } },
        ]
    );
}

#[test]
fn logical_operators_recurse_and_field_operators_stay_as_they_are() {
    let filter = doc! {
        "$or": [
            { "kind": "a" },
            { "$and": [{ "n": { "$gte": 1 } }, { "tags": { "$elemMatch": { "k": "x" } } }] },
        ],
        "$nor": [{ "deleted": true }],
        "$comment": "orders feed",
    };
    assert_eq!(
        scope_to_full_document(&filter).unwrap(),
        doc! {
            "$or": [
                { "fullDocument.kind": "a" },
                { "$and": [
                    { "fullDocument.n": { "$gte": 1 } },
                    { "fullDocument.tags": { "$elemMatch": { "k": "x" } } },
                ] },
            ],
            "$nor": [{ "fullDocument.deleted": true }],
            "$comment": "orders feed",
        }
    );
}

#[test]
fn expression_filters_are_unsupported_and_bad_logic_invalid() {
    let expr = doc! { "$expr": { "$gt": ["$a", "$b"] } };
    assert!(matches!(
        scope_to_full_document(&expr),
        Err(StoreError::Unsupported { .. })
    ));
    let bad = doc! { "$or": { "a": 1 } };
    assert!(matches!(
        scope_to_full_document(&bad),
        Err(StoreError::InvalidQuery { .. })
    ));
}

#[test]
fn update_event_maps_to_change_event() {
    let id = ObjectId::new();
    let raw = doc! {
        "_id": token(),
        "operationType": "update",
        "clusterTime": Timestamp { time: 1_700_000_000, increment: 3 },
        "wallTime": bson::DateTime::from_millis(1_700_000_000_123),
        "ns": { "db": "app", "coll": "orders" },
        "documentKey": { "_id": id },
        "updateDescription": { "updatedFields": { "status": "paid" }, "removedFields": [] },
        "fullDocument": { "_id": id, "status": "paid" },
    };
    let event = change_event(raw).unwrap().expect("an update is surfaced");
    assert_eq!(event.op, ChangeOp::Update);
    assert_eq!(event.id, Bson::ObjectId(id));
    assert_eq!(
        event.full_document,
        Some(doc! { "_id": id, "status": "paid" })
    );
    assert_eq!(event.resume_token, ResumeToken(token()));
    assert_eq!(
        event.cluster_time,
        Some(bson::DateTime::from_millis(1_700_000_000_000))
    );
}

#[test]
fn delete_event_has_no_document_and_update_of_a_gone_document_neither() {
    let delete = doc! {
        "_id": token(), "operationType": "delete", "documentKey": { "_id": 7 },
        "wallTime": bson::DateTime::from_millis(42),
    };
    let event = change_event(delete).unwrap().expect("a delete is surfaced");
    assert_eq!(
        (event.op, event.id.clone()),
        (ChangeOp::Delete, Bson::Int32(7))
    );
    assert_eq!(event.full_document, None);
    assert_eq!(event.cluster_time, Some(bson::DateTime::from_millis(42)));

    let gone = doc! {
        "_id": token(), "operationType": "update", "documentKey": { "_id": 7 },
        "fullDocument": Bson::Null,
    };
    assert_eq!(change_event(gone).unwrap().unwrap().full_document, None);
}

#[test]
fn ddl_events_are_skipped_and_invalidate_ends_the_feed() {
    let drop = doc! { "_id": token(), "operationType": "drop", "ns": { "db": "a", "coll": "b" } };
    assert_eq!(change_event(drop).unwrap(), None);
    let invalidate = doc! { "_id": token(), "operationType": "invalidate" };
    assert!(matches!(
        change_event(invalidate),
        Err(StoreError::Backend(_))
    ));
}

#[test]
fn events_missing_their_key_are_errors_not_panics() {
    let no_key = doc! { "_id": token(), "operationType": "insert" };
    assert!(change_event(no_key).is_err());
    let no_token = doc! { "operationType": "insert", "documentKey": { "_id": 1 } };
    assert!(change_event(no_token).is_err());
    assert!(change_event(doc! {}).is_err());
}

#[test]
fn resume_token_round_trips_through_the_driver_type() {
    let ours = ResumeToken(token());
    let driver = to_driver_token(&ours).expect("a document token converts");
    assert_eq!(from_driver_token(&driver).unwrap(), ours);
    // The driver sends it to the server as `resumeAfter`: the same bytes we stored.
    let options = mongodb::options::ChangeStreamOptions::builder()
        .resume_after(Some(driver))
        .build();
    let sent = bson::serialize_to_document(&options).unwrap();
    assert_eq!(sent.get_document("resumeAfter").unwrap(), &token());
}
