//! Integration tests of keel's background work on a real store: locks, the job queue, the
//! watcher runtime and the task runner, on a temporary embedded store, and the cases written
//! with `helpers::on_every_backend` on MongoDB too when `KEEL_TEST_MONGODB_URL` is set. One
//! binary (`cargo test -p keel --test background`); the worker pool's tests need no store and
//! live beside its code.

mod helpers;
#[path = "../support/mongodb.rs"]
mod mongodb_support;

mod jobs;
mod locks;
mod tasks;
mod watchers;
