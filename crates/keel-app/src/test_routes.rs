//! Routes mounted only when `env = "test"`: they let the integration tests drive behaviour
//! that no real route should offer on demand (a panic, a slow request spanning a shutdown).
//! `keel-app::build` refuses to mount them in any other environment.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use keel::http::{ApiError, Data};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/__test/slow", get(slow))
        .route("/__test/panic", get(panic))
        .route("/__test/internal", get(internal))
        .route("/__test/echo", post(echo))
}

#[derive(Deserialize)]
struct SlowParams {
    /// How long to take, in milliseconds.
    ms: u64,
    /// Start counting only once the server's shutdown has begun: the request is then
    /// guaranteed to be in flight when SIGTERM arrives.
    #[serde(default)]
    after_shutdown: bool,
}

async fn slow(State(state): State<AppState>, Query(params): Query<SlowParams>) -> Data<Value> {
    tracing::warn!(
        ms = params.ms,
        after_shutdown = params.after_shutdown,
        "test slow request started"
    );
    if params.after_shutdown {
        state.platform.shutdown().triggered().await;
    }
    tokio::time::sleep(Duration::from_millis(params.ms)).await;
    Data(json!({ "sleptMs": params.ms }))
}

async fn panic() -> Data<Value> {
    panic!("test route panicked on purpose")
}

async fn internal() -> Result<Data<Value>, ApiError> {
    Err(ApiError::internal("database password is swordfish"))
}

async fn echo(body: Bytes) -> Data<Value> {
    Data(json!({ "bytes": body.len() }))
}
