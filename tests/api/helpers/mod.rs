//! Test harness: an in-process server (`spawn_app`, `spawn_chassis`) and the real binary
//! (`KeelProcess`, `keel_command`).

mod app;
pub mod contract;
mod mongo_server;
mod process;

pub use app::{
    TestApp, eventually, http_client, json, spawn_app, spawn_chassis, spawn_chassis_with,
    use_test_mongodb,
};
pub use mongo_server::TestMongoServer;
pub use process::{KeelProcess, keel_command, repo_config_dir};
