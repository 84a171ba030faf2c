//! Integration tests of keel's deployment: the files under `deploy/`, `deny.toml` and `.ci/run`
//! are parsed and checked for the settings production relies on, and the behaviours they rely
//! on in the built `keel` binary are exercised as a process manager would (signals, two
//! processes on one port).
//!
//! No Docker engine runs where these tests run, so the Dockerfile and Compose files are checked
//! statically here (and linted by hadolint in `.ci/run`); docs/deploy.md says so.

mod compose;
mod dockerfile;
mod docs;
mod handover;
mod helpers;
mod process;
mod reload;
mod secrets;
mod supply_chain;
#[path = "../support/mod.rs"]
mod support;
mod systemd;
