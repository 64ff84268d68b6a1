//! Giving freed memory back to the system.
//!
//! mimalloc returns the pages it no longer uses lazily, from within its own calls: a shard
//! that parked thousands of connections (`connection/park.rs`) and then went quiet kept their
//! freed tasks' pages resident (56 MB against 43 MB with 10,000 parked connections,
//! `iotcore-bench run --scenario connections`, bench/results session 6).

extern "C" {
    /// mimalloc's own: collects the calling thread's heap; `force` also frees what other
    /// threads freed into it and abandoned segments.
    fn mi_collect(force: bool);
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
