//! keel's allocator: mimalloc for ordinary blocks, the kernel directly for large ones.
//!
//! A request allocates and frees hundreds of small blocks; mimalloc does that in a fraction of
//! glibc malloc's instructions (`docs/performance.md`). But mimalloc keeps freed memory in the
//! freeing thread's heap until that thread allocates again, and the few large blocks keel makes
//! — argon2's 19 MiB per password hash, on a blocking thread that then idles — stayed resident
//! (+16 MiB RSS after a single registration). Blocks of `LARGE` bytes and more are therefore
//! mapped with `mmap` and returned with `munmap` the moment they are freed.
//!
//! Small blocks go to mimalloc's C functions directly. The `mimalloc` crate hands every block to
//! `mi_malloc_aligned`, whose generic path over-allocates and realigns anything above 1 KiB:
//! half of mimalloc's instructions in a health request (`docs/performance.md`). `mi_malloc`
//! aligns every block to 16 bytes (`MI_MAX_ALIGN_SIZE`), or to its size below that, which is
//! all a layout of alignment ≤ 16 asks for (a size is a multiple of its alignment); only more
//! aligned layouts take the aligned functions.
//!
//! Each async runtime thread also hands back what mimalloc keeps for it (`collect_retained`,
//! run as the thread parks, at most once per `COLLECT_EVERY`). A block freed by a thread other
//! than the one that made it goes onto its page's list of remote frees, and mimalloc's ordinary
//! housekeeping does not revisit pages it counts as full: with the metrics sampler's snapshots
//! made on one worker and dropped on the other, an idle process grew 0.6–1.8 MiB of
//! anonymous memory a minute, without end, while its live heap (heaptrack, with the system allocator)
//! stayed flat. A forced collection on each thread returns those pages (`docs/performance.md`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::time::{Duration, Instant};

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// Blocks at least this big are mapped from the kernel.
const LARGE: usize = 1 << 20;
/// `mmap` returns page-aligned memory; a block needing more alignment stays with mimalloc.
const PAGE: usize = 4096;
/// The alignment of every `mi_malloc` block of at least this size (`MI_MAX_ALIGN_SIZE`).
const MI_ALIGN: usize = 16;

pub struct KeelAllocator;

/// The shortest time between two collections on one thread.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

// mimalloc's `mi_collect`, in the library `libmimalloc-sys` builds and links (its binding sits
// behind the crate's `extended` feature, which would add a dependency for this one function).
// SAFETY: the signature is mimalloc's own, `void mi_collect(bool force)` (`mimalloc.h`).
unsafe extern "C" {
    /// Frees what the calling thread's heap holds and no block uses; `force` also visits full
    /// pages (collecting their remote frees) and purges freed memory at once.
    fn mi_collect(force: bool);
}

/// Run by every async runtime thread as it parks (`start_process`), and by the store's writer
/// and blocking read threads as they fall idle (`keel::memory`): a forced mimalloc
/// collection of this thread's heap, at most once per `COLLECT_EVERY`. A parking thread has
/// nothing to run; a task that becomes ready during the collection (a walk over the thread's
/// pages, and `madvise` for what it frees) waits for it. Between collections a park costs a
/// clock read.
pub fn collect_retained() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let due = LAST.with(|last| {
        let due = is_due(last.get(), now);
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        // SAFETY: a plain C call on the calling thread's own heap, which mimalloc allows at
        // any time.
        unsafe { mi_collect(true) };
    }
}

/// Whether a collection is due `now`, the previous one having run at `previous`.
fn is_due(previous: Option<Instant>, now: Instant) -> bool {
    previous.is_none_or(|at| now.duration_since(at) >= COLLECT_EVERY)
}

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

/// Whether `mi_malloc`'s own alignment is enough for `layout`.
fn is_plain(layout: &Layout) -> bool {
    layout.align() <= MI_ALIGN
}

/// Fresh zeroed pages for `size` bytes, or null.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory; failure is reported as MAP_FAILED and turned into null.
    let mapped = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        mapped.cast()
    }
}

// SAFETY: every block is freed by the allocator that made it: the choice depends only on the
// layout, which the caller passes unchanged to `dealloc`/`realloc` (GlobalAlloc's contract).
unsafe impl GlobalAlloc for KeelAllocator {
    // SAFETY: called under GlobalAlloc's contract (see the impl's comment).
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            return map(layout.size());
        }
        // SAFETY: plain C allocation calls with a non-zero size (GlobalAlloc's contract); the
        // block is aligned as `layout` asks (see the module comment).
        unsafe {
            if is_plain(&layout) {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    // SAFETY: called under GlobalAlloc's contract (see the impl's comment).
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            return map(layout.size()); // anonymous pages are zeroed by the kernel
        }
        // SAFETY: as in `alloc`.
        unsafe {
            if is_plain(&layout) {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    // SAFETY: called under GlobalAlloc's contract (see the impl's comment).
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(&layout) {
            // SAFETY: `block` was mapped by `map` with this size (same layout) and is unmapped
            // once; nothing else refers to the range.
            unsafe { libc::munmap(block.cast(), layout.size()) };
            return;
        }
        // SAFETY: a small block of this layout came from mimalloc (plain or aligned: `mi_free`
        // takes both).
        unsafe { mi_free(block.cast::<c_void>()) }
    }

    // SAFETY: called under GlobalAlloc's contract (see the impl's comment).
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, fits an isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(&layout), is_large(&new_layout)) {
            // SAFETY: a small block stays with mimalloc, which made it; the moved block keeps
            // the layout's alignment.
            (false, false) => unsafe {
                if is_plain(&layout) {
                    mi_realloc(block.cast(), new_size).cast()
                } else {
                    mi_realloc_aligned(block.cast(), new_size, layout.align()).cast()
                }
            },
            (true, true) => {
                // SAFETY: `block` is a mapping of `layout.size()` bytes made by `map`; the
                // kernel moves or grows it, keeping its contents.
                let moved = unsafe {
                    libc::mremap(block.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                };
                if moved == libc::MAP_FAILED {
                    ptr::null_mut()
                } else {
                    moved.cast()
                }
            }
            _ => {
                // SAFETY: `new_layout` has a non-zero size (GlobalAlloc's contract for realloc).
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks are live, distinct, and at least `min` bytes long;
                    // the old one is then freed with its own layout.
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(block: *mut u8, len: usize) {
        for i in 0..len {
            // SAFETY: the test's blocks are at least `len` bytes.
            unsafe { *block.add(i) = (i % 251) as u8 };
        }
    }

    fn holds_pattern(block: *const u8, len: usize) -> bool {
        // SAFETY: as in `fill`.
        (0..len).all(|i| unsafe { *block.add(i) } == (i % 251) as u8)
    }

    #[test]
    fn blocks_keep_their_bytes_across_every_kind_of_realloc() {
        let allocator = KeelAllocator;
        // small → large → larger → small, crossing the threshold both ways.
        let sizes = [1000, LARGE + 10, 3 * LARGE, 500];
        let mut layout = Layout::from_size_align(sizes[0], 8).unwrap();
        // SAFETY: non-zero size; every later call passes the block's current layout.
        let mut block = unsafe { allocator.alloc(layout) };
        assert!(!block.is_null());
        fill(block, layout.size());
        for &size in &sizes[1..] {
            let kept = layout.size().min(size);
            // SAFETY: `block` is live with `layout`.
            block = unsafe { allocator.realloc(block, layout, size) };
            assert!(!block.is_null());
            assert!(holds_pattern(block, kept), "realloc to {size} lost bytes");
            layout = Layout::from_size_align(size, 8).unwrap();
            fill(block, size);
        }
        // SAFETY: `block` is live with `layout`.
        unsafe { allocator.dealloc(block, layout) };
    }

    #[test]
    fn large_zeroed_blocks_are_zero_and_page_aligned() {
        let allocator = KeelAllocator;
        let layout = Layout::from_size_align(2 * LARGE, 64).unwrap();
        // SAFETY: non-zero size, freed below with the same layout.
        let block = unsafe { allocator.alloc_zeroed(layout) };
        assert!(!block.is_null());
        assert_eq!(block as usize % PAGE, 0);
        // SAFETY: the block is `2 * LARGE` bytes.
        assert!((0..layout.size()).all(|i| unsafe { *block.add(i) } == 0));
        // SAFETY: live, same layout.
        unsafe { allocator.dealloc(block, layout) };
    }

    #[test]
    fn every_block_has_the_alignment_its_layout_asks_for() {
        let allocator = KeelAllocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 16, 24, 100, 1000, 1025, 5000, 70_000] {
                let Ok(layout) = Layout::from_size_align(size.max(align), align) else {
                    continue;
                };
                // SAFETY: non-zero sizes; each block is freed with the layout it has.
                unsafe {
                    let block = allocator.alloc(layout);
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(block as usize % align, 0, "alloc {layout:?}");
                    assert_eq!(zeroed as usize % align, 0, "alloc_zeroed {layout:?}");
                    assert!((0..layout.size()).all(|i| *zeroed.add(i) == 0));
                    let grown = allocator.realloc(block, layout, layout.size() * 3);
                    assert_eq!(grown as usize % align, 0, "realloc {layout:?}");
                    let grown_layout = Layout::from_size_align(layout.size() * 3, align).unwrap();
                    allocator.dealloc(grown, grown_layout);
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }

    #[test]
    fn collection_runs_at_most_once_per_interval_per_thread() {
        let start = Instant::now();
        assert!(is_due(None, start), "a thread's first park collects");
        assert!(!is_due(Some(start), start + COLLECT_EVERY / 2));
        assert!(is_due(Some(start), start + COLLECT_EVERY));
    }

    #[test]
    fn blocks_freed_by_another_thread_survive_a_collection_of_their_owner() {
        // Blocks made here and freed on another thread land on remote-free lists, which the
        // forced collection here walks; the blocks still in use on the same pages must keep
        // their bytes. (How much memory it returns is measured, not tested: docs/performance.md.)
        let allocator = KeelAllocator;
        let layout = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: non-zero size; each block is freed once, with its layout.
        let blocks: Vec<usize> = (0..4096)
            .map(|_| unsafe { allocator.alloc(layout) } as usize)
            .collect();
        for &block in &blocks {
            fill(block as *mut u8, layout.size());
        }
        let (freed, kept) = blocks.split_at(2048);
        let freed = freed.to_vec();
        std::thread::spawn(move || {
            for block in freed {
                // SAFETY: live blocks of `layout`, freed once.
                unsafe { KeelAllocator.dealloc(block as *mut u8, layout) };
            }
        })
        .join()
        .unwrap();
        collect_retained();
        for &block in kept {
            assert!(holds_pattern(block as *const u8, layout.size()));
            // SAFETY: live, same layout.
            unsafe { allocator.dealloc(block as *mut u8, layout) };
        }
    }
}
