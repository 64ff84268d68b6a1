//! What shards say to each other. Every message travels in a batch over glommio's
//! lock-free single-producer/single-consumer channel for that ordered pair of shards; one
//! sender task per peer drains the shard's outbox, so a burst of publishes costs one channel
//! push and one wake-up per peer, not one per message.

use iotcore_core::topic::{ShareGroup, TopicFilter};

use super::replies::{Reply, ReplyId, ReplyTo};
use crate::ids::{SessionKey, ShardId};
use crate::message::SharedMessage;

pub enum ShardMsg {
    /// Deliver to the receiving shard's matching subscribers: to every ordinary subscription
    /// if `ordinary`, and to one member of each listed shared subscription.
    Publish {
        message: SharedMessage,
        ordinary: bool,
        shared: Vec<(ShareGroup, TopicFilter)>,
        /// Answer once the deliveries are durable (persistent sessions got the message).
        ack: Option<ReplyTo>,
        /// The publisher's PUBACK, offered because this shard has a backlogged session
        /// (`flow.rs`): held if one of them gets the message, sent back at once otherwise.
        puback: Option<crate::flow::PubAckTo>,
        /// Sent on by a shard whose group member had left (`Origin::Forwarded`): not sent on
        /// again.
        forwarded: bool,
    },
    /// The sending shard gained (`add`) or lost its last subscriber on `filter`.
    Interest {
        from: ShardId,
        filter: TopicFilter,
        group: Option<ShareGroup>,
        add: bool,
        ack: Option<ReplyTo>,
    },
    /// Set (`Some`) or clear (`None`) the retained message of a topic: every shard keeps a
    /// replica so a subscribe is answered locally.
    Retained {
        topic: bytestring::ByteString,
        message: Option<SharedMessage>,
        ack: Option<ReplyTo>,
    },
    /// A new connection for `client_id` was accepted elsewhere: close the current one and
    /// hand the session over (or `None` if this shard no longer has it).
    TakeSession {
        /// The session's key on the receiving shard, as the directory recorded it.
        key: SessionKey,
        clean_start: bool,
        reply: ReplyTo,
    },
    /// A shadow request for a thing this shard owns.
    Shadow(Box<crate::shadow::service::ShadowRequest>),
    /// ListNamedShadowsForThing for a thing this shard owns.
    ShadowList {
        thing: iotcore_core::shadow::ThingName,
        next_token: Option<String>,
        page_size: usize,
        reply: ReplyTo,
    },
    /// The answer to a request this shard made.
    Reply { id: ReplyId, reply: Reply },
    /// Acknowledge a PUBLISH of one of this shard's connections (a shadow request's, or one
    /// held by flow control).
    PubAck(crate::flow::PubAckTo),
    /// Serve this connection, accepted by a fuller shard (`placement.rs`); it is counted
    /// for this shard already: its socket and its peer's address.
    Adopt(Box<(std::os::fd::OwnedFd, Option<std::net::SocketAddr>)>),
    /// Serve this connection, whose client id names a thing this shard owns
    /// (`connection/affinity.rs`); it is counted for this shard already.
    Handover(Box<crate::connection::affinity::Handover>),
}

pub type Batch = Vec<ShardMsg>;
