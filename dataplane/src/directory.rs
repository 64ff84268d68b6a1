//! Which shard holds the session of each client id, across the whole process.
//!
//! This is the one structure shared by all shards behind a lock. It is touched only when a
//! client connects or a session ends, never on the publish path, and each touch is a single
//! hash-map operation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::ids::{ClientId, SessionKey, ShardId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub shard: ShardId,
    pub key: SessionKey,
}

/// An `Owner` in 8 bytes: the shard in the top 16 bits, the key below. Keys come from one
/// counter per process, one per connect: 2^48 of them is 89 years at 100,000 connects a
/// second. The map holds an entry per client id, so 8 bytes less an entry was 13 bytes less
/// per idle connection (its room included).
#[derive(Clone, Copy, PartialEq, Eq)]
struct PackedOwner(u64);

const KEY_BITS: u32 = 48;

impl PackedOwner {
    fn new(owner: Owner) -> PackedOwner {
        PackedOwner(((owner.shard.0 as u64) << KEY_BITS) | (owner.key.0 & ((1 << KEY_BITS) - 1)))
    }
    fn owner(self) -> Owner {
        Owner {
            shard: ShardId((self.0 >> KEY_BITS) as usize),
            key: self.key(),
        }
    }
    fn key(self) -> SessionKey {
        SessionKey(self.0 & ((1 << KEY_BITS) - 1))
    }
}

pub struct Directory {
    owners: Mutex<HashMap<ClientId, PackedOwner>>,
    next_key: AtomicU64,
    /// Persistent sessions on the session logs of all shards: while there are none, a QoS 1
    /// publish needs no acknowledgement from the shards it is delivered on.
    persistent: AtomicUsize,
    /// Numbers for messages queued in persistent sessions. Starting from the clock (in
    /// 1/16 µs) keeps them increasing across restarts.
    next_seq: AtomicU64,
}

impl Default for Directory {
    fn default() -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64 * 16);
        Directory {
            owners: Mutex::default(),
            next_key: AtomicU64::new(0),
            persistent: AtomicUsize::new(0),
            next_seq: AtomicU64::new(start),
        }
    }
}

impl Directory {
    fn owners(&self) -> MutexGuard<'_, HashMap<ClientId, PackedOwner>> {
        // A panic elsewhere while holding the lock leaves the map itself consistent (every
        // operation is a single insert or remove), so poisoning is ignored.
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `shard` as the owner of `client` under a fresh key; returns the key and the
    /// previous owner, whose session must be taken over.
    pub fn claim(&self, client: &ClientId, shard: ShardId) -> (SessionKey, Option<Owner>) {
        let key = SessionKey(self.next_key.fetch_add(1, Ordering::Relaxed) + 1);
        let owner = PackedOwner::new(Owner { shard, key });
        let previous = self.owners().insert(client.clone(), owner);
        // The key as stored: equal to `key` for the first 2^48 connects.
        (owner.key(), previous.map(PackedOwner::owner))
    }

    /// Forgets `client` if `key` is still its current session.
    pub fn release(&self, client: &ClientId, key: SessionKey) {
        let mut owners = self.owners();
        if owners.get(client).is_some_and(|o| o.key() == key) {
            owners.remove(client);
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn persistent_sessions(&self) -> usize {
        self.persistent.load(Ordering::Acquire)
    }

    pub fn persistent_added(&self, n: usize) {
        self.persistent.fetch_add(n, Ordering::AcqRel);
    }

    pub fn persistent_removed(&self) {
        let _ = self
            .persistent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn is_current(&self, client: &ClientId, key: SessionKey) -> bool {
        self.owners().get(client).is_some_and(|o| o.key() == key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.owners().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_returns_the_first_owner_and_release_of_a_stale_key_is_ignored() {
        let d = Directory::default();
        let c = ClientId::from("c");
        let (k1, prev) = d.claim(&c, ShardId(0));
        assert!(prev.is_none());
        let (k2, prev) = d.claim(&c, ShardId(1));
        assert_eq!(
            prev,
            Some(Owner {
                shard: ShardId(0),
                key: k1
            })
        );
        d.release(&c, k1);
        assert!(d.is_current(&c, k2));
        d.release(&c, k2);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn an_owner_packs_and_unpacks() {
        for owner in [
            Owner {
                shard: ShardId(0),
                key: SessionKey(1),
            },
            Owner {
                shard: ShardId(65535),
                key: SessionKey((1 << 48) - 1),
            },
            Owner {
                shard: ShardId(3),
                key: SessionKey(123_456_789),
            },
        ] {
            assert_eq!(PackedOwner::new(owner).owner(), owner);
        }
    }
}
