//! Integration tests of keel's background work on a real store: locks, the job queue, the
//! watcher runtime and the task runner, each on a temporary embedded store and then, when
//! `KEEL_TEST_MONGODB_URL` is set, on a fresh MongoDB database (`support::store::on_every_backend`).
//! One binary (`cargo test -p keel --test background`); the worker pool's tests need no store
//! and live beside its code.

#[path = "../support/mod.rs"]
mod support;

mod jobs;
mod locks;
mod tasks;
mod watchers;
