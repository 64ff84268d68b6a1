//! Shared subscriptions (MQTT 5 §4.8.2): `$share/{ShareName}/{filter}`.

use std::fmt;

use bytestring::ByteString;

use super::name::MAX_TOPIC_BYTES;
use super::{TopicError, TopicFilter};

/// The literal prefix that makes a SUBSCRIBE filter a shared subscription.
pub const SHARE_PREFIX: &str = "$share/";

/// The ShareName of a shared subscription: non-empty ([MQTT-4.8.2-1]) and without `/`, `+` or
/// `#` ([MQTT-4.8.2-2]). Subscribers with the same ShareName and filter form one group among
/// which each message is delivered once.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareGroup(ByteString);

impl ShareGroup {
    /// Validates `s` as a ShareName.
    pub fn new(s: ByteString) -> Result<Self, TopicError> {
        if s.is_empty() {
            return Err(TopicError::EmptyShareName);
        }
        if s.len() > MAX_TOPIC_BYTES {
            return Err(TopicError::TooLong { len: s.len() });
        }
        if s.bytes().any(|b| b == b'/' || b == b'+' || b == b'#') {
            return Err(TopicError::InvalidShareName);
        }
        if s.as_bytes().contains(&0) {
            return Err(TopicError::NullCharacter);
        }
        Ok(Self(s))
    }

    /// The ShareName as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying `ByteString`.
    pub fn as_bytestring(&self) -> &ByteString {
        &self.0
    }
}

impl fmt::Display for ShareGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ShareGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareGroup({:?})", self.as_str())
    }
}

impl TryFrom<&str> for ShareGroup {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(ByteString::from(s))
    }
}

/// A filter as it appears in a SUBSCRIBE packet: either an ordinary [`TopicFilter`] or a
/// shared subscription `$share/{group}/{filter}`.
///
/// Matching always uses [`SubscriptionFilter::filter`]; the group only decides delivery (one
/// member per group). Both parts are slices of the original string, so parsing does not copy.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionFilter {
    /// `Some` for `$share/{group}/...`.
    pub share_group: Option<ShareGroup>,
    /// The filter topics are matched against (for a shared subscription, the part after the
    /// ShareName).
    pub filter: TopicFilter,
}

impl SubscriptionFilter {
    /// Parses a SUBSCRIBE/UNSUBSCRIBE filter.
    ///
    /// Only the exact prefix `$share/` makes a shared subscription: `$share` alone and
    /// `$sharegroup/x` are ordinary filters (they start with `$`, so they are literal and
    /// valid). After the prefix come a non-empty ShareName, a `/`, and a non-empty valid topic
    /// filter; `$share/group` and `$share/group/` are errors ([MQTT-4.8.2-2]).
    pub fn parse(s: ByteString) -> Result<Self, TopicError> {
        let Some(rest) = s.strip_prefix(SHARE_PREFIX) else {
            return Ok(Self {
                share_group: None,
                filter: TopicFilter::new(s)?,
            });
        };
        // Whole-string rules first, so `$share/g/\0` reports the null and a 70 kB string
        // reports its length rather than some inner rule.
        if s.len() > MAX_TOPIC_BYTES {
            return Err(TopicError::TooLong { len: s.len() });
        }
        if s.as_bytes().contains(&0) {
            return Err(TopicError::NullCharacter);
        }
        let (group, filter) = match rest.split_once('/') {
            Some(parts) => parts,
            None if rest.is_empty() => return Err(TopicError::EmptyShareName),
            None => return Err(TopicError::MissingShareFilter),
        };
        let group = ShareGroup::new(s.slice_ref(group))?;
        if filter.is_empty() {
            return Err(TopicError::MissingShareFilter);
        }
        let filter = TopicFilter::new(s.slice_ref(filter))?;
        Ok(Self {
            share_group: Some(group),
            filter,
        })
    }

    /// Whether this is a shared subscription.
    pub fn is_shared(&self) -> bool {
        self.share_group.is_some()
    }

    /// The string as it appeared in the packet (`$share/{group}/{filter}` or just the filter).
    ///
    /// Free for ordinary filters; allocates for shared ones (which are rare and only seen at
    /// SUBSCRIBE time, so not worth storing the original for).
    pub fn full(&self) -> ByteString {
        match &self.share_group {
            None => self.filter.as_bytestring().clone(),
            Some(group) => ByteString::from(format!("{SHARE_PREFIX}{group}/{}", self.filter)),
        }
    }
}

impl fmt::Display for SubscriptionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(group) = &self.share_group {
            write!(f, "{SHARE_PREFIX}{group}/")?;
        }
        f.write_str(self.filter.as_str())
    }
}

impl fmt::Debug for SubscriptionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubscriptionFilter({:?})", self.to_string())
    }
}

impl TryFrom<ByteString> for SubscriptionFilter {
    type Error = TopicError;
    fn try_from(s: ByteString) -> Result<Self, TopicError> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for SubscriptionFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::parse(ByteString::from(s))
    }
}

impl From<TopicFilter> for SubscriptionFilter {
    fn from(filter: TopicFilter) -> Self {
        Self {
            share_group: None,
            filter,
        }
    }
}
