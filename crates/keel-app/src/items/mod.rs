//! Items: `GET /api/items` (whitelisted filters, sort, paging), `GET /api/items/:id`,
//! `POST /api/items`, and the guides' `POST /api/getData` / `POST /api/createItem` on the same
//! service.

pub mod filter;
pub mod model;
pub mod render;
pub mod repository;
pub mod routes;
pub mod service;
pub mod task;
