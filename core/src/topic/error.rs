//! The one error type for everything in [`crate::topic`].

use thiserror::Error;

/// Why a topic name, topic filter or shared-subscription filter was rejected.
///
/// Each message starts with the MQTT 5.0 normative statement it enforces (the 3.1.1 rules are
/// the same, only numbered differently), so a log line or a DISCONNECT reason string points
/// straight at the paragraph of the spec. The two `Exceeds*` variants are not spec rules but
/// broker-configured limits (see [`super::check_limits`]).
///
/// The protocol layer maps these to reason codes: on PUBLISH all are "Topic Name invalid"
/// (0x90); on SUBSCRIBE they are "Topic Filter invalid" (0x8F).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// The topic name or filter is the empty string.
    #[error("[MQTT-4.7.3-1] topic must be at least one character long")]
    Empty,
    /// The UTF-8 encoding is longer than an MQTT string can be.
    #[error("[MQTT-4.7.3-3] topic is {len} bytes; it must not encode to more than 65535 bytes")]
    TooLong {
        /// Length of the rejected topic in bytes.
        len: usize,
    },
    /// The topic contains U+0000.
    #[error("[MQTT-4.7.3-2] topic must not contain the null character U+0000")]
    NullCharacter,
    /// A topic name (as used in PUBLISH) contains `+` or `#`.
    #[error("[MQTT-3.3.2-2] topic name must not contain the wildcard characters `+` or `#`")]
    WildcardInTopicName,
    /// `#` appears anywhere other than as the whole last level of a filter.
    #[error(
        "[MQTT-4.7.1-1] multi-level wildcard `#` must be on its own or after `/`, \
         and must be the last character of the topic filter"
    )]
    MultiLevelWildcardNotLast,
    /// `+` shares a level with other characters.
    #[error("[MQTT-4.7.1-2] single-level wildcard `+` must occupy an entire level of the filter")]
    SingleLevelWildcardNotWholeLevel,
    /// `$share//filter`: the ShareName is empty.
    #[error(
        "[MQTT-4.8.2-1] a shared subscription's ShareName must be at least one character long"
    )]
    EmptyShareName,
    /// The ShareName contains `/`, `+` or `#`.
    #[error("[MQTT-4.8.2-2] a shared subscription's ShareName must not contain `/`, `+` or `#`")]
    InvalidShareName,
    /// `$share/group` or `$share/group/`: no topic filter after the ShareName.
    #[error("[MQTT-4.8.2-2] a shared subscription's ShareName must be followed by `/` and a topic filter")]
    MissingShareFilter,
    /// The topic is longer than the broker's configured byte limit.
    #[error("topic is {len} bytes, over the broker's limit of {max} bytes (AWS IoT Core: 256)")]
    ExceedsByteLimit {
        /// Length of the rejected topic in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The topic has more levels than the broker's configured limit.
    #[error(
        "topic has {levels} levels, over the broker's limit of {max} levels (AWS IoT Core: 8)"
    )]
    ExceedsLevelLimit {
        /// Number of `/`-separated levels in the rejected topic.
        levels: usize,
        /// The configured maximum.
        max: usize,
    },
}
