//! The device shadow service: AWS IoT's reserved shadow topics and REST calls, answered by
//! the shard that owns the thing, durable in that shard's log before anything is
//! acknowledged.
//!
//! ```text
//! PUBLISH $aws/things/T/shadow/update ──▶ any shard ──(mesh, if not the owner)──▶ owner shard
//! POST /things/T/shadow (REST) ─────────▶ any shard ──────────────────────────────▶ owner shard
//!   owner: document algebra (core::shadow) ─▶ memory + log append ─▶ group commit (fsync off
//!   the shard thread) ─▶ answers: published through the broker (/accepted, /delta,
//!   /documents, /rejected) and, for REST, a reply to the asking shard
//! ```
//!
//! - `topics`: the request and response topics.
//! - `store`: the owner's shadows in memory and their log.
//! - `service`: applying requests, holding answers until the log is durable.
//! - The shard glue (routing requests to the owner, the commit task, sending answers) is in
//!   `shard/shadows.rs`.

pub mod service;
pub mod store;
pub mod topics;

use iotcore_core::shadow::ThingName;

use crate::ids::ShardId;

/// The shard that owns a thing's shadows (classic and named together, so listing a thing's
/// named shadows is local). The hash is fixed (CRC-32) because each shard's log holds its
/// own things: a restart must find them on the same shard.
pub fn owner_of(thing: &ThingName, shards: usize) -> ShardId {
    owner_of_name(thing.as_str(), shards)
}

/// `owner_of` for a name not (yet) checked as a thing name: a client id, say.
pub fn owner_of_name(name: &str, shards: usize) -> ShardId {
    let hash = crc32fast::hash(name.as_bytes()) as usize;
    ShardId(hash % shards.max(1))
}

/// Seconds since the Unix epoch, the unit of AWS shadow timestamps.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
