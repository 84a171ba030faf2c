//! Items over HTTP: the REST routes and the guides' `getData` / `createItem`, on one service.
//!
//! `GET /api/items` and `GET /api/items/{id}` are public; creating and getData need a login.
//! `POST /api/items` and `POST /api/createItem` honour `Idempotency-Key`.

use axum::extract::{Path, Query, State};
use keel::http::json::{ApiJson, GuardedInput};
use keel::http::rate_limit::Tier;
use keel::http::{ApiError, Created, Data, DataText, ListText};
use keel::validation::{FieldErrors, object_id};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::filter::{self, GetDataRequest};
use super::model::{CreateItemRequest, ItemListQuery, ItemView};
use super::service::ItemError;
use super::service::ItemService;
use crate::api::{ApiState, ComponentState, ErrorBody};
use crate::auth::extract::AuthUser;
use crate::brands::service::BrandService;

impl GuardedInput for CreateItemRequest {}

impl GuardedInput for GetDataRequest {
    /// `$` keys are allowed exactly at `filter.<field>.<$op>`; the parser whitelists them.
    fn guard(body: &Value) -> Result<(), FieldErrors> {
        filter::guard(body)
    }
}

/// What the items handlers use.
pub struct Services {
    items: ItemService,
}

/// The handlers' state: the shared API state and this component's services.
type ItemsApi = ComponentState<Services>;

pub fn router(state: &ApiState) -> OpenApiRouter<ApiState> {
    let services = Services {
        items: ItemService::new(state.store(), BrandService::new(state.store())),
    };
    OpenApiRouter::new()
        .routes(state.limited(Tier::Public, routes!(list_items)))
        .routes(state.limited(Tier::Api, state.idempotent(routes!(create_item))))
        .routes(state.limited(Tier::Public, routes!(get_item)))
        .routes(state.limited(Tier::Api, routes!(get_data)))
        .routes(state.limited(Tier::Api, state.idempotent(routes!(create_item_legacy))))
        .with_state(ComponentState::new(state, services))
}

impl From<ItemError> for ApiError {
    fn from(e: ItemError) -> Self {
        match e {
            ItemError::Invalid(fields) => fields.into(),
            e @ ItemError::BrandNotUsable(_) => ApiError::Unprocessable(e.to_string()),
            ItemError::NotFound => ApiError::NotFound("item".into()),
            ItemError::Store(e) => e.into(),
        }
    }
}

/// Lists items with whitelisted filters, sort and paging.
#[utoipa::path(get, path = "/api/items", tag = "items", params(ItemListQuery),
    responses(
        (status = 200, description = "A page of items (`data`) and the number matching (`total`)", body = ListText<ItemView>),
        (status = 400, description = "Invalid filter, sort or page (every problem listed)", body = ErrorBody),
    ))]
async fn list_items(
    State(api): State<ItemsApi>,
    Query(query): Query<ItemListQuery>,
) -> Result<ListText<ItemView>, ApiError> {
    let query = query.parse()?;
    let (items, total) = api.items.list(&query).await?;
    Ok(ListText::new(items, total))
}

/// One item by its ObjectId.
#[utoipa::path(get, path = "/api/items/{id}", tag = "items",
    params(("id" = String, Path, description = "24-hex-digit ObjectId")),
    responses(
        (status = 200, description = "The item", body = Data<ItemView>),
        (status = 400, description = "Not an ObjectId", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
    ))]
async fn get_item(
    State(api): State<ItemsApi>,
    Path(id): Path<String>,
) -> Result<Data<ItemView>, ApiError> {
    let id = object_id("id", &id)?;
    Ok(Data(api.items.get(id).await?.into()))
}

/// Creates an item for an existing, active brand (the guides' `hasValidBrand`).
#[utoipa::path(post, path = "/api/items", tag = "items", request_body = CreateItemRequest,
    responses(
        (status = 201, description = "Created", body = Created<ItemView>),
        (status = 400, description = "Invalid input (every problem listed)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 422, description = "Unknown or inactive brand, or Idempotency-Key reused with another body", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn create_item(
    State(api): State<ItemsApi>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateItemRequest>,
) -> Result<Created<ItemView>, ApiError> {
    let item = body.parse().map_err(ItemError::Invalid)?;
    Ok(Created(api.items.create(item, user.id).await?.into()))
}

/// The guides' `createItem`: the same rules and answer as `POST /api/items`.
#[utoipa::path(post, path = "/api/createItem", tag = "items", request_body = CreateItemRequest,
    responses(
        (status = 201, description = "Created", body = Created<ItemView>),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 422, description = "Unknown or inactive brand", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn create_item_legacy(
    state: State<ItemsApi>,
    user: AuthUser,
    body: ApiJson<CreateItemRequest>,
) -> Result<Created<ItemView>, ApiError> {
    create_item(state, user, body).await
}

/// The guides' `getData {filter, limit}`: only `name`, `brand`, `price`, `tags` and the
/// operators `$eq $in $gt $gte $lt $lte`; anything else is a 400.
#[utoipa::path(post, path = "/api/getData", tag = "items", request_body = GetDataRequest,
    responses(
        (status = 200, description = "At most `limit` matching items, in natural order (the guides' `$match` + `$limit`)", body = DataText<ItemView>),
        (status = 400, description = "A field, operator or value outside the whitelist", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn get_data(
    State(api): State<ItemsApi>,
    _user: AuthUser,
    ApiJson(body): ApiJson<GetDataRequest>,
) -> Result<DataText<ItemView>, ApiError> {
    let query = body.parse()?;
    Ok(DataText::new(api.items.query(&query).await?))
}
