//! `/api/orders`: create (priced server-side, `Idempotency-Key` honoured), list own by status,
//! read one own order, price own pending orders now on the worker pool (`/api/orders/process`).
//! Another user's order id answers 404, like an unknown one.

use axum::extract::{Path, Query, State};
use keel::http::json::{ApiJson, GuardedInput};
use keel::http::rate_limit::Tier;
use keel::http::{ApiError, Created, Data, List};
use keel::validation::{FieldErrors, object_id};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::job::ProcessOrders;
use super::job::ProcessOrdersError;
use super::model::{CreateOrderRequest, OrderListQuery, OrderStatus, OrderView};
use super::service::OrderError;
use super::service::OrderService;
use crate::api::{ApiState, ComponentState, ErrorBody};
use crate::auth::extract::AuthUser;
use crate::paging::{Limit, Skip};

impl GuardedInput for CreateOrderRequest {}

/// What the orders handlers use.
pub struct Services {
    orders: OrderService,
    /// `POST /api/orders/process`: the `process-orders` job's work, run inline.
    process: ProcessOrders,
}

/// The handlers' state: the shared API state and this component's services.
type OrdersApi = ComponentState<Services>;

pub fn router(state: &ApiState) -> OpenApiRouter<ApiState> {
    let settings = state.platform.config().orders.clone();
    let services = Services {
        orders: OrderService::new(state.store(), &settings),
        process: ProcessOrders::new(state.store(), super::tax_rate(&settings)),
    };
    OpenApiRouter::new()
        .routes(state.limited(Tier::Api, state.idempotent(routes!(create_order))))
        .routes(state.limited(Tier::Api, routes!(list_orders)))
        .routes(state.limited(Tier::Api, routes!(get_order)))
        .routes(state.limited(Tier::Api, routes!(process_orders)))
        .with_state(ComponentState::new(state, services))
}

/// Most orders one `POST /api/orders/process` prices.
const MAX_PROCESS_BATCH: usize = 100;

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProcessOrdersRequest {
    /// 1 to 100 ids of the caller's pending orders.
    #[schema(required, schema_with = order_ids_schema)]
    pub order_ids: Option<Vec<String>>,
}

fn order_ids_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .min_items(Some(1))
        .max_items(Some(MAX_PROCESS_BATCH))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(keel::validation::OBJECT_ID_PATTERN)),
        )
        .build()
}

impl GuardedInput for ProcessOrdersRequest {}

/// The answer of `POST /api/orders/process`: the document `ProcessOrders::process` returns
/// (fields in sorted order, see `keel::http::response`).
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProcessedBatch {
    pub batch_id: String,
    /// Ids that were not priced: unknown, someone else's, no longer pending, or refused.
    pub errors: Vec<BatchError>,
    pub processed: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchError {
    pub error: String,
    pub order_id: String,
}

/// Prices the caller's pending orders now on the worker pool (the guides' `processOrders`
/// worker) and answers `{batchId, processed, errors}`; ids that are unknown, someone else's or
/// no longer pending are listed in `errors`. A full pool answers 503 with `Retry-After`.
#[utoipa::path(post, path = "/api/orders/process", tag = "orders", request_body = ProcessOrdersRequest,
    responses(
        (status = 200, description = "What was priced, and why the other ids were not", body = Data<ProcessedBatch>),
        (status = 400, description = "Missing, too many or malformed ids", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 503, description = "Worker pool busy (Retry-After)", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn process_orders(
    State(api): State<OrdersApi>,
    user: AuthUser,
    ApiJson(body): ApiJson<ProcessOrdersRequest>,
) -> Result<Data<ProcessedBatch>, ApiError> {
    let raw = body.order_ids.unwrap_or_default();
    if raw.is_empty() || raw.len() > MAX_PROCESS_BATCH {
        return Err(FieldErrors::single(
            "orderIds",
            format!("must list 1 to {MAX_PROCESS_BATCH} order ids"),
        )
        .into());
    }
    let mut errors = FieldErrors::new();
    let ids: Vec<bson::Bson> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, id)| errors.take(object_id(&format!("orderIds[{i}]"), id)))
        .map(bson::Bson::ObjectId)
        .collect();
    if !errors.is_empty() {
        return Err(errors.into());
    }
    // The same work as the `process-orders` job, for this user's orders only, now.
    let batch_id = bson::oid::ObjectId::new().to_hex();
    let owner = bson::Bson::ObjectId(user.id);
    let result = api
        .process
        .process(&batch_id, &ids, Some(&owner), &api.api().background.workers)
        .await
        .map_err(|e| match e {
            ProcessOrdersError::Worker(e) => ApiError::from(e),
            ProcessOrdersError::Store(e) => e.into(),
            other => ApiError::internal(other.to_string()),
        })?;
    let batch = serde_json::to_value(&result)
        .and_then(serde_json::from_value::<ProcessedBatch>)
        .map_err(ApiError::internal)?;
    Ok(Data(batch))
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Invalid(fields) => fields.into(),
            OrderError::NotFound => ApiError::NotFound("order".into()),
            OrderError::Store(e) => e.into(),
        }
    }
}

/// Places an order: `subtotal`, `tax` (configured rate) and `total` are computed here.
#[utoipa::path(post, path = "/api/orders", tag = "orders", request_body = CreateOrderRequest,
    responses(
        (status = 201, description = "Created, status pending", body = Created<OrderView>),
        (status = 400, description = "Invalid lines (every problem listed)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn create_order(
    State(api): State<OrdersApi>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateOrderRequest>,
) -> Result<Created<OrderView>, ApiError> {
    let order = body.parse().map_err(OrderError::Invalid)?;
    Ok(Created(api.orders.create(user.id, order).await?.into()))
}

/// The caller's orders, newest first, optionally by status.
#[utoipa::path(get, path = "/api/orders", tag = "orders", params(OrderListQuery),
    responses(
        (status = 200, description = "Own orders (`data`) and how many match (`total`)", body = List<OrderView>),
        (status = 400, description = "Unknown status or bad page", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn list_orders(
    State(api): State<OrdersApi>,
    user: AuthUser,
    Query(query): Query<OrderListQuery>,
) -> Result<List<OrderView>, ApiError> {
    let mut errors = FieldErrors::new();
    let status = query
        .status
        .and_then(|s| errors.take(OrderStatus::parse(&s)));
    let limit = query
        .limit
        .and_then(|l| errors.take(Limit::parse_text("limit", &l)))
        .unwrap_or_default();
    let skip = query
        .skip
        .and_then(|s| errors.take(Skip::parse_text("skip", &s)))
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let (orders, total) = api.orders.list(user.id, status, limit, skip).await?;
    Ok(List {
        items: orders.into_iter().map(OrderView::from).collect(),
        total,
    })
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "24-hex-digit ObjectId")),
    responses(
        (status = 200, description = "The order", body = Data<OrderView>),
        (status = 400, description = "Not an ObjectId", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such order of this user", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn get_order(
    State(api): State<OrdersApi>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Data<OrderView>, ApiError> {
    let id = object_id("id", &id)?;
    Ok(Data(api.orders.get(user.id, id).await?.into()))
}
