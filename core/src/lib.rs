//! # iotcore-core
//!
//! Everything in iotcore that needs neither sockets nor an async runtime, so it can be tested
//! from bytes and property tests alone.
//!
//! ## Layout
//! - [`mqtt`]: the MQTT 3.1.1 and 5.0 wire protocol: packet types, properties, reason codes,
//!   and the codec (strict, zero-copy decoding into `Bytes`).
//! - [`topic`]: topic names, topic filters, shared-subscription filters, the subscription trie
//!   that maps a topic to its subscribers, and the retained-message tree.
//! - [`session`]: the per-client QoS 1/2 state machines: the outbound in-flight window with
//!   the queue behind it, and inbound QoS 2 tracking.
//! - [`shadow`]: the AWS IoT device shadow document algebra: merge, delta, metadata, versions,
//!   limits, and the request/response documents, as pure functions.
//! - [`log`]: the append-only, checksummed, memory-mapped log with group commit, recovery,
//!   snapshots and compaction, used by every durable part of iotcore.

pub mod log;
pub mod mqtt;
pub mod session;
pub mod shadow;
pub mod topic;
