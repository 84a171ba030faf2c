//! HTTP integration tests: the real server, in-process on 127.0.0.1:0 (`helpers::TestApp`,
//! started by `helpers::spawn_*`) or as the built `keel` binary (`helpers::KeelProcess`). One
//! test binary; one module per area. What every suite shares (`eventually`, temporary stores)
//! is in `tests/support/`.
//! Add a module per feature (`items.rs`, `auth.rs`, …) and declare it here.

mod api_support;
mod helpers;
#[path = "../support/mod.rs"]
mod support;

mod background;
mod background_roles;
mod binary_config;
mod binary_runtime;
mod binary_serve;
mod chassis_errors;
mod chassis_headers;
mod connections;
mod migrate;
mod probes;
mod request_id;
mod telemetry;

// The API.
mod auth;
mod contract;
mod input_hygiene;
mod items;
mod openapi;
mod ops;
mod orders;
mod rate_limits;

// MongoDB only: two replicas on one database; a server that fails.
mod mongo_faults;
mod replicas;
mod surveys;
