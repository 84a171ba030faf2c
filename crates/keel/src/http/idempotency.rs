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
//! The handler and the recording of its outcome run in a task of their own: a request that is
//! cancelled after claiming its key (the client went away, the request timeout answered 503)
//! still finishes and stores its response, so the client's retry gets it replayed — never a
//! key stuck `in_progress` that answers 409 for 24 h, nor a duplicate under a new key. A claim
//! still `in_progress` after [`ABANDONED_AFTER`] (its process died mid-request) is taken over.
//!
//! Requests without the header, or without a logged-in user (the route's auth answers 401),
//! pass through untouched.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bson::{Binary, Document, doc, spec::BinarySubtype};
use futures::FutureExt;
use http::{HeaderValue, StatusCode, header::CONTENT_TYPE};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::ApiError;
use super::session::CurrentSession;
use crate::store::{Collection, FindOptions, IndexSpec, Store, StoreError, UpdateOptions};

pub const IDEMPOTENCY_KEYS: &str = "idempotency_keys";
pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_LEN: usize = 255;
/// How long a key is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// An `in_progress` claim this old belongs to a request whose process died: taken over. Far
/// above any creating request's run time (they are bounded by `server.request_timeout`'s
/// order of magnitude; the handler itself is not cut off, see above).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(5 * 60);

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
            if is_expired(&existing) || is_abandoned(&existing) {
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

fn is_abandoned(record: &Document) -> bool {
    record.get_str("state").ok() == Some("in_progress")
        && age_ms(record) >= ABANDONED_AFTER.as_millis() as i64
}

fn age_ms(record: &Document) -> i64 {
    match record.get_datetime("createdAt") {
        Ok(created) => bson::DateTime::now().timestamp_millis() - created.timestamp_millis(),
        Err(_) => i64::MAX,
    }
}

fn is_expired(record: &Document) -> bool {
    age_ms(record) >= RETENTION.as_millis() as i64
}

/// The key of an `Idempotency-Key` header: 1 to `MAX_KEY_LEN` visible ASCII characters.
pub(crate) fn parse_key(raw: &HeaderValue) -> Option<String> {
    let key = raw.to_str().ok()?;
    (!key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| key.to_owned())
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
    let Some(key) = parse_key(raw_key) else {
        return ApiError::Validation(vec![super::FieldError::new(
            "Idempotency-Key",
            format!("must be 1-{MAX_KEY_LEN} visible ASCII characters"),
        )])
        .into_response();
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
        Err(e) => return ApiError::from(e).into_response(),
    }
    // Detached from this future: if the request is cancelled from here on, the work still
    // completes and its outcome is recorded (see the module comment).
    let request = Request::from_parts(parts, Body::from(bytes));
    let work = async move {
        match AssertUnwindSafe(next.run(request)).catch_unwind().await {
            Ok(response) => Ok(record_outcome(&keys, &user_id, &key, response).await),
            Err(panic) => {
                if let Err(e) = keys.release(&user_id, &key).await {
                    tracing::error!(error = %e, "releasing the idempotency key after a panic failed");
                }
                Err(panic)
            }
        }
    };
    match tokio::spawn(work.instrument(tracing::Span::current())).await {
        Ok(Ok(response)) => response,
        // The chassis's catch-panic layer answers it, as for any handler.
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => ApiError::internal(format!("the request's task failed: {e}")).into_response(),
    }
}

/// Stores a replayable response under the key, or releases the key for a retry.
async fn record_outcome(
    keys: &IdempotencyKeys,
    user_id: &str,
    key: &str,
    response: Response,
) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = keys.release(user_id, key).await;
            return ApiError::internal(format!("reading the response body: {e}")).into_response();
        }
    };
    let outcome = if is_replayable(parts.status) {
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        keys.complete(user_id, key, parts.status, &bytes, content_type)
            .await
    } else {
        keys.release(user_id, key).await
    };
    if let Err(e) = outcome {
        // The handler's work is done; losing the record only weakens a later retry.
        tracing::error!(error = %e, "storing the idempotency record failed");
    }
    Response::from_parts(parts, Body::from(bytes))
}

pub(crate) fn answer_existing(existing: &Document, fingerprint: &str) -> Response {
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

pub(crate) fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    crate::store::lower_hex(&hasher.finalize())
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

    /// A creating route that takes `WORK` and counts what it created, behind the middleware
    /// and a stand-in for the session layer; on a fresh embedded store.
    mod end_to_end {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use axum::Router;
        use axum::middleware::{from_fn, from_fn_with_state};
        use axum::routing::post;
        use tower::ServiceExt;

        use super::super::*;
        use crate::http::session::ActiveSession;
        use crate::secrets::Secret;

        const WORK: Duration = Duration::from_millis(300);

        async fn app() -> (tempfile::TempDir, Router, Arc<AtomicUsize>, Collection) {
            let dir = tempfile::tempdir().unwrap();
            let config = crate::store::DatabaseConfig {
                url: Secret::new(format!("embedded://{}", dir.path().display())),
                ..Default::default()
            };
            let store = Store::connect(&config).await.unwrap();
            for (collection, spec) in IdempotencyKeys::indexes() {
                store
                    .collection(collection)
                    .create_index(spec)
                    .await
                    .unwrap();
            }
            let created = Arc::new(AtomicUsize::new(0));
            let counter = created.clone();
            let router = Router::new()
                .route(
                    "/things",
                    post(move || {
                        let counter = counter.clone();
                        async move {
                            tokio::time::sleep(WORK).await;
                            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                            (StatusCode::CREATED, format!("{{\"thing\":{n}}}"))
                        }
                    }),
                )
                .layer(from_fn_with_state(
                    IdempotencyKeys::new(&store),
                    idempotency,
                ))
                .layer(from_fn(|mut request: Request, next: Next| async move {
                    request
                        .extensions_mut()
                        .insert(CurrentSession(Some(ActiveSession::for_tests("user-1"))));
                    next.run(request).await
                }));
            (dir, router, created, store.collection(IDEMPOTENCY_KEYS))
        }

        fn create(key: &str) -> Request {
            Request::post("/things")
                .header(HEADER, key)
                .body(Body::from("{}"))
                .unwrap()
        }

        async fn body_text(response: Response) -> String {
            String::from_utf8(
                to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap()
                    .to_vec(),
            )
            .unwrap()
        }

        #[tokio::test]
        async fn a_cancelled_request_still_completes_and_its_retry_is_replayed() {
            let (_dir, app, created, keys) = app().await;
            // The client gives up (or the request timeout fires) while the handler runs.
            let cancelled =
                tokio::time::timeout(WORK / 3, app.clone().oneshot(create("k-1"))).await;
            assert!(cancelled.is_err(), "the request was cancelled mid-way");

            // Retries: 409 while the first is still running, then its response, replayed.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let replay = loop {
                let response = app.clone().oneshot(create("k-1")).await.unwrap();
                if response.status() != StatusCode::CONFLICT {
                    break response;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the key stayed in progress"
                );
                tokio::time::sleep(WORK / 10).await;
            };
            assert_eq!(replay.status(), StatusCode::CREATED);
            assert_eq!(replay.headers()["idempotency-replayed"], "true");
            assert_eq!(body_text(replay).await, "{\"thing\":1}");
            assert_eq!(created.load(Ordering::SeqCst), 1, "created exactly once");
            let record = keys
                .find_one(doc! {"key": "k-1"}, FindOptions::default())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(record.get_str("state").unwrap(), "done");
        }

        #[tokio::test]
        async fn two_concurrent_identical_requests_create_one_thing() {
            let (_dir, app, created, _keys) = app().await;
            let (a, b) = tokio::join!(
                app.clone().oneshot(create("k-2")),
                app.clone().oneshot(create("k-2"))
            );
            let mut statuses = [a.unwrap().status(), b.unwrap().status()];
            statuses.sort();
            assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
            let again = app.clone().oneshot(create("k-2")).await.unwrap();
            assert_eq!(again.status(), StatusCode::CREATED);
            assert_eq!(again.headers()["idempotency-replayed"], "true");
            assert_eq!(created.load(Ordering::SeqCst), 1);
        }

        #[tokio::test]
        async fn a_claim_left_in_progress_by_a_dead_process_is_taken_over() {
            let (_dir, app, created, keys) = app().await;
            let long_ago = bson::DateTime::from_millis(
                bson::DateTime::now().timestamp_millis()
                    - ABANDONED_AFTER.as_millis() as i64
                    - 1000,
            );
            keys.insert_one(doc! {
                "userId": "user-1",
                "key": "k-3",
                "fingerprint": fingerprint("POST", "/things", b"{}"),
                "state": "in_progress",
                "createdAt": long_ago,
            })
            .await
            .unwrap();
            let response = app.clone().oneshot(create("k-3")).await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            assert!(response.headers().get("idempotency-replayed").is_none());
            assert_eq!(created.load(Ordering::SeqCst), 1);
        }
    }
}
