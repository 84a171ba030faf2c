//! The store's integration tests: one binary, every case run against every backend
//! (embedded always; MongoDB when `KEEL_TEST_MONGODB_URL` is set). See `harness.rs` and `tests/support/`.

#[macro_use]
mod harness;
#[path = "../support/mod.rs"]
mod support;

mod change_feed;
mod crud;
mod durability;
mod embedded_only;
mod indexes;
mod migrate;
mod operators;
mod pipeline_stages;
mod ttl;
mod update_operators;
mod writes;
