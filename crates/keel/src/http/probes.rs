//! `GET /api/health` (liveness: the process answers; no I/O, never limited) and
//! `GET /api/ready` (readiness: every reported component and probe is up; 503 otherwise).
//! Why a component is down (probe errors can name database hosts) is told only to operators
//! (`operator.rs`: the host itself or the `metrics.token` holder); others get the status.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::error::ApiError;
use super::operator::OperatorAccess;
use crate::readiness::Readiness;

/// How long each readiness probe may take before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes<S: Clone + Send + Sync + 'static>(
    readiness: Readiness,
    operators: OperatorAccess,
) -> Router<S> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/ready", get(ready))
        .with_state((readiness, operators))
}

/// The liveness answer, `{"status":"healthy","timestamp":"…"}` (fields in this order, as the
/// `json!` map wrote them, and `Json`'s `content-type`): written as text, with no map, struct
/// or serializer in between (it is the request load balancers send most).
async fn health() -> Response {
    const OPENING: &[u8] = br#"{"status":"healthy","timestamp":""#;
    const CLOSING: &[u8] = br#""}"#;
    // Sized exactly (`2026-12-04T20:44:26.123Z` is 24 bytes): a buffer with room to spare
    // becomes the body with one allocation more (`Bytes::from(Vec)`).
    let mut body = Vec::with_capacity(OPENING.len() + 24 + CLOSING.len());
    body.extend_from_slice(OPENING);
    super::json_text::write_utc_millis_now(&mut body);
    body.extend_from_slice(CLOSING);
    super::response::json_bytes(StatusCode::OK, body)
}

async fn ready(
    State((readiness, operators)): State<(Readiness, OperatorAccess)>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let report = readiness.check(PROBE_TIMEOUT).await;
    if report.ready {
        return Ok(Json(
            json!({ "status": "ready", "components": report.components }),
        ));
    }
    let details = operators
        .allows(&request)
        .then(|| json!({ "down": report.down(), "components": report.components }));
    Err(ApiError::Unavailable {
        message: "not ready".to_owned(),
        details,
    })
}
