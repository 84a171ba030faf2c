//! The store's integration tests: one binary, every case run against every backend
//! (embedded always; MongoDB when `KEEL_TEST_MONGODB_URL` is set). See `harness.rs`.

#[macro_use]
mod harness;

mod crud;
