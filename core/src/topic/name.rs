//! [`TopicName`]: the validated topic of a PUBLISH (no wildcards).

use std::borrow::Borrow;
use std::fmt;

use bytestring::ByteString;

use super::TopicError;

/// Largest topic an MQTT UTF-8 string can carry ([MQTT-4.7.3-3]).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Checks the rules shared by topic names, topic filters and share names: non-empty,
/// at most 65535 bytes, and no U+0000.
pub(crate) fn validate_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong { len: s.len() });
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Number of `/`-separated levels; `a//b` has three, `/` has two.
pub(crate) fn count_levels(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'/').count() + 1
}

/// A topic name as carried by PUBLISH (and wills): non-empty, no wildcards, no U+0000, at most
/// 65535 bytes.
///
/// It wraps a [`ByteString`] so a name decoded from a packet can keep pointing into the
/// packet's buffer instead of being copied; cloning is a reference-count bump. Note that this
/// also keeps that buffer alive for as long as the name lives.
///
/// `Hash`, `Eq` and `Ord` agree with `str`, so a `TopicName` can be looked up by `&str` in a map
/// (it implements `Borrow<str>`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates `s` as a topic name.
    pub fn new(s: ByteString) -> Result<Self, TopicError> {
        validate_common(&s)?;
        if s.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInTopicName);
        }
        Ok(Self(s))
    }

    /// Whether the topic starts with `$` (such as `$SYS/...`): these are not matched by filters
    /// that start with a wildcard ([MQTT-4.7.2-1]) and are usually server-only.
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with('$')
    }
}

str_newtype_impls!(TopicName);
