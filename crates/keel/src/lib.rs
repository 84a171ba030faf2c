//! keel: the platform half of a production backend (the guides' `globals/server_modules`).
//!
//! Everything here is domain-free: configuration and secrets, telemetry, the store wrapper,
//! locks, tasks, watchers, the worker pool, HTTP middleware and shutdown. The reference
//! application (`keel-app`) is built on top of it; the `keel` binary only wires the two.
//! `Platform` bundles the shared services into the one value passed around at run time.

pub mod backoff;
pub mod config;
pub mod http;
pub mod jobs;
pub mod lock;
pub mod memory;
pub mod metrics;
pub mod placement;
pub mod platform;
pub mod readiness;
pub mod reload;
pub mod runtime_health;
pub mod secrets;
pub mod shutdown;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod validation;
pub mod watchers;
pub mod workers;

#[cfg(test)]
mod fuzz_tests;

pub use platform::Platform;
