//! Request ids: every request gets one, every log line and error response about it carries it.
//!
//! A caller's `x-request-id` is kept when it is sane (1–128 characters of `[A-Za-z0-9._:-]`),
//! so ids flow through a chain of services; otherwise a UUID v4 is generated. The id is echoed
//! in the response, stored in the request's extensions (the `RequestId` extractor reads it) and
//! scoped to the request's task, where `ApiError` picks it up for 5xx bodies.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use futures::FutureExt;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const MAX_LEN: usize = 128;

/// The id, held as the header value it is sent as: the request's header, the response's, the
/// extension and the task-local share one buffer (a generated id is one allocation), where a
/// string and a header value copied from it were three allocations per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A random UUID v4, its bits from the thread's CSPRNG (`uuid::Uuid::new_v4` asks the
    /// kernel for them: a system call on every request).
    pub fn generate() -> Self {
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid.hyphenated().encode_lower(&mut text);
        let value = HeaderValue::from_maybe_shared(Bytes::from_owner(text))
            .expect("hex digits and dashes are a valid header value");
        RequestId(value)
    }

    /// Accepts a caller's id only if it is safe to echo and to log.
    pub fn parse(text: &str) -> Option<Self> {
        Self::from_header(&HeaderValue::from_str(text).ok()?)
    }

    /// [`parse`](Self::parse) for a header's value. The id is copied out of it: a header of a
    /// request shares the connection's read buffer, which an id kept longer would hold.
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let is_sane = !bytes.is_empty()
            && bytes.len() <= MAX_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        let copied = || HeaderValue::from_maybe_shared(Bytes::copy_from_slice(bytes)).ok();
        is_sane.then(copied).flatten().map(RequestId)
    }

    pub fn as_str(&self) -> &str {
        // ASCII only, checked when it was made: `to_str` cannot fail.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as the `x-request-id` header's value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(RequestId::clone).ok()
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: RequestId, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// Assigns the id (the chassis's outermost step), then runs `inner`.
///
/// Each step of the chassis prepares synchronously, builds the rest (`inner(request)`), and
/// returns the rest's future with its own work on the response mapped onto it. An `async fn`
/// or block would keep its arguments (the request) and the future it awaits in slots of its
/// own beside the awaited copy, doubling the size at every step: the boxed future of the
/// chassis would be tens of kilobytes, copied into the heap on every request
/// (`docs/performance.md`).
pub fn assign_request_id(
    mut request: Request,
    inner: impl AsyncFnOnce(Request) -> Response,
) -> impl Future<Output = Response> {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(RequestId::from_header)
        .unwrap_or_else(RequestId::generate);
    let header = id.header_value().clone();
    request.headers_mut().insert(X_REQUEST_ID, header.clone());
    request.extensions_mut().insert(id.clone());
    // The id is current while the rest is built and while it runs. The rest is boxed where
    // it is built: the task-local's scope moves what it returns and what it wraps, and the
    // rest is the whole chassis's future (~1.2 KB), which those moves copied three times
    // (callgrind, round 27).
    let rest = CURRENT.sync_scope(id.clone(), || Box::pin(inner(request)));
    CURRENT.scope(id, rest).map(move |mut response| {
        response.headers_mut().insert(X_REQUEST_ID, header);
        response
    })
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_refused() {
        assert!(RequestId::parse("abc-123_x.y:z").is_some());
        assert!(RequestId::parse(&"a".repeat(128)).is_some());
        for bad in ["", "has space", "new\nline", "<script>", &"a".repeat(129)] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_ids_are_uuids() {
        let id = RequestId::generate();
        let parsed = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(id.as_str(), parsed.hyphenated().to_string());
        assert_ne!(RequestId::generate(), id);
    }
}
