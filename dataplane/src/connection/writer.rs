//! The writer task of a connection: whatever the shard encoded since the last write goes out
//! in one write call, so a burst of deliveries costs one syscall, not one per message.

use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;

use super::handle::{ConnHandle, Kill};
use super::io::Half;
use crate::metrics::bump;
use crate::shard::Shard;

/// A write buffer bigger than this is freed when nothing else is waiting to be written.
const SPARE_KEEP_BYTES: usize = 4096;

/// Runs until the reader closes the connection (after draining what is pending), the
/// connection parks (`park.rs`), or the socket fails.
pub async fn run(shard: Rc<Shard>, conn: Rc<ConnHandle>, mut socket: Half) {
    let mut spare = BytesMut::new();
    loop {
        if !conn.take_pending(&mut spare) {
            if conn.closing() {
                break;
            }
            if conn.stop_writer.get() {
                // The reader parks the connection (`park.rs`); the socket stays open.
                return;
            }
            conn.writer_wake.notified().await;
            continue;
        }
        conn.writing.set(true);
        let written = socket.write_all(&spare).await;
        conn.writing.set(false);
        conn.active.set(true);
        if written.is_err() {
            conn.kill(Kill::WriteFailed);
            return;
        }
        bump(&shard.metrics.writes_total, 1);
        bump(&shard.metrics.bytes_out_total, spare.len() as u64);
        spare.clear();
        // Keep a large buffer only while the connection is busy: an idle one gives it back.
        if spare.capacity() > SPARE_KEEP_BYTES && !conn.has_pending() {
            spare = BytesMut::new();
        }
        if conn.wrote() {
            if let Some(key) = conn.session_key() {
                shard.refill(key);
            }
        }
    }
    let _ = socket.flush().await;
}
