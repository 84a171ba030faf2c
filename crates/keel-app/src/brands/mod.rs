//! Brands: `GET /api/brands`, `POST /api/brands`. Items reference a brand by name and may only be
//! created for an active one (the guides' `hasValidBrand`).

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
