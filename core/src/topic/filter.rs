//! [`TopicFilter`]: the validated filter of a SUBSCRIBE (wildcards allowed).

use std::borrow::Borrow;
use std::fmt;

use bytestring::ByteString;

use super::name::{count_levels, validate_common};
use super::TopicError;

/// Checks the filter rules on a plain `&str`; shared by [`TopicFilter::new`] and the
/// shared-subscription parser so both report the same errors.
pub(crate) fn validate_filter(s: &str) -> Result<(), TopicError> {
    validate_common(s)?;
    // Fast path: most filters have no wildcard at all.
    if !s.bytes().any(|b| b == b'+' || b == b'#') {
        return Ok(());
    }
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(TopicError::MultiLevelWildcardNotLast);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcardNotWholeLevel);
        }
    }
    Ok(())
}

/// A topic filter as carried by SUBSCRIBE/UNSUBSCRIBE (without any `$share/` prefix; see
/// [`super::SubscriptionFilter`]): non-empty, no U+0000, at most 65535 bytes, `+` only as a
/// whole level ([MQTT-4.7.1-2]) and `#` only as the whole last level ([MQTT-4.7.1-1]).
///
/// Like [`super::TopicName`] it wraps a [`ByteString`] so decoding needs no copy, and its
/// `Hash`/`Eq`/`Ord` agree with `str`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter(ByteString);

impl TopicFilter {
    /// Validates `s` as a topic filter.
    pub fn new(s: ByteString) -> Result<Self, TopicError> {
        validate_filter(&s)?;
        Ok(Self(s))
    }

    /// Whether the filter contains `+` or `#`, i.e. can match more than one topic name.
    pub fn has_wildcards(&self) -> bool {
        self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// Whether the first level is a wildcard: such a filter never matches topics that start
    /// with `$` ([MQTT-4.7.2-1]).
    pub fn starts_with_wildcard(&self) -> bool {
        self.0.starts_with('+') || self.0.starts_with('#')
    }
}

str_newtype_impls!(TopicFilter);
