//! The one place that turns the driver's errors into `StoreError`.
//!
//! Callers above the store branch on meaning, not on MongoDB codes: a unique index said no
//! (`DuplicateKey`, whether it came from a single write, an `insert_many` or a bulk), the
//! database is out of reach for now (`Unavailable`, worth retrying), the request itself is wrong
//! (`InvalidQuery`), an operator MongoDB does not know (`Unsupported`, as the embedded backend
//! says for operators outside its subset), a watcher's resume point fell out of the oplog
//! (`ResumeTokenExpired`). Everything else is `Backend` with the operation as context.
//!
//! Messages are built from the error *kind* only: the driver's full `Display` includes the raw
//! server response, which can carry document values.

use bson::Document;
use mongodb::error::{
    Error, ErrorKind, RESUMABLE_CHANGE_STREAM_ERROR, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
    TRANSIENT_TRANSACTION_ERROR, WriteFailure,
};

use crate::store::StoreError;

/// DuplicateKey, DuplicateKeyValue (legacy) and the pre-4.x "duplicate key on update".
const DUPLICATE_KEY_CODES: [i32; 3] = [11000, 11001, 12582];
/// ChangeStreamHistoryLost (4.2+) and ChangeStreamFatalError (how 4.0 said the same).
const HISTORY_LOST_CODES: [i32; 2] = [286, 280];
/// Host unreachable/not found, network timeout, shutdown, stepdown, not primary, interrupted by
/// a replica-set state change, read concern not yet available, lock busy, write conflict.
const UNAVAILABLE_CODES: [i32; 16] = [
    6, 7, 46, 89, 91, 112, 133, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435,
];
/// BadValue, FailedToParse, TypeMismatch, IllegalOperation, InvalidBSON, PathNotViable,
/// ConflictingUpdateOperators, field-name rules (52–57), ImmutableField, CannotCreateIndex,
/// InvalidOptions, InvalidNamespace, index option/key conflicts, InvalidPipelineOperator,
/// InvalidIndexSpecificationOption, and the error an update pipeline reports for a bad stage.
const INVALID_CODES: [i32; 23] = [
    2, 9, 14, 20, 22, 28, 40, 52, 53, 54, 55, 56, 57, 66, 67, 72, 73, 85, 86, 168, 197, 40324,
    15952,
];

/// A server-side failure reduced to what the mapping needs.
struct ServerFailure<'a> {
    code: i32,
    message: &'a str,
}

/// Maps a driver error; `context` names the operation ("insert_one on users").
pub(crate) fn store_error(context: &str, error: Error) -> StoreError {
    let failure = server_failure(&error);
    if let Some(failure) = &failure
        && DUPLICATE_KEY_CODES.contains(&failure.code)
    {
        let key_value = error.server_response().and_then(|raw| {
            let response = Document::try_from(raw).ok()?;
            key_value_in(&response, None)
        });
        return duplicate_key(failure.message, key_value);
    }
    if let Some(failure) = &failure
        && HISTORY_LOST_CODES.contains(&failure.code)
    {
        return StoreError::ResumeTokenExpired;
    }
    if is_unavailable(&error, failure.as_ref()) {
        return StoreError::Unavailable {
            reason: format!("{context}: {}", error.kind),
        };
    }
    match failure {
        Some(failure) => classify(context, failure.code, failure.message, None),
        None => match error.kind.as_ref() {
            ErrorKind::InvalidArgument { message, .. } => {
                StoreError::invalid(format!("{context}: {message}"))
            }
            ErrorKind::Bson(e) => StoreError::invalid(format!("{context}: {e}")),
            kind => StoreError::Backend(format!("{context}: {kind}")),
        },
    }
}

/// Maps one write error of a batch (`index` within the batch); `response` is the server's reply,
/// which holds the offending `keyValue` of a duplicate.
pub(crate) fn batch_write_error(
    context: &str,
    code: i32,
    message: &str,
    response: Option<&Document>,
    index: usize,
) -> StoreError {
    let key_value = response.and_then(|r| key_value_in(r, Some(index)));
    classify(context, code, message, key_value)
}

/// Maps a server error by its code and message.
fn classify(context: &str, code: i32, message: &str, key_value: Option<Document>) -> StoreError {
    if DUPLICATE_KEY_CODES.contains(&code) {
        return duplicate_key(message, key_value);
    }
    if HISTORY_LOST_CODES.contains(&code) {
        return StoreError::ResumeTokenExpired;
    }
    if UNAVAILABLE_CODES.contains(&code) {
        return StoreError::Unavailable {
            reason: format!("{context}: {message} (code {code})"),
        };
    }
    if let Some(operator) = unknown_operator(message) {
        return StoreError::unsupported(operator);
    }
    if INVALID_CODES.contains(&code) {
        return StoreError::invalid(format!("{context}: {message}"));
    }
    StoreError::Backend(format!("{context}: {message} (code {code})"))
}

/// The code and message of a server-side error, wherever the driver put it.
fn server_failure(error: &Error) -> Option<ServerFailure<'_>> {
    let (code, message) = match error.kind.as_ref() {
        ErrorKind::Command(e) => (e.code, e.message.as_str()),
        ErrorKind::Write(WriteFailure::WriteError(e)) => (e.code, e.message.as_str()),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => (e.code, e.message.as_str()),
        ErrorKind::InsertMany(e) => {
            match e.write_errors.as_ref().and_then(|errors| errors.first()) {
                Some(first) => (first.code, first.message.as_str()),
                None => {
                    let concern = e.write_concern_error.as_ref()?;
                    (concern.code, concern.message.as_str())
                }
            }
        }
        ErrorKind::BulkWrite(e) => {
            let first = e.write_errors.iter().min_by_key(|(index, _)| **index)?.1;
            (first.code, first.message.as_str())
        }
        _ => return None,
    };
    Some(ServerFailure { code, message })
}

fn is_unavailable(error: &Error, failure: Option<&ServerFailure<'_>>) -> bool {
    let transport = matches!(
        error.kind.as_ref(),
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown
    );
    let labelled = [
        RETRYABLE_WRITE_ERROR,
        RETRYABLE_ERROR,
        TRANSIENT_TRANSACTION_ERROR,
        RESUMABLE_CHANGE_STREAM_ERROR,
    ]
    .iter()
    .any(|label| error.contains_label(label));
    let code = failure.is_some_and(|f| UNAVAILABLE_CODES.contains(&f.code));
    transport || labelled || code
}

/// Builds `DuplicateKey` from the server's message and, when the reply had it, the `keyValue`
/// document (exact); otherwise the key is the `dup key: {…}` part of the message.
pub(crate) fn duplicate_key(message: &str, key_value: Option<Document>) -> StoreError {
    let (index, key_in_message) = parse_duplicate_key_message(message);
    let key = match key_value {
        Some(key_value) => key_value.to_string(),
        None => key_in_message,
    };
    StoreError::DuplicateKey { index, key }
}

/// Index name and key from an E11000 message, in both the current form
/// (`… collection: db.users index: email_1 dup key: { email: "a@b.c" }`) and the pre-4.2 one
/// (`… index: db.users.$email_1 dup key: { : "a@b.c" }`).
pub(crate) fn parse_duplicate_key_message(message: &str) -> (String, String) {
    let index = message
        .split_once("index: ")
        .map(|(_, rest)| rest.split(" dup key").next().unwrap_or(rest).trim())
        .map(|name| name.rsplit_once(".$").map_or(name, |(_, legacy)| legacy))
        .filter(|name| !name.is_empty())
        .unwrap_or("unknown index");
    let key = message
        .split_once("dup key: ")
        .map_or("", |(_, key)| key.trim());
    (index.to_string(), key.to_string())
}

/// The `keyValue` of a duplicate-key reply: top level for `findAndModify`, inside
/// `writeErrors[i]` for writes (`batch_index` selects the entry; `None` takes the first).
fn key_value_in(response: &Document, batch_index: Option<usize>) -> Option<Document> {
    if let Ok(key_value) = response.get_document("keyValue") {
        return Some(key_value.clone());
    }
    let write_errors = response.get_array("writeErrors").ok()?;
    let entry =
        write_errors
            .iter()
            .filter_map(|e| e.as_document())
            .find(|e| match batch_index {
                None => true,
                Some(i) => e
                    .get("index")
                    .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
                    .is_some_and(|v| usize::try_from(v).is_ok_and(|v| v == i)),
            })?;
    entry.get_document("keyValue").ok().cloned()
}

/// The operator named by MongoDB's "I don't know this" messages, e.g.
/// `unknown operator: $foo` or `Unrecognized pipeline stage name: '$foo'`.
pub(crate) fn unknown_operator(message: &str) -> Option<String> {
    const MARKERS: [&str; 6] = [
        "unknown top level operator: ",
        "unknown operator: ",
        "Unrecognized pipeline stage name: ",
        "Unknown modifier: ",
        "Unrecognized expression ",
        "unknown group operator ",
    ];
    let rest = MARKERS
        .iter()
        .find_map(|marker| message.split_once(marker).map(|(_, rest)| rest))?;
    let operator: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '$' || *c == '_')
        .collect();
    operator.starts_with('$').then_some(operator)
}

#[cfg(test)]
#[path = "errors_tests.rs"]
mod tests;
