//! `ApiError`: the one place where a failure becomes an HTTP status and a JSON body.
//!
//! Every error response keel sends has the same shape,
//! `{"success":false,"error":{"code","message","details"?}}`: handler errors, 404 and 405,
//! a body over the limit, a timeout, a panic. Handlers return `Result<_, ApiError>` (their own
//! error enums convert into it); the chassis's `error_envelope` layer turns the plain-text
//! errors of axum extractors and tower layers into this shape too, through `from_status`.
//! 5xx responses carry the request id and never the cause: the cause is logged instead.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::request_id;

/// One invalid input field, as listed in a 400 `validation_failed`'s `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, wrong content type, …).
    #[error("{0}")]
    BadRequest(String),
    /// 400: the request is well-formed but fields are invalid; lists every one.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("authentication required")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    /// 404 for a resource: `NotFound("item")` → "item not found".
    #[error("{0} not found")]
    NotFound(String),
    /// 404 for a path no route serves.
    #[error("no route for this path")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: understood, but refused by a business rule.
    #[error("{0}")]
    Unprocessable(String),
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    /// 503 with `Retry-After`: a bounded resource (the worker pool's queue) is full; shed load.
    #[error("server busy, retry later")]
    Busy { retry_after_secs: u64 },
    /// 503: the request ran longer than `server.request_timeout`.
    #[error("request timed out")]
    Timeout,
    /// 503: a dependency or the whole process is not able to serve (details say what).
    #[error("{message}")]
    Unavailable {
        message: String,
        details: Option<Value>,
    },
    /// 500: a bug or an unexpected failure. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Cause),
}

impl ApiError {
    /// Wraps an unexpected failure as a 500.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        ApiError::Internal(cause.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout | ApiError::Unavailable { .. } | ApiError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) | ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Timeout => "timeout",
            ApiError::Busy { .. } => "busy",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The error for a bare status produced outside keel's handlers (an axum extractor's
    /// rejection, a tower layer). `message` is the original plain-text body, kept for 4xx only.
    pub fn from_status(status: StatusCode, message: Option<String>) -> Self {
        let message = message.filter(|m| !m.trim().is_empty());
        match status {
            StatusCode::NOT_FOUND => ApiError::RouteNotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::FORBIDDEN => ApiError::Forbidden,
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests {
                retry_after_secs: 1,
            },
            StatusCode::UNPROCESSABLE_ENTITY => {
                ApiError::Unprocessable(message.unwrap_or_else(|| "unprocessable".to_owned()))
            }
            StatusCode::CONFLICT => {
                ApiError::Conflict(message.unwrap_or_else(|| "conflict".to_owned()))
            }
            s if s.is_client_error() => {
                ApiError::BadRequest(message.unwrap_or_else(|| "bad request".to_owned()))
            }
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable {
                message: "service unavailable".to_owned(),
                details: None,
            },
            _ => ApiError::internal(format!("upstream layer answered {status}")),
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::Validation(fields) => Some(json!(fields)),
            ApiError::Unavailable { details, .. } => details.clone(),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let Some(details) = self.details() {
            error["details"] = details;
        }
        if status.is_server_error() {
            let request_id = request_id::current().map(|id| id.to_string());
            if let ApiError::Internal(cause) = &self {
                tracing::error!(error = %cause, error.debug = ?cause, "internal error");
            }
            if let Some(id) = request_id {
                error["requestId"] = Value::String(id);
            }
        }
        let body = json!({ "success": false, "error": error });
        let mut response = (status, Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after_secs }
        | ApiError::Busy { retry_after_secs } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// A store failure at the HTTP boundary, the one conversion every route and layer uses: a
/// store that cannot answer now (down, failing over, shutting down) is 503 `unavailable`, for
/// the client to retry; anything else is ours (500, cause logged).
impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable { reason } => {
                tracing::warn!(reason = %reason, "store unavailable");
                ApiError::Unavailable {
                    message: "the database is unavailable, retry later".into(),
                    details: None,
                }
            }
            other => ApiError::internal(other),
        }
    }
}

/// Sessions fail as their store does; their own failures (encryption) are ours.
impl From<super::session::SessionError> for ApiError {
    fn from(error: super::session::SessionError) -> Self {
        match error {
            super::session::SessionError::Store(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

/// Worker pool outcomes as HTTP: a full queue is back-pressure (503 + `Retry-After`), a job's
/// own failure is the client's (422), anything else is ours (500, logged).
impl From<crate::workers::WorkerError> for ApiError {
    fn from(error: crate::workers::WorkerError) -> Self {
        use crate::workers::WorkerError;
        match error {
            WorkerError::Busy { .. } => ApiError::Busy {
                retry_after_secs: error.retry_after().map_or(1, |d| d.as_secs().max(1)),
            },
            WorkerError::Timeout(_) => ApiError::Timeout,
            WorkerError::ComputationFailed { message, .. } => ApiError::Unprocessable(message),
            WorkerError::MemoryLimitExceeded { .. } => ApiError::Unprocessable(error.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_store_that_cannot_answer_is_503_and_any_other_store_failure_500() {
        use crate::store::StoreError;
        let down = StoreError::Unavailable {
            reason: "no primary at db-0.internal".into(),
        };
        let (status, body) = body_of(ApiError::from(down.clone())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(
            !body.to_string().contains("db-0.internal"),
            "no host in the answer"
        );
        let session = crate::http::session::SessionError::Store(down);
        assert_eq!(
            ApiError::from(session).into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let broken = ApiError::from(StoreError::Backend("corrupt page".into()));
        assert_eq!(
            broken.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn a_full_worker_pool_is_503_with_retry_after() {
        let busy = ApiError::from(crate::workers::WorkerError::Busy { capacity: 8 });
        let response = busy.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let failed = crate::workers::WorkerError::ComputationFailed {
            kind: "k".into(),
            message: "bad batch".into(),
        };
        let (status, body) = body_of(failed.into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["message"], "bad batch");
    }

    #[tokio::test]
    async fn validation_lists_every_field() {
        let (status, body) = body_of(ApiError::Validation(vec![
            FieldError::new("email", "is not an email"),
            FieldError::new("password", "is shorter than 12 characters"),
        ]))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["details"][1]["field"], "password");
    }

    #[tokio::test]
    async fn internal_errors_never_show_their_cause() {
        let (status, body) = body_of(ApiError::internal("db password is hunter2")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn request_id_is_attached_to_server_errors_within_a_request() {
        let id = request_id::RequestId::generate();
        let (_, body) = request_id::scope(id.clone(), body_of(ApiError::Timeout)).await;
        assert_eq!(body["error"]["requestId"], id.to_string());
        assert_eq!(body["error"]["code"], "timeout");
    }

    #[test]
    fn bare_statuses_map_to_the_envelope_codes() {
        let cases = [
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            (StatusCode::REQUEST_TIMEOUT, "timeout"),
            (StatusCode::IM_A_TEAPOT, "bad_request"),
            (StatusCode::BAD_GATEWAY, "internal_error"),
        ];
        for (status, code) in cases {
            assert_eq!(ApiError::from_status(status, None).code(), code, "{status}");
        }
    }
}
