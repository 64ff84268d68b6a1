//! The channels between shards: one bounded single-producer/single-consumer channel per
//! ordered pair, created up front and handed to each shard by index.
//!
//! glommio's own `MeshBuilder` is not used: it shares an `Rc` between the shard threads
//! while they join, and the two threads' reference-count updates race (AddressSanitizer
//! caught it freeing the mesh's peer list under the other shard, which corrupted the heap at
//! start-up). `shared_channel::new_bounded` gives each side its own handle, moved, never
//! shared, into the thread that connects it.

use std::sync::Mutex;

use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};

use super::mesh::Batch;

/// What one shard takes at start-up: a sender to every peer, a receiver from every peer.
pub struct ShardLinks {
    /// Indexed by peer shard; `None` at this shard's own index.
    pub senders: Vec<Option<SharedSender<Batch>>>,
    /// (peer shard, receiver of what that peer sends here).
    pub receivers: Vec<(usize, SharedReceiver<Batch>)>,
}

pub struct Links {
    by_shard: Mutex<Vec<Option<ShardLinks>>>,
}

impl Links {
    /// Channels for `shards` shards, each holding `capacity` batches.
    pub fn new(shards: usize, capacity: usize) -> Links {
        let mut by_shard: Vec<ShardLinks> = (0..shards)
            .map(|_| ShardLinks {
                senders: (0..shards).map(|_| None).collect(),
                receivers: Vec::new(),
            })
            .collect();
        for from in 0..shards {
            for to in 0..shards {
                if from == to {
                    continue;
                }
                let (tx, rx) = shared_channel::new_bounded(capacity);
                by_shard[from].senders[to] = Some(tx);
                by_shard[to].receivers.push((from, rx));
            }
        }
        Links {
            by_shard: Mutex::new(by_shard.into_iter().map(Some).collect()),
        }
    }

    /// The links of shard `index`, once.
    pub fn take(&self, index: usize) -> Option<ShardLinks> {
        self.by_shard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(index)
            .and_then(Option::take)
    }
}
