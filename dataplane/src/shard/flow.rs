//! Publisher flow control on the subscriber's shard: which sessions are backlogged, and when
//! the PUBACKs they hold go out. Why and the state machine: `crate::flow`.

use std::time::{Duration, Instant};

use iotcore_core::mqtt::{Packet, PubResponse};

use super::mesh::ShardMsg;
use super::{SessionSlot, Shard};
use crate::flow::{high_water, Held, PubAckTo};
use crate::ids::SessionKey;
use crate::metrics::bump;

impl Shard {
    /// Whether QoS 1 publishers offer their PUBACKs at all.
    pub(super) fn flow_control_on(&self) -> bool {
        self.config.limits.max_puback_delay_ms > 0
    }

    fn high_water(&self) -> usize {
        high_water(self.config.limits.max_queued_messages)
    }

    /// A QoS 1/2 delivery was queued for this session, or dropped because the queue was
    /// `full`. A connected session at its high-water mark is backlogged, and holds the
    /// PUBACK offered with the message; it goes on holding every offered PUBACK until it
    /// has caught up, so no publisher overtakes those waiting. An offline session holds
    /// nothing: nobody drains it.
    pub(super) fn hold_if_backlogged(
        &self,
        slot: &mut SessionSlot,
        key: SessionKey,
        full: bool,
        puback: &mut Option<PubAckTo>,
        now: Instant,
    ) {
        if let Some(held) = slot.held.as_mut() {
            held.in_transit = held.in_transit.saturating_sub(1);
        }
        if slot.conn.is_none() || !self.flow_control_on() {
            return;
        }
        if !full && slot.held.is_none() && slot.session.outbound.queued_len() < self.high_water() {
            return;
        }
        let held = slot.held.get_or_insert_with(|| {
            self.backlogs.started(self.id);
            self.backlogged.borrow_mut().insert(key);
            Box::new(Held::new(key))
        });
        if let Some(to) = puback.take() {
            match held.hold(to, now) {
                None => bump(&self.metrics.pubacks_held_total, 1),
                Some(back) => *puback = Some(back),
            }
        }
    }

    /// After the session's queue gave messages to its window: held PUBACKs go out while the
    /// queue and the messages already asked for fit in the queue, so publishers send as fast
    /// as the subscriber takes and nothing is dropped. (The whole queue, not the mark: the
    /// messages asked for take a round trip through two shards and the publisher, and a
    /// budget of half the queue emptied it before they came.) None held and the queue
    /// empty: the session flows again (ending earlier let every publisher's whole window
    /// through at once, and the queue overflowed).
    pub(super) fn release_held(&self, slot: &mut SessionSlot) {
        let Some(held) = slot.held.as_mut() else {
            return;
        };
        let budget = self.config.limits.max_queued_messages.max(1);
        let queued = slot.session.outbound.queued_len();
        while queued + held.in_transit < budget {
            let Some((to, _)) = held.tokens.pop_front() else {
                break;
            };
            held.in_transit += 1;
            self.release_puback(to);
        }
        if held.tokens.is_empty() && queued == 0 {
            self.end_backlog(slot);
        }
    }

    /// The session lost its connection or ends: every PUBACK it holds goes out.
    pub fn release_all_held(&self, slot: &mut SessionSlot) {
        if let Some(held) = slot.held.as_mut() {
            for (to, _) in std::mem::take(&mut held.tokens) {
                self.release_puback(to);
            }
            self.end_backlog(slot);
        }
    }

    fn end_backlog(&self, slot: &mut SessionSlot) {
        if let Some(held) = slot.held.take() {
            self.backlogs.ended(self.id);
            self.backlogged.borrow_mut().remove(&held.key);
        }
    }

    /// Sends the PUBACKs held longer than `limits.max_puback_delay_ms` (a subscriber that
    /// stopped acknowledging must not stop its publishers). Run by the housekeeping task, so
    /// up to one housekeeping interval late.
    pub fn expire_held(&self) {
        let keys: Vec<SessionKey> = self.backlogged.borrow().iter().copied().collect();
        if keys.is_empty() {
            return;
        }
        let delay = Duration::from_millis(self.config.limits.max_puback_delay_ms);
        let cutoff = std::time::Instant::now()
            .checked_sub(delay)
            .unwrap_or_else(std::time::Instant::now);
        let mut st = self.state.borrow_mut();
        for key in keys {
            let Some(slot) = st.sessions.get_mut(&key) else {
                // Gone without releasing (cannot happen: removal releases); forget it.
                self.backlogged.borrow_mut().remove(&key);
                continue;
            };
            let Some(held) = slot.held.as_mut() else {
                continue;
            };
            while let Some(to) = held.pop_older_than(cutoff) {
                bump(&self.metrics.pubacks_held_expired_total, 1);
                self.release_puback(to);
            }
            // A released publisher may be gone, and its message never come: an empty queue
            // at this tick forgets what was asked for (at most one extra budget per tick).
            if slot.session.outbound.queued_len() == 0 {
                held.in_transit = 0;
            }
            self.release_held(slot);
        }
    }

    /// Sends a PUBACK owed to a connection of this shard or of another (held by flow
    /// control, or a shadow request's, sent with its answer).
    pub(super) fn release_puback(&self, to: PubAckTo) {
        if to.shard == self.id {
            self.send_puback(to);
        } else {
            self.post_to(to.shard, ShardMsg::PubAck(to));
        }
    }

    /// Sends a PUBACK to one of this shard's connections, if it still is.
    pub(super) fn send_puback(&self, to: PubAckTo) {
        if let Some(conn) = self.connections.borrow().get(&to.conn) {
            conn.send(&Packet::PubAck(PubResponse::success(to.packet_id)));
        }
    }
}
