//! Accounts and login: `POST /api/auth/register`, `/login`, `/logout`, `GET /api/auth/me`.
//!
//! `model` parses credentials, `service` hashes and verifies with argon2id, `repository` owns the
//! `users` and `auth_failures` collections.

pub mod extract;
pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
