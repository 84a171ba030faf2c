//! Orders: `POST /api/orders` (priced here, stored `pending`), `GET /api/orders/:id`,
//! `GET /api/orders?status=` — a user only ever sees their own.

pub mod importer;
pub mod job;
pub mod model;
pub mod pricing;
pub mod repository;
pub mod routes;
pub mod service;
pub mod watcher;
