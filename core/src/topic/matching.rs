//! The naive reference matcher and the configurable topic limits.

use super::name::count_levels;
use super::TopicError;

/// AWS IoT Core's limit on a topic's length in bytes; a sensible default for
/// [`check_limits`].
pub const AWS_MAX_TOPIC_BYTES: usize = 256;

/// AWS IoT Core's limit on a topic's levels (seven `/`); a sensible default for
/// [`check_limits`].
pub const AWS_MAX_TOPIC_LEVELS: usize = 8;

/// Splits off the first level: `"a/b/c"` → `("a", Some("b/c"))`, `"a/"` → `("a", Some(""))`,
/// `"a"` → `("a", None)`. Borrowing slices of the input is what lets the trie walk a topic
/// without allocating.
#[inline]
pub(crate) fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, tail)) => (level, Some(tail)),
        None => (rest, None),
    }
}

/// Whether `filter` matches `topic`, the obvious way: level by level.
///
/// This is the executable specification the [`super::SubscriptionTrie`] and
/// [`super::RetainedTree`] are tested against, and is fine for one-off checks (e.g. ACLs).
///
/// - `+` matches exactly one level, which may be empty.
/// - `#` matches the level it is in and everything below, including the parent:
///   `sport/#` matches `sport` ([MQTT-4.7.1-1] and the non-normative text around it).
/// - A filter whose first level is a wildcard never matches a topic starting with `$`
///   ([MQTT-4.7.2-1]), so `#` does not see `$SYS/...`.
///
/// Inputs are assumed to be valid (see [`super::TopicName`] and [`super::TopicFilter`]);
/// for invalid ones the result is unspecified but the function does not panic.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match topic_levels.next() {
            None => return false,
            Some(t) if f == "+" || f == t => {}
            Some(_) => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Checks a topic name or filter against broker-configured limits, tighter than the protocol's
/// 65535 bytes (e.g. [`AWS_MAX_TOPIC_BYTES`] and [`AWS_MAX_TOPIC_LEVELS`]).
///
/// Besides compatibility with AWS IoT Core, bounding the level count bounds the depth of the
/// subscription trie and retained tree, and so the work a single PUBLISH can cause.
pub fn check_limits(topic: &str, max_bytes: usize, max_levels: usize) -> Result<(), TopicError> {
    if topic.len() > max_bytes {
        return Err(TopicError::ExceedsByteLimit {
            len: topic.len(),
            max: max_bytes,
        });
    }
    let levels = count_levels(topic);
    if levels > max_levels {
        return Err(TopicError::ExceedsLevelLimit {
            levels,
            max: max_levels,
        });
    }
    Ok(())
}
