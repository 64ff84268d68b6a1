//! Publisher flow control: a QoS 1 publisher whose message went to a subscriber that is
//! falling behind gets its PUBACK as that subscriber catches up, or after
//! `limits.max_puback_delay_ms` at most. The publisher's own in-flight window then brakes it.
//!
//! Why: 100 publishers with 100 messages in flight each, toward one subscriber whose window
//! is 100, pushed 2.3M msgs/s into a broker that delivers a few hundred thousand to one
//! connection. The broker spent its cores taking messages it then dropped from the full
//! session queue: the fan-in QoS 1 run delivered 1% of what was published (bench/results,
//! run 7).
//!
//! Why not stop reading the publisher's socket instead: a publisher subscribed to its own
//! topic (or two clients publishing to each other) would then never have its own PUBACKs
//! read, and both would wait forever. Holding an acknowledgement never stops a reader.
//!
//! A held PUBACK lets the publisher's later PUBACKs (for messages nobody holds) overtake
//! it. MQTT's ordering rule for acknowledgements binds the client (MQTT 5 §4.6); clients
//! match PUBACKs by packet id, as they must for QoS 2 and the shadow service's PUBACKs.
//!
//! Why bounded in time: a subscriber that stops acknowledging must not stop its publishers.
//! Past the bound their PUBACKs go out anyway, and the messages the subscriber cannot take
//! are dropped from its full queue and counted, as without flow control.
//!
//! The state machine of a session (`shard/flow.rs`): *flowing* until a delivery leaves its
//! queue at the high-water mark (half of `limits.max_queued_messages`) or finds it full;
//! then *backlogged*, holding every PUBACK offered with its deliveries, oldest first. As its
//! subscriber acknowledges, held PUBACKs go out while the queue plus the messages released
//! publishers have yet to send stay under the mark. With none held and the queue empty it
//! is flowing again. Losing its connection or ending releases every held PUBACK at once,
//! and so does `limits.max_puback_delay_ms` passing for each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use iotcore_core::mqtt::PacketId;

use crate::ids::{SessionKey, ShardId};

/// A PUBACK owed to a connection, sent by whichever shard decides it is time: a shadow
/// request's once its answer is out, a message's once a backlogged subscriber took it.
#[derive(Debug, Clone, Copy)]
pub struct PubAckTo {
    pub shard: ShardId,
    /// `Shard::register_connection`'s id: never reused, so a late PUBACK for a connection
    /// that is gone finds nobody instead of somebody else.
    pub conn: u64,
    pub packet_id: PacketId,
}

/// Backlogged sessions per shard, read by every shard: a publisher offers its PUBACK to
/// another shard only while that shard has one (a relaxed load per QoS 1 message and peer).
pub struct Backlogs {
    per_shard: Box<[Padded]>,
}

/// One counter per cache line: each is written by its own shard only.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

impl Backlogs {
    pub fn new(shards: usize) -> Backlogs {
        Backlogs {
            per_shard: (0..shards.max(1)).map(|_| Padded::default()).collect(),
        }
    }

    pub fn any(&self, shard: ShardId) -> bool {
        self.per_shard
            .get(shard.0)
            .is_some_and(|c| c.0.load(Ordering::Relaxed) > 0)
    }

    pub fn started(&self, shard: ShardId) {
        if let Some(c) = self.per_shard.get(shard.0) {
            c.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn ended(&self, shard: ShardId) {
        if let Some(c) = self.per_shard.get(shard.0) {
            c.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Most PUBACKs one session holds; past it, PUBACKs go out at once (a publisher that
/// ignores its window gains nothing by making the broker remember more).
pub const MAX_HELD: usize = 16 * 1024;

/// The PUBACKs a backlogged session holds, oldest first. Present only while backlogged, so
/// a flowing session pays one pointer.
pub struct Held {
    pub key: SessionKey,
    pub tokens: VecDeque<(PubAckTo, Instant)>,
    /// PUBACKs released whose publishers' next messages have not arrived yet (an estimate:
    /// any arrival counts). Without it every subscriber PUBACK released the same gap again
    /// before the messages it asked for came, and the queue overflowed: half of the fan-in
    /// messages were dropped.
    pub in_transit: usize,
}

impl Held {
    pub fn new(key: SessionKey) -> Held {
        Held {
            key,
            tokens: VecDeque::new(),
            in_transit: 0,
        }
    }

    /// Holds `to` unless full; gives it back when full.
    pub fn hold(&mut self, to: PubAckTo, now: Instant) -> Option<PubAckTo> {
        if self.tokens.len() >= MAX_HELD {
            return Some(to);
        }
        self.tokens.push_back((to, now));
        None
    }

    /// The oldest held PUBACK, if it was held since before `cutoff`.
    pub fn pop_older_than(&mut self, cutoff: Instant) -> Option<PubAckTo> {
        match self.tokens.front() {
            Some((_, since)) if *since <= cutoff => self.tokens.pop_front().map(|(to, _)| to),
            _ => None,
        }
    }
}

/// The queue length at which a session starts holding PUBACKs.
pub fn high_water(max_queued_messages: usize) -> usize {
    (max_queued_messages / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn to(id: u16) -> PubAckTo {
        PubAckTo {
            shard: ShardId(0),
            conn: 1,
            packet_id: PacketId::new(id).expect("non-zero"),
        }
    }

    #[test]
    fn backlogs_count_per_shard() {
        let b = Backlogs::new(2);
        assert!(!b.any(ShardId(1)));
        b.started(ShardId(1));
        b.started(ShardId(1));
        assert!(b.any(ShardId(1)) && !b.any(ShardId(0)));
        b.ended(ShardId(1));
        assert!(b.any(ShardId(1)));
        b.ended(ShardId(1));
        assert!(!b.any(ShardId(1)));
        assert!(!b.any(ShardId(7)), "a shard that does not exist has none");
    }

    #[test]
    fn held_releases_oldest_first_and_only_when_old_enough() {
        let t0 = Instant::now();
        let mut h = Held::new(SessionKey(1));
        assert!(h.hold(to(1), t0).is_none());
        assert!(h.hold(to(2), t0 + Duration::from_millis(10)).is_none());
        assert!(h.pop_older_than(t0 - Duration::from_millis(1)).is_none());
        let first = h
            .pop_older_than(t0 + Duration::from_millis(5))
            .expect("old enough");
        assert_eq!(first.packet_id, to(1).packet_id);
        assert!(h.pop_older_than(t0 + Duration::from_millis(5)).is_none());
        let second = h
            .pop_older_than(t0 + Duration::from_secs(1))
            .expect("old enough");
        assert_eq!(second.packet_id, to(2).packet_id);
    }

    #[test]
    fn held_is_bounded() {
        let t0 = Instant::now();
        let mut h = Held::new(SessionKey(1));
        for _ in 0..MAX_HELD {
            assert!(h.hold(to(1), t0).is_none());
        }
        assert!(
            h.hold(to(2), t0).is_some(),
            "the one past the bound is given back"
        );
    }

    #[test]
    fn high_water_is_half_the_queue_and_at_least_one() {
        assert_eq!(high_water(1000), 500);
        assert_eq!(high_water(1), 1);
        assert_eq!(high_water(0), 1);
    }
}
