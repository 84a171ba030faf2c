//! The mapping checked on driver errors built the way the driver builds them (its error structs
//! deserialize from the server's reply) and on real MongoDB message text.

use std::sync::Arc;

use bson::doc;
use mongodb::error::{BulkWriteError, CommandError, InsertManyError, WriteError};

use super::*;

const DUP_MESSAGE: &str = "E11000 duplicate key error collection: app.users index: email_1 \
                           dup key: { email: \"a@b.c\" }";

fn command_error(code: i32, code_name: &str, message: &str) -> Error {
    let error: CommandError = bson::deserialize_from_document(
        doc! { "code": code, "codeName": code_name, "errmsg": message },
    )
    .expect("a CommandError reply shape");
    Error::from(ErrorKind::Command(error))
}

fn write_error(code: i32, message: &str) -> WriteError {
    bson::deserialize_from_document(doc! { "code": code, "errmsg": message })
        .expect("a WriteError reply shape")
}

#[test]
fn duplicate_key_message_gives_index_and_key() {
    let (index, key) = parse_duplicate_key_message(DUP_MESSAGE);
    assert_eq!(index, "email_1");
    assert_eq!(key, "{ email: \"a@b.c\" }");
}

#[test]
fn legacy_duplicate_key_message_gives_index_and_key() {
    let legacy = "E11000 duplicate key error index: app.users.$email_1 dup key: { : \"a@b.c\" }";
    let (index, key) = parse_duplicate_key_message(legacy);
    assert_eq!(index, "email_1");
    assert_eq!(key, "{ : \"a@b.c\" }");
}

#[test]
fn message_without_index_still_maps_to_duplicate_key() {
    let (index, key) = parse_duplicate_key_message("E11000 duplicate key error");
    assert_eq!(index, "unknown index");
    assert_eq!(key, "");
}

#[test]
fn duplicate_key_from_a_single_write() {
    let error = Error::from(ErrorKind::Write(WriteFailure::WriteError(write_error(
        11000,
        DUP_MESSAGE,
    ))));
    match store_error("insert_one on users", error) {
        StoreError::DuplicateKey { index, key } => {
            assert_eq!(index, "email_1");
            assert!(key.contains("a@b.c"), "{key}");
        }
        other => panic!("expected DuplicateKey, got {other:?}"),
    }
}

#[test]
fn duplicate_key_from_find_one_and_update() {
    let error = command_error(11000, "DuplicateKey", DUP_MESSAGE);
    assert!(matches!(
        store_error("find_one_and_update on users", error),
        StoreError::DuplicateKey { index, .. } if index == "email_1"
    ));
}

#[test]
fn duplicate_key_inside_insert_many_and_bulk_errors() {
    let insert_many: InsertManyError = bson::deserialize_from_document(doc! {
        "writeErrors": [{ "index": 1, "code": 11000, "errmsg": DUP_MESSAGE }],
    })
    .expect("an insert_many error reply shape");
    let error = Error::from(ErrorKind::InsertMany(insert_many));
    assert!(matches!(
        store_error("insert_many on users", error),
        StoreError::DuplicateKey { index, .. } if index == "email_1"
    ));

    let mut bulk = BulkWriteError::default();
    bulk.write_errors.insert(4, write_error(11001, DUP_MESSAGE));
    let error = Error::from(ErrorKind::BulkWrite(bulk));
    assert!(matches!(
        store_error("bulk_write on users", error),
        StoreError::DuplicateKey { index, .. } if index == "email_1"
    ));
}

#[test]
fn batch_duplicate_takes_its_key_from_the_reply() {
    let reply = doc! {
        "ok": 1, "n": 1,
        "writeErrors": [
            { "index": 0, "code": 11000, "errmsg": DUP_MESSAGE, "keyValue": { "email": "first@x" } },
            { "index": 2, "code": 11000, "errmsg": DUP_MESSAGE, "keyValue": { "email": "a@b.c" } },
        ],
    };
    let error = batch_write_error("bulk_write on users", 11000, DUP_MESSAGE, Some(&reply), 2);
    match error {
        StoreError::DuplicateKey { index, key } => {
            assert_eq!(index, "email_1");
            assert_eq!(key, doc! { "email": "a@b.c" }.to_string());
        }
        other => panic!("expected DuplicateKey, got {other:?}"),
    }
}

#[test]
fn network_and_shutdown_errors_are_unavailable() {
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let io = Error::from(ErrorKind::Io(Arc::new(refused)));
    assert!(store_error("find on users", io).is_retryable());
    let shutdown = Error::from(ErrorKind::Shutdown);
    assert!(store_error("find on users", shutdown).is_retryable());
}

#[test]
fn failover_codes_are_unavailable() {
    for (code, name) in [
        (10107, "NotWritablePrimary"),
        (189, "PrimarySteppedDown"),
        (11602, "InterruptedDueToReplStateChange"),
        (91, "ShutdownInProgress"),
    ] {
        let error = store_error(
            "update_one on jobs",
            command_error(code, name, "stepping down"),
        );
        assert!(
            error.is_retryable(),
            "{name} should be retryable: {error:?}"
        );
    }
}

#[test]
fn malformed_requests_are_invalid_queries() {
    let error = command_error(
        14,
        "TypeMismatch",
        "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'n' of \
         non-numeric type string",
    );
    match store_error("update_one on counters", error) {
        StoreError::InvalidQuery { reason } => {
            assert!(reason.starts_with("update_one on counters: Cannot apply $inc"))
        }
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
    let conflict = command_error(
        85,
        "IndexOptionsConflict",
        "An existing index has the same name",
    );
    assert!(matches!(
        store_error("create_index on users", conflict),
        StoreError::InvalidQuery { .. }
    ));
}

#[test]
fn operators_mongodb_does_not_know_are_unsupported() {
    let cases = [
        (2, "unknown operator: $fuzzy", "$fuzzy"),
        (
            2,
            "unknown top level operator: $where2. If you have a field name that starts with a \
             '$' symbol, consider using $getField or $setField.",
            "$where2",
        ),
        (
            40324,
            "Unrecognized pipeline stage name: '$frobnicate'",
            "$frobnicate",
        ),
        (
            9,
            "Unknown modifier: $bump. Expected a valid update modifier or pipeline-style update \
             specified as an array",
            "$bump",
        ),
        (
            168,
            "Invalid $project :: caused by :: Unrecognized expression '$nope'",
            "$nope",
        ),
        (15952, "unknown group operator '$median2'", "$median2"),
    ];
    for (code, message, operator) in cases {
        match store_error("find on items", command_error(code, "BadValue", message)) {
            StoreError::Unsupported { what } => assert_eq!(what, operator),
            other => panic!("{message}: expected Unsupported, got {other:?}"),
        }
    }
}

#[test]
fn lost_change_stream_history_is_resume_token_expired() {
    for code in [286, 280] {
        let error = command_error(code, "ChangeStreamHistoryLost", "resume point not in oplog");
        assert!(matches!(
            store_error("watch on orders", error),
            StoreError::ResumeTokenExpired
        ));
    }
}

#[test]
fn other_server_errors_are_backend_errors_with_context() {
    let error = command_error(
        13,
        "Unauthorized",
        "not authorized on app to execute command",
    );
    match store_error("find on users", error) {
        StoreError::Backend(message) => {
            assert!(
                message.starts_with("find on users: not authorized"),
                "{message}"
            );
            assert!(message.contains("code 13"), "{message}");
        }
        other => panic!("expected Backend, got {other:?}"),
    }
}
