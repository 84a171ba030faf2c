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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn the_registered_collection_runs_and_the_first_registration_stays() {
        set_thread_collector(count);
        set_thread_collector(|| panic!("a second registration must not replace the first"));
        let before = CALLS.load(Ordering::SeqCst);
        collect_thread_retained();
        // Other tests' reads may call it too, at the same time.
        assert!(CALLS.load(Ordering::SeqCst) > before);
    }
}
