//! `ApiJson<T>`: the JSON body extractor every keel route uses instead of `axum::Json`.
//!
//! It turns each way a body can be wrong into the error envelope, never a panic and never
//! axum's plain-text rejection: wrong content type → 415, over the body limit → 413, not JSON →
//! 400 `bad_request`, operator-shaped keys (`$…`, `a.b`) anywhere → 400 `validation_failed`
//! listing every path, a shape serde refuses (unknown field, wrong type) → 400
//! `validation_failed`. Parsing into the domain types (which reports every bad field) is the
//! handler's next step.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ApiError, FieldError};
use crate::validation::{FieldErrors, json_guard};

/// A request body type and the guard its raw JSON must pass first.
pub trait GuardedInput: DeserializeOwned {
    /// The default refuses every `$` key and every dotted key; an input that legitimately
    /// carries whitelisted operators (getData's filter) narrows that itself.
    fn guard(body: &Value) -> Result<(), FieldErrors> {
        json_guard::check(body)
    }
}

/// A guarded, deserialized JSON body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: GuardedInput,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest("the request body could not be read".to_owned())
                }
            })?;
        let value = parse_body(&bytes)?;
        T::guard(&value)?;
        let parsed = serde_json::from_value(value)
            .map_err(|e| ApiError::Validation(vec![FieldError::new("body", e.to_string())]))?;
        Ok(ApiJson(parsed))
    }
}

/// Parses bytes as JSON, reporting where it broke (line and column, never the content).
pub fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "malformed JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}

/// `application/json` or any `application/*+json`, parameters (charset) allowed.
fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        #[allow(dead_code)]
        name: String,
    }
    impl GuardedInput for Input {}

    async fn extract(content_type: Option<&str>, body: &'static str) -> Result<Input, ApiError> {
        let mut builder = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        let request = builder.body(Body::from(body)).unwrap();
        ApiJson::<Input>::from_request(request, &())
            .await
            .map(|j| j.0)
    }

    #[tokio::test]
    async fn every_bad_body_maps_to_an_envelope_error() {
        let json = Some("application/json");
        assert!(extract(json, r#"{"name":"x"}"#).await.is_ok());
        assert!(
            extract(Some("application/json; charset=utf-8"), r#"{"name":"x"}"#)
                .await
                .is_ok()
        );
        let code = |r: Result<Input, ApiError>| r.unwrap_err().code();
        assert_eq!(
            code(extract(None, r#"{"name":"x"}"#).await),
            "unsupported_media_type"
        );
        assert_eq!(
            code(extract(Some("text/plain"), r#"{"name":"x"}"#).await),
            "unsupported_media_type"
        );
        assert_eq!(code(extract(json, r#"{"name":"#).await), "bad_request");
        assert_eq!(code(extract(json, "").await), "bad_request");
        assert_eq!(
            code(extract(json, r#"{"name":"x","$where":"1"}"#).await),
            "validation_failed"
        );
        assert_eq!(
            code(extract(json, r#"{"name":"x","extra":1}"#).await),
            "validation_failed"
        );
        assert_eq!(
            code(extract(json, r#"{"name":5}"#).await),
            "validation_failed"
        );
        assert_eq!(code(extract(json, "[1,2]").await), "validation_failed");
    }
}
