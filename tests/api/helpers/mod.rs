//! Test harness: the application in this process (`TestApp`, `spawn_app`, `spawn_chassis`; its
//! HTTP methods are in `api_support.rs`) and the real binary (`KeelProcess`, `keel_command`).

mod app;
pub mod contract;
mod mongo_server;
mod process;

pub use app::{
    TestApp, http_client, spawn_app, spawn_app_with, spawn_chassis, spawn_chassis_with,
    spawn_full_app,
};
pub use mongo_server::TestMongoServer;
pub use process::{DEADLINE, KeelProcess, every_second_config, keel_command, repo_config_dir};
