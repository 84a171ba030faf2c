//! Integration tests of keel's background work on a real (temporary, embedded) store: locks,
//! the job queue, the watcher runtime and the task runner. One binary (`cargo test -p keel
//! --test background`); the worker pool's tests need no store and live beside its code.

mod helpers;

mod jobs;
mod locks;
mod tasks;
mod watchers;
