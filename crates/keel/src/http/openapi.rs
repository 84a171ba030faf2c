//! The OpenAPI side of keel's HTTP contract: the schemas of the bodies `response.rs` and
//! `error.rs` write, and the statuses the chassis and the route layers answer for any route.
//!
//! An application documents a route with the types its handler returns (`body = Data<ItemView>`,
//! `List<…>`, `Created<…>`, `ListText<…>`): their schemas are the envelopes as written, with the
//! view as a component. Errors are one set of shared responses (`#/components/responses/…`),
//! added to an operation by whatever makes the server answer them — the rate-limit layer adds
//! 429, a JSON body 400/413/415, a session requirement 401 — so a status is declared where it
//! arises, once. The integration suite validates every response it gets against the served
//! document (`tests/api/helpers/contract.rs`).

use std::borrow::Cow;

use http::StatusCode;
use serde_json::json;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, Paths};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::{Components, Content, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use super::response::{Created, Data, DataText, List, ListText};

/// Schema components `T` needs: `T` itself and what it refers to.
fn push_component<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

fn reference<T: ToSchema>() -> RefOr<Schema> {
    Ref::from_schema_name(T::name()).into()
}

/// The envelope's `success`: a boolean that is always `value`.
fn success_flag(value: bool) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([value]))
}

/// `{"data": …, "success": true, "total"?: N}`, no other field: what `response.rs` writes.
fn envelope(data: RefOr<Schema>, with_total: bool) -> RefOr<Schema> {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("data", data)
        .required("data")
        .property("success", success_flag(true))
        .required("success")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    if with_total {
        object = object
            .property(
                "total",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .description(Some("How many match, not just this page")),
            )
            .required("total");
    }
    object.into()
}

fn array_with(items: RefOr<Schema>) -> RefOr<Schema> {
    ArrayBuilder::new().items(items).into()
}

/// The envelopes' schemas, each a component named for the envelope and its view
/// (`List_ItemView`) that refers to the view's component. utoipa-gen writes a generic body
/// type (`body = Data<ItemView>`) through `ComposeSchema::compose`, handing it the view's
/// schema inline; the envelope refers to the view's component instead, which
/// `ToSchema::schemas` registers.
macro_rules! envelope_schema {
    ($envelope:ident, $name:literal, $data:expr, $total:expr) => {
        impl<T: ToSchema> utoipa::__dev::ComposeSchema for $envelope<T> {
            fn compose(_inline_view: Vec<RefOr<Schema>>) -> RefOr<Schema> {
                envelope($data(reference::<T>()), $total)
            }
        }

        impl<T: ToSchema> ToSchema for $envelope<T> {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }

            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                push_component::<T>(schemas);
            }
        }
    };
}

envelope_schema!(Data, "Data", std::convert::identity, false);
envelope_schema!(Created, "Created", std::convert::identity, false);
envelope_schema!(List, "List", array_with, true);
envelope_schema!(ListText, "List", array_with, true);
envelope_schema!(DataText, "DataArray", array_with, false);

/// Every `error.code` `ApiError` writes.
pub const ERROR_CODES: &[&str] = &[
    "bad_request",
    "validation_failed",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "payload_too_large",
    "unsupported_media_type",
    "unprocessable",
    "too_many_requests",
    "timeout",
    "busy",
    "unavailable",
    "internal_error",
];

/// The error envelope `ApiError` writes: `{"success": false, "error": {"code", "message",
/// "details"?, "requestId"?}}`.
pub struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let field_problems = ArrayBuilder::new().items(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("field", string().examples([json!("lines[0].qty")]))
                .required("field")
                .property("message", string())
                .required("message")
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
        );
        let details = AnyOfBuilder::new()
            .item(field_problems)
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .description(Some(
                "`validation_failed`: every bad field, `[{field, message}]`; \
                 some `unavailable` answers: an object saying what is down",
            ));
        let error = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "code",
                string()
                    .enum_values(Some(ERROR_CODES.iter().copied()))
                    .description(Some("Stable and machine-readable")),
            )
            .required("code")
            .property("message", string())
            .required("message")
            .property("details", details)
            .property(
                "requestId",
                string().description(Some("5xx only: quote it when reporting the failure")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("success", success_flag(false))
            .required("success")
            .property("error", error)
            .required("error")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for ErrorBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorBody")
    }
}

/// The shared error responses: status, component name, description.
const SHARED_ERRORS: &[(StatusCode, &str, &str)] = &[
    (
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "Malformed request (`bad_request`: not JSON, bad header) or invalid fields \
         (`validation_failed`, every bad field in `details`)",
    ),
    (
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "No valid session (`unauthorized`): log in first",
    ),
    (
        StatusCode::FORBIDDEN,
        "Forbidden",
        "Logged in but not allowed, or a cross-origin state-changing request (`forbidden`)",
    ),
    (
        StatusCode::NOT_FOUND,
        "NotFound",
        "No such resource (`not_found`)",
    ),
    (
        StatusCode::CONFLICT,
        "Conflict",
        "Conflicts with the current state (`conflict`)",
    ),
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLarge",
        "Body over this route's limit or with too many JSON values (`payload_too_large`)",
    ),
    (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        "The body is not `Content-Type: application/json` (`unsupported_media_type`)",
    ),
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        "Unprocessable",
        "Understood but refused by a rule (`unprocessable`)",
    ),
    (
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Rate limit of the route's tier exceeded (`too_many_requests`); retry after `Retry-After` seconds",
    ),
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "A failure of ours (`internal_error`); `error.requestId` identifies it in the logs",
    ),
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "Cannot serve now: the store is unavailable (`unavailable`), the request timed out \
         (`timeout`) or a bounded queue is full (`busy`, with `Retry-After`); retry later",
    ),
];

/// Adds the error envelope and the shared error responses to `components`.
pub fn add_error_components(components: &mut Components) {
    let mut schemas = Vec::new();
    push_component::<ErrorBody>(&mut schemas);
    components.schemas.extend(schemas);
    for (status, name, description) in SHARED_ERRORS {
        let mut response = ResponseBuilder::new().description(*description).content(
            "application/json",
            Content::new(Some(reference::<ErrorBody>())),
        );
        if matches!(
            *status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some("Seconds to wait (always on 429, on 503 `busy`)"))
                    .build(),
            );
        }
        components
            .responses
            .insert((*name).to_owned(), RefOr::T(response.build()));
    }
}

/// Declares that `operation` can answer `status` with the shared error response, unless the
/// route documents that status itself (with a more precise description).
///
/// # Panics
/// If `status` has no shared response: a programming error caught by the first test.
pub fn answers(operation: &mut Operation, status: StatusCode) {
    let key = status.as_u16().to_string();
    if operation.responses.responses.contains_key(&key) {
        return;
    }
    let (_, name, _) = SHARED_ERRORS
        .iter()
        .find(|(shared, _, _)| *shared == status)
        .unwrap_or_else(|| panic!("no shared response for {status}"));
    operation
        .responses
        .responses
        .insert(key, RefOr::Ref(Ref::from_response_name(*name)));
}

/// Every operation of `paths`.
pub fn operations_mut(paths: &mut Paths) -> impl Iterator<Item = &mut Operation> {
    paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .filter_map(Option::as_mut)
    })
}

/// What the chassis and a keel route answer whatever the handler does: a panic or bug (500),
/// a timeout or a store that is down (503, the session layer reads the store); for a route
/// with a JSON body, every way `ApiJson` refuses one (400, 413, 415); for a route that needs
/// a session (`security`), 401, and 403 when it changes state (the CSRF origin check).
pub fn add_chassis_answers(paths: &mut Paths) {
    for item in paths.paths.values_mut() {
        for (operation, is_state_changing) in [
            (&mut item.get, false),
            (&mut item.head, false),
            (&mut item.options, false),
            (&mut item.trace, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ] {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            answers(operation, StatusCode::INTERNAL_SERVER_ERROR);
            answers(operation, StatusCode::SERVICE_UNAVAILABLE);
            if operation.request_body.is_some() {
                answers(operation, StatusCode::BAD_REQUEST);
                answers(operation, StatusCode::PAYLOAD_TOO_LARGE);
                answers(operation, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            let needs_session = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty());
            if needs_session {
                answers(operation, StatusCode::UNAUTHORIZED);
                if is_state_changing {
                    answers(operation, StatusCode::FORBIDDEN);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use serde_json::Value;
    use utoipa::PartialSchema;

    use super::*;
    use crate::http::{ApiError, FieldError};

    #[derive(serde::Serialize)]
    struct View;

    impl PartialSchema for View {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new().into()
        }
    }

    impl ToSchema for View {}

    fn json<T: serde::Serialize>(value: T) -> Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn rendered_listings_are_documented_as_the_serialized_ones() {
        assert_eq!(
            json(ListText::<View>::schema()),
            json(List::<View>::schema())
        );
        let mut list = json(List::<View>::schema());
        list["properties"].as_object_mut().unwrap().remove("total");
        list["required"] = json!(["data", "success"]);
        assert_eq!(json(DataText::<View>::schema()), list);
        assert_eq!(
            json(Data::<View>::schema())["properties"]["data"]["$ref"],
            "#/components/schemas/View"
        );
    }

    async fn body_of(error: ApiError) -> Value {
        let response = error.into_response();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every field of every error envelope is in the schema, and every code in its enum.
    #[tokio::test]
    async fn the_error_schema_covers_every_error() {
        let schema = json(ErrorBody::schema());
        let error = &schema["properties"]["error"];
        let errors = [
            ApiError::BadRequest("x".into()),
            ApiError::Validation(vec![FieldError::new("a", "b")]),
            ApiError::Unauthorized,
            ApiError::Forbidden,
            ApiError::NotFound("item".into()),
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::Conflict("x".into()),
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::Unprocessable("x".into()),
            ApiError::TooManyRequests {
                retry_after_secs: 1,
            },
            ApiError::Busy {
                retry_after_secs: 1,
            },
            ApiError::Timeout,
            ApiError::Unavailable {
                message: "x".into(),
                details: Some(json!({"down": ["store"]})),
            },
            ApiError::internal("x"),
        ];
        for api_error in errors {
            let status = api_error.status();
            let body = crate::http::request_id::scope(
                crate::http::RequestId::generate(),
                body_of(api_error),
            )
            .await;
            assert_eq!(body["success"], false);
            for key in body.as_object().unwrap().keys() {
                assert!(schema["properties"].get(key).is_some(), "{key} in {body}");
            }
            for key in body["error"].as_object().unwrap().keys() {
                assert!(error["properties"].get(key).is_some(), "{key} in {body}");
            }
            let code = &body["error"]["code"];
            assert!(
                error["properties"]["code"]["enum"]
                    .as_array()
                    .unwrap()
                    .contains(code),
                "{code}"
            );
            assert!(
                SHARED_ERRORS.iter().any(|(shared, _, _)| *shared == status)
                    || status == StatusCode::METHOD_NOT_ALLOWED,
                "{status} has no shared response"
            );
        }
    }
}
