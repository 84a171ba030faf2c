//! keel: the platform half of a production backend (the guides' `globals/server_modules`).
//!
//! Everything here is domain-free: configuration and secrets, telemetry, the store wrapper,
//! locks, tasks, watchers, the worker pool, HTTP middleware and shutdown. The reference
//! application (`keel-app`) is built on top of it; the `keel` binary only wires the two.

// Until the foundation's `http` module lands, the API's HTTP pieces are declared inline here;
// after the merge these become `pub mod …` lines in `http/mod.rs`.
pub mod http {
    pub mod session;
}
pub mod secrets;
pub mod store;
pub mod validation;
