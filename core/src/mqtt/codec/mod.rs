//! The MQTT 3.1.1 and 5.0 codec.
//!
//! Decoding is strict: every rule of the spec that can be checked from the bytes alone is
//! checked here, each failure naming its spec statement (`DecodeError::spec_rule`) and the
//! reason code to answer with (`DecodeError::reason_code`). Rules that need session state
//! (topic alias ranges, a client sending Subscription Identifiers, a second CONNECT, receive
//! maximum) are left to the broker. Decoded strings, binary data and payloads are slices of the
//! read buffer: no copy.
//!
//! - `primitives`: integers, variable byte integers, strings, binary data.
//! - `properties`: MQTT 5 property lists per packet.
//! - `reasons`: the reason codes each packet may carry.
//! - `decode`, `encode`: the packets.
//! - `outgoing`: the broker's PUBLISH toward a subscriber, encoded from borrowed parts.

mod decode;
mod encode;
mod error;
mod outgoing;
mod primitives;
mod properties;
mod reasons;

#[cfg(test)]
mod tests;

pub use decode::{decode, Decoder};
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use outgoing::OutgoingPublish;
