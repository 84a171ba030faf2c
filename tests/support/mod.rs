//! What every integration-test suite shares (`tests/api`, `tests/background`, `tests/store`,
//! and `tests/deploy` for waiting):
//! one way to wait (`eventually`), one temporary store (`store::TemporaryStore`, embedded in a
//! temporary directory or a fresh MongoDB database), and the MongoDB test server's URL
//! (`mongodb`). Each suite includes it as `#[path = "../support/mod.rs"] mod support;`.

// Each suite uses a part of it.
#![allow(dead_code)]

pub mod eventually;
pub mod mongodb;
pub mod store;

#[allow(unused_imports)]
pub use eventually::{DEADLINE, eventually, eventually_blocking, eventually_within};
