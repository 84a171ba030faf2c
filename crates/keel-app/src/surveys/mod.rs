//! Surveys: `POST /api/surveys`, `POST /api/surveys/:id/complete`, `GET /api/surveys/stats`.
//! Completion hands work to the background surveys watcher through `processed: false`.

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
pub mod watcher;
