//! The allocator: mimalloc, with a second heap for what lives as long as a connection.
//!
//! Giving freed memory back: mimalloc returns the pages it no longer uses lazily, from
//! within its own calls: a shard that parked thousands of connections
//! (`connection/park.rs`) and then went quiet kept their freed tasks' pages resident (56 MB
//! against 43 MB with 10,000 parked connections, `iotcore-bench run --scenario
//! connections`, bench/results session 6).
//!
//! Keeping long-lived objects apart: a connection's handle, its session slot and what it
//! keeps while parked are allocated while its streams, polls and tasks are, and from the
//! same size classes. Once those transient objects are freed, every page still holding one
//! long-lived object stays resident: with 10,000 parked connections that was ~200 bytes per
//! connection of pages mostly empty (`perf/idle_memory.sh`, session 6). Objects built inside
//! [`long_lived`] come from a heap of their own (mimalloc keeps each heap's blocks in pages
//! of their own), so they pack densely and the transient pages empty out completely.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

extern "C" {
    /// mimalloc's own: collects the calling thread's heap; `force` also frees what other
    /// threads freed into it and abandoned segments.
    fn mi_collect(force: bool);
    fn mi_malloc(size: usize) -> *mut c_void;
    fn mi_zalloc(size: usize) -> *mut c_void;
    fn mi_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn mi_free(p: *mut c_void);
    /// A first-class heap, usable from any thread (mimalloc 3).
    fn mi_heap_new() -> *mut c_void;
    fn mi_heap_delete(heap: *mut c_void);
    fn mi_heap_malloc(heap: *mut c_void, size: usize) -> *mut c_void;
    fn mi_heap_zalloc(heap: *mut c_void, size: usize) -> *mut c_void;
}

/// The heap for long-lived objects, created by the first [`long_lived`] call.
static LONG_LIVED_HEAP: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    /// Set while the calling thread runs a [`long_lived`] closure. No destructor and a
    /// constant initialiser: reading it allocates nothing, as the allocator requires.
    static IN_LONG_LIVED: Cell<bool> = const { Cell::new(false) };
}

/// The global allocator: mimalloc, from the long-lived heap inside [`long_lived`].
///
/// Word-aligned requests (nearly all) go to `mi_malloc`, not `mi_malloc_aligned` as the
/// `mimalloc` crate does. Every mimalloc block is word-aligned, and in mimalloc 3.3 an
/// aligned request whose size class is not a power of two, finding no free block in that
/// class's page, is over-allocated into the next class, so the class never gets a page of
/// its own: every 96-byte object took a 112-byte block, every 192-byte one a 224-byte
/// block, each through the slow path (`requests_get_their_own_size_class` below).
pub struct ShardAllocator;

/// Alignment every mimalloc block has.
const WORD: usize = std::mem::size_of::<usize>();

impl ShardAllocator {
    /// The long-lived heap if the calling thread is inside [`long_lived`].
    #[inline]
    fn long_lived_heap() -> Option<*mut c_void> {
        if IN_LONG_LIVED.with(Cell::get) {
            let heap = LONG_LIVED_HEAP.load(Ordering::Acquire);
            (!heap.is_null()).then_some(heap)
        } else {
            None
        }
    }
}

// SAFETY: every allocation comes from mimalloc (its main heap or the long-lived one), and
// with at least the layout's alignment: word-aligned layouts from the plain entry points
// (mimalloc's blocks are all word-aligned), others from the aligned ones. `mi_free` and
// `mi_realloc` accept blocks of any heap, from any thread.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for ShardAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > WORD {
            // SAFETY: the caller's contract, passed on.
            return unsafe { mimalloc::MiMalloc.alloc(layout) };
        }
        // SAFETY: mimalloc's entry points; a heap from `mi_heap_new`, never deleted once
        // published.
        unsafe {
            match Self::long_lived_heap() {
                Some(heap) => mi_heap_malloc(heap, layout.size()) as *mut u8,
                None => mi_malloc(layout.size()) as *mut u8,
            }
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() > WORD {
            // SAFETY: the caller's contract, passed on.
            return unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        }
        // SAFETY: as in `alloc`.
        unsafe {
            match Self::long_lived_heap() {
                Some(heap) => mi_heap_zalloc(heap, layout.size()) as *mut u8,
                None => mi_zalloc(layout.size()) as *mut u8,
            }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller's contract; mimalloc frees blocks of any of its heaps.
        unsafe { mi_free(ptr as *mut c_void) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A grown block comes from the main heap: what grows is not what this heap is for.
        if layout.align() > WORD {
            // SAFETY: the caller's contract, passed on.
            return unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller's contract; word alignment holds for any mimalloc block.
        unsafe { mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
    }
}

/// Runs `build` with its allocations coming from the long-lived heap. Keep `build` to the
/// construction of the object itself: temporaries made inside it land there too.
pub fn long_lived<T>(build: impl FnOnce() -> T) -> T {
    if LONG_LIVED_HEAP.load(Ordering::Acquire).is_null() {
        // SAFETY: mimalloc's constructor for a heap; a heap that lost the race below is
        // deleted unused.
        #[allow(unsafe_code)]
        unsafe {
            let heap = mi_heap_new();
            if !heap.is_null()
                && LONG_LIVED_HEAP
                    .compare_exchange(
                        std::ptr::null_mut(),
                        heap,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_err()
            {
                mi_heap_delete(heap);
            }
        }
    }
    /// Puts the flag back however `build` ends (it may panic).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_LONG_LIVED.with(|f| f.set(self.0));
        }
    }
    let _restore = Restore(IN_LONG_LIVED.with(|f| f.replace(true)));
    build()
}

/// The long-lived heap, for the census (`census.rs`); null before the first use.
#[cfg(feature = "alloc-census")]
pub fn long_lived_heap() -> *mut c_void {
    LONG_LIVED_HEAP.load(Ordering::Acquire)
}

/// Returns the calling thread's free pages to the system. Walks the thread's heap: call it
/// after freeing much, not per operation.
pub fn give_back_free_memory() {
    // SAFETY: an entry point of the allocator this binary links (the global allocator is
    // mimalloc, also in the census build), taking a plain flag, callable on any thread.
    #[allow(unsafe_code)]
    unsafe {
        mi_collect(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" {
        fn mi_heap_contains(heap: *const c_void, p: *const c_void) -> bool;
    }

    fn in_long_lived_heap<T>(b: &T) -> bool {
        let heap = LONG_LIVED_HEAP.load(Ordering::Acquire);
        // SAFETY: a query of mimalloc's on a live block and a live heap.
        #[allow(unsafe_code)]
        unsafe {
            mi_heap_contains(heap, b as *const T as *const c_void)
        }
    }

    #[test]
    fn long_lived_objects_come_from_their_own_heap() {
        let kept = long_lived(|| Box::new([7u8; 200]));
        let other = Box::new([7u8; 200]);
        assert!(in_long_lived_heap(&*kept));
        assert!(!in_long_lived_heap(&*other));
        // Freed like any other block, and the flag is off again after the closure.
        drop(kept);
        let after = Box::new(1u64);
        assert!(!in_long_lived_heap(&*after));
    }

    extern "C" {
        fn mi_heap_malloc_aligned(heap: *mut c_void, size: usize, align: usize) -> *mut c_void;
        fn mi_usable_size(p: *const c_void) -> usize;
    }

    /// The class a request lands in, from a fresh heap (as the long-lived one starts).
    #[allow(unsafe_code)]
    fn class_of(size: usize, aligned: bool) -> usize {
        // SAFETY: a fresh heap and one block, both freed right after.
        unsafe {
            let heap = mi_heap_new();
            let p = if aligned {
                mi_heap_malloc_aligned(heap, size, WORD)
            } else {
                mi_heap_malloc(heap, size)
            };
            let class = mi_usable_size(p);
            mi_free(p);
            mi_heap_delete(heap);
            class
        }
    }

    /// Why word-aligned requests skip the aligned entry points (see `ShardAllocator`), and
    /// the classes `connection/park.rs` fits what a parked connection keeps to.
    #[test]
    fn requests_get_their_own_size_class() {
        for (size, class) in [(88, 96), (96, 96), (192, 192), (248, 256)] {
            assert_eq!(class_of(size, false), class, "{size} bytes");
        }
        // What the `mimalloc` crate's entry point does with the same requests. If this
        // fails, a mimalloc update fixed it, and the plain path is merely not needed.
        assert_eq!(class_of(96, true), 112);
        assert_eq!(class_of(192, true), 224);
    }

    #[test]
    fn every_block_has_the_alignment_asked_for() {
        for size in [1, 8, 12, 24, 40, 96, 200, 4000, 70_000] {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).expect("a valid layout");
                // SAFETY: a non-zero layout, freed with the same layout.
                #[allow(unsafe_code)]
                unsafe {
                    let p = ShardAllocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "{size} bytes aligned {align}");
                    let q = ShardAllocator.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0, "{size} bytes aligned {align}, grown");
                    ShardAllocator.dealloc(
                        q,
                        Layout::from_size_align(size * 3, align).expect("a valid layout"),
                    );
                }
            }
        }
    }

    #[test]
    fn the_flag_is_restored_after_a_panic() {
        let _ = std::panic::catch_unwind(|| long_lived(|| panic!("in build")));
        let after = Box::new(1u64);
        assert!(!in_long_lived_heap(&*after));
    }
}
