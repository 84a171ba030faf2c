//! Handing back what the process allocator keeps for a thread, from keel's own threads.
//!
//! The binary's allocator (mimalloc, `keel-cli/src/alloc.rs`) keeps the pages a thread freed for
//! that thread to reuse. The async runtime's threads hand them back as they park; the store's
//! writer thread and the blocking threads that run long reads never park that way, and after a
//! background task's run under a load they held part of the step in resident memory that run
//! left (`docs/performance.md`, round 18). This crate does not know the allocator, so the binary
//! registers its collection here once at start-up, and those threads call
//! [`collect_thread_retained`] when they fall idle. Without a registration (tests, other
//! binaries) the call does nothing.

use std::sync::OnceLock;

static COLLECTOR: OnceLock<fn()> = OnceLock::new();

/// Registers the allocator's per-thread collection (the first registration wins). It must be
/// cheap when called often: keel calls it after every long read and whenever the writer's
/// queue empties.
pub fn set_thread_collector(collect: fn()) {
    let _ = COLLECTOR.set(collect);
}

/// Runs the registered collection on the calling thread, if any.
pub fn collect_thread_retained() {
    if let Some(collect) = COLLECTOR.get() {
        collect();
    }
}

/// The one collection every test in this crate registers (the first registration wins, so
/// tests must agree on it): it counts the calls on each thread.
#[cfg(test)]
pub(crate) mod counting {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex, MutexGuard};
    use std::thread::ThreadId;

    static CALLS: LazyLock<Mutex<HashMap<ThreadId, usize>>> = LazyLock::new(Mutex::default);

    fn calls() -> MutexGuard<'static, HashMap<ThreadId, usize>> {
        CALLS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count() {
        *calls().entry(std::thread::current().id()).or_default() += 1;
    }

    /// Registers the counting collection (once; later calls change nothing).
    pub fn register() {
        super::set_thread_collector(count);
    }

    /// How many collections ran so far on `thread`.
    pub fn calls_on(thread: ThreadId) -> usize {
        calls().get(&thread).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registered_collection_runs_and_the_first_registration_stays() {
        counting::register();
        set_thread_collector(|| panic!("a second registration must not replace the first"));
        let here = std::thread::current().id();
        let before = counting::calls_on(here);
        collect_thread_retained();
        assert_eq!(counting::calls_on(here), before + 1);
    }
}
