//! `GET /api/brands` (public) and `POST /api/brands` (logged in).

use axum::extract::State;
use keel::http::json::{ApiJson, GuardedInput};
use keel::http::rate_limit::Tier;
use keel::http::{ApiError, Created, List};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{BrandView, CreateBrandRequest};
use super::service::BrandError;
use super::service::BrandService;
use crate::api::{ApiState, ComponentState, ErrorBody};
use crate::auth::extract::AuthUser;

impl GuardedInput for CreateBrandRequest {}

/// What the brands handlers use.
pub struct Services {
    brands: BrandService,
}

/// The handlers' state: the shared API state and this component's services.
type BrandsApi = ComponentState<Services>;

pub fn router(state: &ApiState) -> OpenApiRouter<ApiState> {
    let services = Services {
        brands: BrandService::new(state.store()),
    };
    OpenApiRouter::new()
        .routes(state.limited(Tier::Public, routes!(list_brands)))
        .routes(state.limited(Tier::Api, routes!(create_brand)))
        .with_state(ComponentState::new(state, services))
}

impl From<BrandError> for ApiError {
    fn from(e: BrandError) -> Self {
        match e {
            BrandError::Invalid(fields) => fields.into(),
            BrandError::NameTaken => {
                ApiError::Conflict("a brand with this name already exists".into())
            }
            BrandError::Store(e) => e.into(),
        }
    }
}

/// Every brand, by name.
#[utoipa::path(get, path = "/api/brands", tag = "brands",
    responses((status = 200, description = "Brands (`data`) and their count (`total`)", body = List<BrandView>)))]
async fn list_brands(State(api): State<BrandsApi>) -> Result<List<BrandView>, ApiError> {
    let brands = api.brands.list().await?;
    let total = brands.len() as u64;
    Ok(List {
        items: brands.into_iter().map(BrandView::from).collect(),
        total,
    })
}

/// Creates a brand (`active` defaults to true).
#[utoipa::path(post, path = "/api/brands", tag = "brands", request_body = CreateBrandRequest,
    responses(
        (status = 201, description = "Created", body = Created<BrandView>),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn create_brand(
    State(api): State<BrandsApi>,
    _user: AuthUser,
    ApiJson(body): ApiJson<CreateBrandRequest>,
) -> Result<Created<BrandView>, ApiError> {
    let brand = body.parse().map_err(BrandError::Invalid)?;
    Ok(Created(api.brands.create(brand).await?.into()))
}
