//! Per-shard counters: plain cells, touched only by their shard, summed when scraped.

use std::cell::Cell;

#[derive(Default)]
pub struct Metrics {
    pub connections: Cell<u64>,
    pub messages_in: Cell<u64>,
    pub messages_out: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub dropped_qos0: Cell<u64>,
    pub dropped_queue_full: Cell<u64>,
    pub dropped_expired: Cell<u64>,
}

pub fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get().wrapping_add(by));
}
