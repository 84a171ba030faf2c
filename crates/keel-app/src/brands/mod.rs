//! Brands: `GET /api/brands`, `POST /api/brands`. Items reference a brand by name and may only be
//! created for an active one (the guides' `hasValidBrand`).

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;

use keel::store::migrate::IndexDecl;
use utoipa_axum::router::OpenApiRouter;

use crate::api::ApiState;
use crate::component::Component;

/// The brands component: its routes and the `brands` indexes.
pub struct Brands;

impl Component for Brands {
    fn name(&self) -> &'static str {
        "brands"
    }

    fn routes(&self, api: &ApiState) -> OpenApiRouter<ApiState> {
        routes::router(api)
    }

    fn indexes(&self) -> Vec<IndexDecl> {
        repository::BrandRepository::indexes()
    }
}
