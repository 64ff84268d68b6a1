//! An allocation census for finding what an idle connection costs (`--features
//! alloc-census`, never in a normal build: it adds two atomic operations to every
//! allocation). Live allocations are counted by size class; with `IOTCORE_CENSUS=FILE` the
//! table is written to FILE every second. Two snapshots taken with and without N idle
//! connections, divided by N, give each connection's objects by size (`perf/README.md`).

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};

/// Size classes: 16-byte steps up to 1 KiB, then one class per power of two.
const SMALL: usize = 64;
const CLASSES: usize = SMALL + 48;

pub struct Census<A> {
    inner: A,
}

static LIVE: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
static BYTES: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

fn class(size: usize) -> usize {
    if size <= SMALL * 16 {
        size.saturating_sub(1) / 16
    } else {
        (SMALL + (usize::BITS - size.leading_zeros()) as usize).min(CLASSES - 1)
    }
}

impl<A> Census<A> {
    pub const fn new(inner: A) -> Self {
        Census { inner }
    }
}

// SAFETY: every call is passed to `inner` unchanged; the counters only observe.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for Census<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 1);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(layout.size(), -1);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 1);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(layout.size(), -1);
        note(new_size, 1);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize, by: i64) {
    let c = class(size);
    LIVE[c].fetch_add(by, Ordering::Relaxed);
    BYTES[c].fetch_add(by * size as i64, Ordering::Relaxed);
}

/// The table: class upper bound, live allocations, live bytes.
pub fn table() -> String {
    let mut out = String::from("class_le count bytes\n");
    for c in 0..CLASSES {
        let n = LIVE[c].load(Ordering::Relaxed);
        if n == 0 {
            continue;
        }
        let le = if c < SMALL {
            (c + 1) * 16
        } else {
            1 << (c - SMALL)
        };
        let _ = writeln!(out, "{le} {n} {}", BYTES[c].load(Ordering::Relaxed));
    }
    out
}

/// Writes the table to `IOTCORE_CENSUS` every second, if set.
pub fn start_writer() {
    let Some(path) = std::env::var_os("IOTCORE_CENSUS") else {
        return;
    };
    std::thread::spawn(move || loop {
        let _ = std::fs::write(&path, table());
        std::thread::sleep(std::time::Duration::from_secs(1));
    });
}

/// One size class's pages in a thread's heap: committed bytes and bytes in live blocks.
#[repr(C)]
struct HeapArea {
    blocks: *mut std::ffi::c_void,
    reserved: usize,
    committed: usize,
    /// Blocks in use (mimalloc's field is a count, whatever its header says).
    used: usize,
    block_size: usize,
    full_block_size: usize,
    reserved1: *mut std::ffi::c_void,
}

type Visitor = unsafe extern "C" fn(
    heap: *const std::ffi::c_void,
    area: *const HeapArea,
    block: *mut std::ffi::c_void,
    block_size: usize,
    arg: *mut std::ffi::c_void,
) -> bool;

extern "C" {
    fn mi_heap_main() -> *mut std::ffi::c_void;
    fn mi_heap_visit_blocks(
        heap: *const std::ffi::c_void,
        visit_all_blocks: bool,
        visitor: Visitor,
        arg: *mut std::ffi::c_void,
    ) -> bool;
}

#[allow(unsafe_code)]
unsafe extern "C" fn visit(
    _heap: *const std::ffi::c_void,
    area: *const HeapArea,
    block: *mut std::ffi::c_void,
    _block_size: usize,
    arg: *mut std::ffi::c_void,
) -> bool {
    if !block.is_null() {
        return true;
    }
    // SAFETY: mimalloc passes a valid area for the call, and `arg` is the map below.
    #[allow(unsafe_code)]
    let (area, sums) = unsafe {
        (
            &*area,
            &mut *(arg as *mut std::collections::BTreeMap<usize, (usize, usize, usize)>),
        )
    };
    let e = sums.entry(area.block_size).or_default();
    e.0 += area.committed;
    e.1 += area.used * area.block_size;
    e.2 += 1;
    true
}

/// The main and the long-lived heap by block size: committed bytes, bytes in live blocks, pages.
/// Written to `IOTCORE_CENSUS.<thread name>`.
pub fn write_heap_areas() {
    let Some(path) = std::env::var_os("IOTCORE_CENSUS") else {
        return;
    };
    let mut sums = std::collections::BTreeMap::<usize, (usize, usize, usize)>::new();
    // SAFETY: mimalloc's entry points; the visitor gets the map as its argument and the
    // heap is this thread's own.
    #[allow(unsafe_code)]
    unsafe {
        for heap in [mi_heap_main(), crate::heap::long_lived_heap()] {
            if !heap.is_null() {
                mi_heap_visit_blocks(
                    heap,
                    false,
                    visit,
                    &mut sums as *mut _ as *mut std::ffi::c_void,
                );
            }
        }
    }
    let mut out = String::from("block_size committed used pages\n");
    for (size, (committed, used, pages)) in sums {
        let _ = writeln!(out, "{size} {committed} {used} {pages}");
    }
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .replace('/', "_");
    let mut file = path;
    file.push(format!(".{name}"));
    let _ = std::fs::write(file, out);
}
