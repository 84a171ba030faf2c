//! Success bodies: `{"success":true,"data":…}`, lists add `"total"`.
//!
//! Handlers return `Ok(Data(value))`, `Ok(Created(value))` or `Ok(List { items, total })`;
//! errors go through `ApiError`. One shape for every endpoint keeps clients simple.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

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

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        Json(json!({ "success": true, "data": self.0 })).into_response()
    }
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (
            StatusCode::CREATED,
            Json(json!({ "success": true, "data": self.0 })),
        )
            .into_response()
    }
}

impl<T: Serialize> IntoResponse for List<T> {
    fn into_response(self) -> Response {
        Json(json!({ "success": true, "data": self.items, "total": self.total })).into_response()
    }
}
