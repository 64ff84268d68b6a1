//! Topic names, filters, the subscription trie and the retained tree.
//!
//! - [`TopicName`] and [`TopicFilter`] are validated once, at decode time, so everything
//!   downstream can rely on the MQTT rules (§4.7) holding; both wrap a
//!   [`ByteString`](bytestring::ByteString) and so can point into the packet buffer.
//! - [`SubscriptionFilter`] splits a SUBSCRIBE filter into an optional [`ShareGroup`] and the
//!   [`TopicFilter`] that is actually matched (§4.8.2).
//! - [`filter_matches`] is the plain, obviously-correct matcher; the two trees below are
//!   tested against it.
//! - [`SubscriptionTrie`] answers "who is subscribed to this topic" on every PUBLISH without
//!   allocating; [`RetainedTree`] answers "which retained messages does this new
//!   subscription get".
//! - [`check_limits`] applies broker limits tighter than the protocol's (AWS IoT Core's 256
//!   bytes / 8 levels).
//!
//! Nothing here does I/O or needs a runtime; nothing here panics on bad input.

/// Seeded per process (so a peer cannot pick colliding topic levels) and several times
/// faster than the standard SipHash on short keys such as topic levels.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[macro_use]
mod str_newtype;
mod error;
mod filter;
mod matching;
mod name;
mod retained;
mod shared;
mod stack;
mod trie;

pub use error::TopicError;
pub use filter::TopicFilter;
pub use matching::{check_limits, filter_matches, AWS_MAX_TOPIC_BYTES, AWS_MAX_TOPIC_LEVELS};
pub use name::{TopicName, MAX_TOPIC_BYTES};
pub use retained::RetainedTree;
pub use shared::{ShareGroup, SubscriptionFilter, SHARE_PREFIX};
pub use trie::SubscriptionTrie;
