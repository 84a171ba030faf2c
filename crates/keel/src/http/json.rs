//! `ApiJson<T>`: the JSON body extractor every keel route uses instead of `axum::Json`.
//!
//! It turns each way a body can be wrong into the error envelope, never a panic and never
//! axum's plain-text rejection: wrong content type → 415, over the body limit → 413, not JSON →
//! 400 `bad_request`, operator-shaped keys (`$…`, `a.b`) anywhere → 400 `validation_failed`
//! listing every path, a shape serde refuses (unknown field, wrong type) → 400
//! `validation_failed`. Parsing into the domain types (which reports every bad field) is the
//! handler's next step.
//!
//! Bounded before anything is built: each input type has its own body cap
//! (`GuardedInput::MAX_BODY_BYTES`, 64 KB unless it says less; `server.body_limit` stays the
//! ceiling for every route), checked against `Content-Length` before reading and while
//! reading; and the parser counts JSON values as it builds them, refusing a body with more than
//! `MAX_JSON_VALUES` (413) before the rest is parsed, so memory is bounded by that count
//! whatever the body limit is raised to.

use std::cell::Cell;
use std::fmt;

use axum::extract::{FromRequest, Request};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{ApiError, FieldError};
use crate::validation::{FieldErrors, json_guard};

/// A request body type and the guard its raw JSON must pass first.
pub trait GuardedInput: DeserializeOwned {
    /// The largest body this input accepts (413 above); `server.body_limit` caps it further.
    const MAX_BODY_BYTES: usize = 64 * 1024;

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

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = T::MAX_BODY_BYTES;
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        let bytes = Limited::new(request.into_body(), limit)
            .collect()
            .await
            .map_err(|error| {
                if is_length_limit(error.as_ref()) {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest("the request body could not be read".to_owned())
                }
            })?
            .to_bytes();
        let value = parse_body(&bytes)?;
        T::guard(&value)?;
        let parsed = serde_json::from_value(value)
            .map_err(|e| ApiError::Validation(vec![FieldError::new("body", e.to_string())]))?;
        Ok(ApiJson(parsed))
    }
}

/// JSON values (every scalar, array and object counts one) a body may hold.
pub const MAX_JSON_VALUES: usize = 10_000;

/// Whether the body read failed on a length limit (ours, or the chassis's body-limit layer).
fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Parses bytes as JSON, reporting where it broke (line and column, never the content); more
/// than `MAX_JSON_VALUES` values is 413, found while parsing.
pub fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    let budget = Cell::new(MAX_JSON_VALUES);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = CountedValue { budget: &budget }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|e| {
        if budget.get() == 0 && e.to_string().starts_with(TOO_MANY_VALUES) {
            return ApiError::PayloadTooLarge;
        }
        ApiError::BadRequest(format!(
            "malformed JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}

const TOO_MANY_VALUES: &str = "more JSON values than allowed";

/// Builds a `serde_json::Value` like `Value::deserialize`, spending one unit of `budget` per
/// value and failing when it runs out.
#[derive(Clone, Copy)]
struct CountedValue<'a> {
    budget: &'a Cell<usize>,
}

impl CountedValue<'_> {
    fn spend<E: de::Error>(self) -> Result<(), E> {
        match self.budget.get() {
            0 => Err(E::custom(TOO_MANY_VALUES)),
            left => {
                self.budget.set(left - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for CountedValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CountedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.spend()?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
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

    #[test]
    fn the_parser_counts_values_and_stops_at_the_cap() {
        let at_cap = format!("[{}]", vec!["0"; MAX_JSON_VALUES - 1].join(","));
        assert_eq!(
            parse_body(at_cap.as_bytes())
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            MAX_JSON_VALUES - 1
        );
        let over = format!("[{}]", vec!["0"; MAX_JSON_VALUES].join(","));
        assert_eq!(
            parse_body(over.as_bytes()).unwrap_err().code(),
            "payload_too_large"
        );
        let nested = format!("{{\"a\":[{}]}}", vec!["{}"; MAX_JSON_VALUES].join(","));
        assert_eq!(
            parse_body(nested.as_bytes()).unwrap_err().code(),
            "payload_too_large"
        );
        // Same values as serde_json's own parser builds.
        let text = r#"{"a":[1,-2,3.5,true,null,"x\u00e9"],"b":{"c":18446744073709551615}}"#;
        assert_eq!(
            parse_body(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(parse_body(b"[1] x").unwrap_err().code(), "bad_request");
    }

    #[derive(Debug, Deserialize)]
    struct Small {
        #[allow(dead_code)]
        s: String,
    }
    impl GuardedInput for Small {
        const MAX_BODY_BYTES: usize = 32;
    }

    #[tokio::test]
    async fn each_input_has_its_own_body_cap() {
        let request = |body: String, declared: bool| {
            let mut builder = Request::builder()
                .method("POST")
                .uri("/")
                .header(CONTENT_TYPE, "application/json");
            if declared {
                builder = builder.header(CONTENT_LENGTH, body.len());
            }
            builder.body(Body::from(body)).unwrap()
        };
        let fits = r#"{"s":"0123456789"}"#.to_owned();
        let too_big = format!(r#"{{"s":"{}"}}"#, "x".repeat(100));
        for declared in [true, false] {
            assert!(
                ApiJson::<Small>::from_request(request(fits.clone(), declared), &())
                    .await
                    .is_ok()
            );
            let refused = ApiJson::<Small>::from_request(request(too_big.clone(), declared), &())
                .await
                .unwrap_err();
            assert_eq!(refused.code(), "payload_too_large", "declared: {declared}");
        }
    }
}
