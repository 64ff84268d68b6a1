//! The MQTT 3.1.1 and 5.0 wire protocol: packets, properties, reason codes and the codec.

pub mod codec;
pub mod packet;
pub mod properties;
pub mod reason;

pub use codec::{decode, encode, encoded_len, DecodeError, Decoder, EncodeError, OutgoingPublish};
pub use packet::*;
pub use properties::*;
pub use reason::ReasonCode;
