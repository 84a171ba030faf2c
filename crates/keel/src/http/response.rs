//! Success bodies: `{"success":true,"data":…}`, lists add `"total"`.
//!
//! Handlers return `Ok(Data(value))`, `Ok(Created(value))` or `Ok(List { items, total })`;
//! errors go through `ApiError`. One shape for every endpoint keeps clients simple.
//!
//! Bodies are serialized straight into bytes, with no `serde_json::Value` tree in between (on a
//! 100-item list that tree was most of the response's cost). The bytes are the ones the `Value`
//! path wrote, whose objects list their keys in sorted order: the envelope's fields are declared
//! sorted (`data`, `success`, `total`), and so must every view's (a view is a struct whose
//! fields are declared in the byte order of their JSON names). Debug builds check it on every
//! response — the integration suites run against debug builds, so a view with unsorted fields
//! fails the first test that returns it.

use std::borrow::Cow;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use serde::Serialize;

/// 200 `{"success":true,"data":…}`.
#[derive(Debug, Clone)]
pub struct Data<T>(pub T);

/// 201 `{"success":true,"data":…}`.
#[derive(Debug, Clone)]
pub struct Created<T>(pub T);

/// 200 `{"success":true,"data":[…],"total":N}`; `total` counts all matches, not just this page.
#[derive(Debug, Clone)]
pub struct List<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// A JSON value (a listing's array) written by a renderer of its own instead of serde — the
/// listings write stored documents straight into JSON (`keel::http::json_text`). The renderer
/// owes the bytes the `Value` path would write; it proves it in debug builds as `json_response`
/// does. The value is written after the envelope's opening `{"data":`, already in the buffer,
/// so the response is finished in place rather than copied (a listing is ~13 KiB).
///
/// Part of the value may be text kept elsewhere (a page a thread rendered before,
/// [`JsonTextWriter::share`]): the response sends that part as it is, beside the buffer,
/// instead of copying it in (round 23 of `docs/performance.md`).
#[derive(Debug, Clone)]
pub struct JsonText {
    /// `{"data":`, then the value's text up to the shared part (all of it without one).
    head: Vec<u8>,
    /// The shared part and the value's text after it.
    shared: Option<(Bytes, Vec<u8>)>,
}

const DATA_OPENING: &[u8] = b"{\"data\":";

impl JsonText {
    /// Renders one complete JSON value (objects with their keys in sorted order) with `write`,
    /// which gets a buffer with room for about `capacity` bytes.
    pub fn render<E>(
        capacity: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<JsonText, E> {
        let mut writer = JsonTextWriter::new(capacity);
        write(writer.out())?;
        Ok(writer.finish())
    }

    /// `bytes` must be one complete JSON value, objects with their keys in sorted order.
    pub fn from_rendered(bytes: &[u8]) -> JsonText {
        let rendered = JsonText::render(bytes.len(), |out| {
            out.extend_from_slice(bytes);
            Ok::<(), std::convert::Infallible>(())
        });
        match rendered {
            Ok(text) => text,
            Err(never) => match never {},
        }
    }

    /// The value's JSON text (copied together when part of it is shared).
    pub fn to_bytes(&self) -> Cow<'_, [u8]> {
        let head = &self.head[DATA_OPENING.len()..];
        match &self.shared {
            None => Cow::Borrowed(head),
            Some((part, tail)) => Cow::Owned([head, part, tail].concat()),
        }
    }
}

/// A [`JsonText`] written piece by piece, for a value written as its parts arrive (a listing
/// written as the store reads its items). What is written owes what [`JsonText::render`]'s
/// closure owes: one complete JSON value, objects with their keys in sorted order.
#[derive(Debug)]
pub struct JsonTextWriter(JsonText);

impl JsonTextWriter {
    /// A writer with room for about `capacity` bytes.
    pub fn new(capacity: usize) -> JsonTextWriter {
        let mut head = Vec::with_capacity(DATA_OPENING.len() + capacity + 48);
        head.extend_from_slice(DATA_OPENING);
        JsonTextWriter(JsonText { head, shared: None })
    }

    /// The buffer to write the value's next part into.
    pub fn out(&mut self) -> &mut Vec<u8> {
        match &mut self.0.shared {
            None => &mut self.0.head,
            Some((_, tail)) => tail,
        }
    }

    /// Writes `part` as the value's next part without copying it: the response sends it as it
    /// is. Once per writer; a second shared part is copied into the buffer.
    pub fn share(&mut self, part: Bytes) {
        match &mut self.0.shared {
            None => self.0.shared = Some((part, Vec::with_capacity(48))),
            Some((_, tail)) => tail.extend_from_slice(&part),
        }
    }

    /// Nothing written yet.
    pub fn is_empty(&self) -> bool {
        self.0.head.len() == DATA_OPENING.len() && self.0.shared.is_none()
    }

    /// The value written so far (copied together when part of it is shared).
    pub fn written(&self) -> Cow<'_, [u8]> {
        self.0.to_bytes()
    }

    pub fn finish(self) -> JsonText {
        self.0
    }
}

/// 200 `{"data":[…],"success":true}` around a JSON array of `T` views already rendered.
///
/// `T` is the view whose serde_json bytes the renderer writes (it owes them, see
/// [`JsonText`]): the OpenAPI document describes the response as `T`'s array
/// (`http::openapi`), so the type the handler returns is the type the document shows.
#[derive(Debug, Clone)]
pub struct DataText<T> {
    items: JsonText,
    view: PhantomData<fn() -> T>,
}

impl<T> DataText<T> {
    pub fn new(items: JsonText) -> Self {
        DataText {
            items,
            view: PhantomData,
        }
    }
}

/// 200 `{"data":[…],"success":true,"total":N}` around a JSON array of `T` views already
/// rendered (see [`DataText`] for `T`).
#[derive(Debug, Clone)]
pub struct ListText<T> {
    items: JsonText,
    total: u64,
    view: PhantomData<fn() -> T>,
}

impl<T> ListText<T> {
    pub fn new(items: JsonText, total: u64) -> Self {
        ListText {
            items,
            total,
            view: PhantomData,
        }
    }
}

impl<T> IntoResponse for DataText<T> {
    fn into_response(self) -> Response {
        text_response(self.items, None)
    }
}

impl<T> IntoResponse for ListText<T> {
    fn into_response(self) -> Response {
        text_response(self.items, Some(self.total))
    }
}

/// The envelope of `Envelope`, finished by hand around `data`: same bytes.
fn text_response(data: JsonText, total: Option<u64>) -> Response {
    let JsonText {
        mut head,
        mut shared,
    } = data;
    let end = match &mut shared {
        None => &mut head,
        Some((_, tail)) => tail,
    };
    end.extend_from_slice(b",\"success\":true");
    if let Some(total) = total {
        end.extend_from_slice(b",\"total\":");
        super::json_text::write_u64(end, total);
    }
    end.push(b'}');
    match shared {
        None => json_bytes(StatusCode::OK, head),
        Some((part, tail)) => {
            // A value that starts with its shared part (a kept page) has nothing of its own
            // in the head, which was sized for the whole page.
            let head = if head == DATA_OPENING {
                Bytes::from_static(DATA_OPENING)
            } else {
                Bytes::from(head)
            };
            json_body(
                StatusCode::OK,
                Body::new(Parts::new([head, part, tail.into()])),
            )
        }
    }
}

/// `bytes`, JSON text already, as an `application/json` response with `status`.
pub(crate) fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    json_body(status, Body::from(bytes))
}

/// `body`, JSON text, as an `application/json` response with `status`.
fn json_body(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    // Room for the response's own headers only (its type, length, rate-limit headers,
    // `vary`): the chassis moves them into a copy of the map of those it adds
    // (`protect::AddedHeaders`), and this map is dropped.
    let headers = response.headers_mut();
    *headers = HeaderMap::with_capacity(OWN_HEADERS);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A body sent as the parts it was made of (the envelope's head, a shared part, the rest), in
/// order, each its own frame (hyper writes them with one `writev`), its exact length known up
/// front (so it gets a `content-length`, as a single buffer does).
struct Parts {
    parts: [Bytes; 3],
    next: usize,
}

impl Parts {
    fn new(parts: [Bytes; 3]) -> Self {
        Parts { parts, next: 0 }
    }

    fn left(&self) -> &[Bytes] {
        self.parts.get(self.next..).unwrap_or_default()
    }
}

impl HttpBody for Parts {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        while let Some(part) = this.parts.get_mut(this.next) {
            this.next += 1;
            let part = std::mem::take(part);
            if !part.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.left().iter().all(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left().iter().map(|part| part.len() as u64).sum())
    }
}

/// The headers a keel API response sets itself before the chassis adds its own (a getData
/// response: 6, `content-type`, `content-length`, three rate-limit headers and `vary`).
const OWN_HEADERS: usize = 8;

/// The envelope, fields in sorted order (see the module comment).
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    data: &'a T,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
}

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &envelope(&self.0, None))
    }
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        json_response(StatusCode::CREATED, &envelope(&self.0, None))
    }
}

impl<T: Serialize> IntoResponse for List<T> {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &envelope(&self.items, Some(self.total)))
    }
}

fn envelope<T: Serialize>(data: &T, total: Option<u64>) -> Envelope<'_, T> {
    Envelope {
        data,
        success: true,
        total,
    }
}

/// `body` as an `application/json` response (500 if it cannot be serialized, which a derived
/// `Serialize` of strings, numbers and sequences never does).
fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(e) => return super::ApiError::internal(e).into_response(),
    };
    debug_assert_eq!(
        String::from_utf8_lossy(&bytes),
        serde_json::to_value(body)
            .and_then(|value| serde_json::to_string(&value))
            .unwrap_or_default(),
        "a response view declares its fields out of sorted order (see http/response.rs)"
    );
    json_bytes(status, bytes)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[derive(Serialize)]
    struct View {
        #[serde(rename = "_id")]
        id: &'static str,
        name: &'static str,
    }

    async fn body(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn envelopes_have_the_bytes_of_the_sorted_value_path() {
        let view = View { id: "1", name: "a" };
        let list = List {
            items: vec![view],
            total: 7,
        };
        let response = list.into_response();
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body(response).await,
            r#"{"data":[{"_id":"1","name":"a"}],"success":true,"total":7}"#
        );
        let created = Created(View { id: "2", name: "b" }).into_response();
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(
            body(created).await,
            r#"{"data":{"_id":"2","name":"b"},"success":true}"#
        );
    }

    #[tokio::test]
    async fn rendered_envelopes_have_the_bytes_of_the_serialized_ones() {
        let items = vec![
            View {
                id: "1",
                name: "a\"b",
            },
            View {
                id: "2", name: "é"
            },
        ];
        let rendered = JsonText::from_rendered(&serde_json::to_vec(&items).unwrap());
        assert_eq!(*rendered.to_bytes(), serde_json::to_vec(&items).unwrap());
        let list = ListText::<View>::new(rendered.clone(), 12).into_response();
        let data = DataText::<View>::new(rendered).into_response();
        for (response, serialized) in [
            (list, List { items, total: 12 }.into_response()),
            (
                data,
                Data(vec![
                    View {
                        id: "1",
                        name: "a\"b",
                    },
                    View {
                        id: "2", name: "é"
                    },
                ])
                .into_response(),
            ),
        ] {
            assert_eq!(response.status(), serialized.status());
            assert_eq!(response.headers(), serialized.headers());
            assert_eq!(body(response).await, body(serialized).await);
        }
    }

    /// A value with a shared part: the same bytes as written whole, in one response whose
    /// exact length is known up front (the `content-length`), sent as three frames.
    #[tokio::test]
    async fn a_shared_part_is_sent_beside_the_buffer_with_the_same_bytes() {
        let whole = br#"[{"_id":"1","name":"a"},{"_id":"2","name":"b"}]"#;
        let (first, rest) = whole.split_at(1);
        let (kept, last) = rest.split_at(rest.len() - 1);
        let mut writer = JsonTextWriter::new(0);
        assert!(writer.is_empty());
        writer.out().extend_from_slice(first);
        writer.share(Bytes::from_static(kept));
        assert!(!writer.is_empty());
        writer.out().extend_from_slice(last);
        assert_eq!(*writer.written(), whole[..]);
        let text = writer.finish();
        assert_eq!(*text.to_bytes(), whole[..]);

        for total in [None, Some(12)] {
            let copy = JsonText::from_rendered(whole);
            let (shared, copied) = match total {
                Some(total) => (
                    ListText::<View>::new(text.clone(), total).into_response(),
                    ListText::<View>::new(copy, total).into_response(),
                ),
                None => (
                    DataText::<View>::new(text.clone()).into_response(),
                    DataText::<View>::new(copy).into_response(),
                ),
            };
            assert_eq!(shared.status(), copied.status());
            assert_eq!(shared.headers(), copied.headers());
            let expected = body(copied).await;
            assert_eq!(
                shared.body().size_hint().exact(),
                Some(expected.len() as u64)
            );
            let mut frames = 0;
            let mut sent = Vec::new();
            let mut body = shared.into_body();
            while let Some(frame) = body.frame().await {
                frames += 1;
                sent.extend_from_slice(&frame.unwrap().into_data().unwrap());
                assert_eq!(
                    body.size_hint().exact(),
                    Some((expected.len() - sent.len()) as u64)
                );
            }
            assert!(body.is_end_stream());
            assert_eq!(frames, 3);
            assert_eq!(String::from_utf8(sent).unwrap(), expected);
        }
    }

    #[cfg(debug_assertions)]
    #[derive(Serialize)]
    struct Unsorted {
        name: &'static str,
        age: u8,
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "out of sorted order")]
    fn debug_builds_refuse_a_view_with_unsorted_fields() {
        let _ = Data(Unsorted { name: "a", age: 1 }).into_response();
    }
}
