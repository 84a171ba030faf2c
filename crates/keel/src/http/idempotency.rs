//! `Idempotency-Key` for creating `POST`s: a client that retries after a timeout must not create
//! the thing twice.
//!
//! The first request with a key (per user) inserts an `in_progress` record — an atomic insert
//! under the unique index `(userId, key)`, so two concurrent retries cannot both run — then
//! runs the handler and stores its status and body. Later requests with the same key and the
//! same method, path and body get that stored response replayed (`Idempotency-Replayed: true`)
//! and create nothing; the same key with a different request is 422; a retry while the first is
//! still running is 409. A 5xx (and 401/408/409/429) is not stored: the record is deleted so
//! the client may retry. Records expire after 24 h (TTL index on `createdAt`; a record past
//! that age but not yet swept is treated as absent).
//!
//! Requests without the header, or without a logged-in user (the route's auth answers 401),
//! pass through untouched.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bson::{Binary, Document, doc, spec::BinarySubtype};
use http::{HeaderValue, StatusCode, header::CONTENT_TYPE};
use sha2::{Digest, Sha256};

use super::ApiError;
use super::session::CurrentSession;
use crate::store::{Collection, FindOptions, IndexSpec, Store, StoreError, UpdateOptions};

pub const IDEMPOTENCY_KEYS: &str = "idempotency_keys";
pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_LEN: usize = 255;
/// How long a key is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The `idempotency_keys` collection.
#[derive(Clone)]
pub struct IdempotencyKeys {
    keys: Collection,
}

impl IdempotencyKeys {
    pub fn new(store: &Store) -> Self {
        Self {
            keys: store.collection(IDEMPOTENCY_KEYS),
        }
    }

    /// Unique per user; forgotten after [`RETENTION`].
    pub fn indexes() -> Vec<(&'static str, IndexSpec)> {
        vec![
            (
                IDEMPOTENCY_KEYS,
                IndexSpec::new(doc! {"userId": 1, "key": 1}).unique(),
            ),
            (
                IDEMPOTENCY_KEYS,
                IndexSpec::new(doc! {"createdAt": 1}).ttl(RETENTION),
            ),
        ]
    }

    /// Claims `key` for this request; on a clash returns the existing record.
    async fn claim(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<Document>, StoreError> {
        let record = doc! {
            "userId": user_id,
            "key": key,
            "fingerprint": fingerprint,
            "state": "in_progress",
            "createdAt": bson::DateTime::now(),
        };
        for _attempt in 0..2 {
            match self.keys.insert_one(record.clone()).await {
                Ok(_) => return Ok(None),
                Err(StoreError::DuplicateKey { .. }) => {}
                Err(e) => return Err(e),
            }
            let filter = doc! {"userId": user_id, "key": key};
            let Some(existing) = self
                .keys
                .find_one(filter.clone(), FindOptions::default())
                .await?
            else {
                continue; // deleted in between (expired or a failed first attempt): claim again
            };
            if is_expired(&existing) {
                self.keys
                    .delete_one(doc! {"_id": existing.get("_id").cloned().unwrap_or_default()})
                    .await?;
                continue;
            }
            return Ok(Some(existing));
        }
        Err(StoreError::Backend(
            "idempotency key could not be claimed".into(),
        ))
    }

    async fn complete(
        &self,
        user_id: &str,
        key: &str,
        status: StatusCode,
        body: &[u8],
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.keys
            .update_one(
                doc! {"userId": user_id, "key": key},
                doc! {"$set": {
                    "state": "done",
                    "status": i32::from(status.as_u16()),
                    "contentType": content_type,
                    "body": Binary { subtype: BinarySubtype::Generic, bytes: body.to_vec() },
                }},
                UpdateOptions::default(),
            )
            .await
            .map(|_| ())
    }

    async fn release(&self, user_id: &str, key: &str) -> Result<(), StoreError> {
        self.keys
            .delete_one(doc! {"userId": user_id, "key": key})
            .await
            .map(|_| ())
    }
}

fn is_expired(record: &Document) -> bool {
    let Ok(created) = record.get_datetime("createdAt") else {
        return true;
    };
    let age_ms = bson::DateTime::now().timestamp_millis() - created.timestamp_millis();
    age_ms >= RETENTION.as_millis() as i64
}

/// Middleware for the routes that create things.
pub async fn idempotency(
    State(keys): State<IdempotencyKeys>,
    request: Request,
    next: Next,
) -> Response {
    let Some(raw_key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    let key = match raw_key.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.to_owned()
        }
        _ => {
            return ApiError::Validation(vec![super::FieldError::new(
                "Idempotency-Key",
                format!("must be 1-{MAX_KEY_LEN} visible ASCII characters"),
            )])
            .into_response();
        }
    };
    let user_id = match request.extensions().get::<CurrentSession>() {
        Some(CurrentSession(Some(session))) => session.user_id.clone(),
        _ => return next.run(request).await,
    };
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::PayloadTooLarge.into_response(),
    };
    let fingerprint = fingerprint(parts.method.as_str(), parts.uri.path(), &bytes);
    match keys.claim(&user_id, &key, &fingerprint).await {
        Ok(None) => {}
        Ok(Some(existing)) => return answer_existing(&existing, &fingerprint),
        Err(e) => return ApiError::internal(e).into_response(),
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = keys.release(&user_id, &key).await;
            return ApiError::internal(format!("reading the response body: {e}")).into_response();
        }
    };
    let outcome = if is_replayable(parts.status) {
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        keys.complete(&user_id, &key, parts.status, &bytes, content_type)
            .await
    } else {
        keys.release(&user_id, &key).await
    };
    if let Err(e) = outcome {
        // The handler's work is done; losing the record only weakens a later retry.
        tracing::error!(error = %e, "storing the idempotency record failed");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn answer_existing(existing: &Document, fingerprint: &str) -> Response {
    if existing.get_str("fingerprint").ok() != Some(fingerprint) {
        return ApiError::Unprocessable(
            "Idempotency-Key was already used with a different request".into(),
        )
        .into_response();
    }
    if existing.get_str("state").ok() != Some("done") {
        return ApiError::Conflict(
            "a request with this Idempotency-Key is still in progress".into(),
        )
        .into_response();
    }
    let status = existing
        .get_i32("status")
        .ok()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = match existing.get("body") {
        Some(bson::Bson::Binary(b)) => b.bytes.clone(),
        _ => Vec::new(),
    };
    let content_type = existing
        .get_str("contentType")
        .unwrap_or("application/json");
    let mut response = (status, body).into_response();
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, ct);
    }
    response
        .headers_mut()
        .insert("idempotency-replayed", HeaderValue::from_static("true"));
    response
}

/// Outcomes worth replaying: the final answer to this exact request. Transient refusals are not.
fn is_replayable(status: StatusCode) -> bool {
    !(status.is_server_error()
        || matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::REQUEST_TIMEOUT
                | StatusCode::CONFLICT
                | StatusCode::TOO_MANY_REQUESTS
        ))
}

fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_cover_method_path_and_body() {
        let a = fingerprint("POST", "/api/orders", b"{}");
        assert_eq!(a, fingerprint("POST", "/api/orders", b"{}"));
        assert_ne!(a, fingerprint("POST", "/api/items", b"{}"));
        assert_ne!(a, fingerprint("POST", "/api/orders", b"{ }"));
    }

    #[test]
    fn transient_outcomes_are_not_replayed() {
        assert!(is_replayable(StatusCode::CREATED));
        assert!(is_replayable(StatusCode::UNPROCESSABLE_ENTITY));
        assert!(!is_replayable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!is_replayable(StatusCode::TOO_MANY_REQUESTS));
    }

    #[test]
    fn a_mismatched_body_is_422_and_an_unfinished_one_409() {
        let record = doc! {"fingerprint": "abc", "state": "in_progress"};
        assert_eq!(
            answer_existing(&record, "zzz").status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            answer_existing(&record, "abc").status(),
            StatusCode::CONFLICT
        );
        let done = doc! {"fingerprint": "abc", "state": "done", "status": 201, "body": Binary { subtype: BinarySubtype::Generic, bytes: b"{}".to_vec() }};
        let replay = answer_existing(&done, "abc");
        assert_eq!(replay.status(), StatusCode::CREATED);
        assert_eq!(replay.headers()["idempotency-replayed"], "true");
    }
}
