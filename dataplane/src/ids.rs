//! Identifier newtypes of the data plane.

use std::sync::Arc;

/// Index of a shard: one thread, one glommio executor, one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub usize);

/// A session's key inside its shard; never reused within a process, so a stale key held by a
/// timer can never reach a newer session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey(pub u64);

/// An MQTT client identifier, validated for length at CONNECT. 16 bytes (a `ByteString`
/// was 32): every session, connection, directory entry and message holds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(Arc<str>);

impl ClientId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ClientId {
    fn from(s: &str) -> Self {
        ClientId(Arc::from(s))
    }
}

impl From<String> for ClientId {
    fn from(s: String) -> Self {
        ClientId(Arc::from(s))
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
