//! The publish path: a message is matched once against the interest table to find the shards
//! that need it, then against each such shard's own trie to find the sessions; every delivery
//! shares the same `Arc<Message>` (a shard with many QoS 1/2 deliveries of a peer's message
//! shares its own copy). A QoS 1 message may carry its publisher's PUBACK for a backlogged
//! subscriber to hold (`crate::flow`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use iotcore_core::mqtt::QoS;
use iotcore_core::topic::{ShareGroup, TopicFilter};

use super::mesh::ShardMsg;
use super::replies::{Reply, ReplyId, ReplyTo};
use super::{Match, Shard, ShardState};
use crate::flow::PubAckTo;
use crate::ids::{SessionKey, ShardId};
use crate::message::{Delivery, Message, SharedMessage};
use crate::metrics::bump;
use crate::storage::retained_owner;

/// Local QoS 1/2 deliveries from which a message from another shard is copied first.
const OWN_COPY_MIN_DELIVERIES: usize = 8;

/// Where a message being delivered on this shard comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Published by a client of this shard.
    Local,
    /// Sent by the publisher's shard.
    Peer,
    /// Sent on by a shard whose shared-subscription member had left.
    Forwarded,
    /// Owed to a group member whose session ended: given to another member.
    Rehomed,
}

impl Shard {
    /// Routes a message to every matching subscriber on every shard, and stores it if it is
    /// retained. Returns acknowledgements to await before telling the publisher it is done:
    /// a retained change must be seen by every shard (and be on its owner's log), and a
    /// message queued for a persistent session must be on that shard's session log.
    pub fn route(self: &Rc<Self>, message: SharedMessage) -> Vec<ReplyId> {
        self.route_inner(message, true, &mut None)
    }

    /// `route`, for a QoS 1 message whose PUBACK a backlogged subscriber may hold
    /// (`flow.rs`): `puback` is left `None` when taken, and the taker sends it. It is taken
    /// only when no other acknowledgement is asked for.
    pub fn route_offering(
        self: &Rc<Self>,
        message: SharedMessage,
        puback: &mut Option<PubAckTo>,
    ) -> Vec<ReplyId> {
        self.route_inner(message, true, puback)
    }

    /// Routes a message nobody waits on (a will, an event, a shadow answer): no
    /// acknowledgements are asked for.
    pub fn route_unacked(self: &Rc<Self>, message: SharedMessage) {
        let acks = self.route_inner(message, false, &mut None);
        debug_assert!(acks.is_empty());
    }

    fn route_inner(
        self: &Rc<Self>,
        message: SharedMessage,
        want_acks: bool,
        offered: &mut Option<PubAckTo>,
    ) -> Vec<ReplyId> {
        let mut acks = Vec::new();
        // Shards delivering a QoS 1/2 message into a persistent session acknowledge it only
        // once that is on their session log; while no persistent session exists anywhere,
        // nobody is asked.
        let ack_deliveries =
            want_acks && message.qos != QoS::AtMostOnce && self.directory.persistent_sessions() > 0;
        // One way to acknowledge per message: a PUBACK that waits on peers' answers is not
        // also held by a subscriber.
        let mut puback = if ack_deliveries || message.retain || !self.flow_control_on() {
            None
        } else {
            offered.take()
        };
        if message.retain {
            let stored = (!message.payload.is_empty()).then(|| message.clone());
            if retained_owner(&message.topic, self.shard_count) == self.id {
                // Written here: the PUBACK waits for the fsync, like a peer's ack.
                let to = want_acks.then(|| self.local_reply_to());
                if !self.persist_retained(&message.topic, stored.as_deref(), to) {
                    if let Some(to) = to {
                        self.replies.complete(to.id, Reply::Ack);
                    }
                }
                acks.extend(to.map(|to| to.id));
            }
            self.apply_retained(&message.topic, stored.clone());
            for peer in self.peers().collect::<Vec<_>>() {
                let topic = message.topic.clone();
                let stored = stored.clone();
                if want_acks {
                    acks.push(self.request(peer, |to| ShardMsg::Retained {
                        topic,
                        message: stored,
                        ack: Some(to),
                    }));
                } else {
                    self.post_to(
                        peer,
                        ShardMsg::Retained {
                            topic,
                            message: stored,
                            ack: None,
                        },
                    );
                }
            }
        }

        let mut st = self.state.borrow_mut();
        // Shards with an ordinary subscriber, as a bit set (shard count is capped at 64).
        let mut ordinary: u64 = 0;
        let mut shared_candidates: Vec<(ShareGroup, TopicFilter, ShardId)> = Vec::new();
        st.interest
            .for_each_match(&message.topic, |(shard, group), filter| match group {
                None => ordinary |= 1 << shard.0,
                Some(g) => shared_candidates.push((g.clone(), filter.clone(), *shard)),
            });
        let mut shared_by_shard: Vec<(ShardId, ShareGroup, TopicFilter)> = Vec::new();
        if !shared_candidates.is_empty() {
            shared_candidates.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
            let mut i = 0;
            while i < shared_candidates.len() {
                let mut j = i;
                while j < shared_candidates.len()
                    && shared_candidates[j].0 == shared_candidates[i].0
                    && shared_candidates[j].1 == shared_candidates[i].1
                {
                    j += 1;
                }
                let (group, filter, _) = &shared_candidates[i];
                let counter = st
                    .shard_turn
                    .entry((group.clone(), filter.clone()))
                    .or_insert(0);
                let pick = i + *counter % (j - i);
                *counter = counter.wrapping_add(1);
                shared_by_shard.push((shared_candidates[pick].2, group.clone(), filter.clone()));
                i = j;
            }
        }

        for shard in 0..self.shard_count {
            let wants_ordinary = ordinary & (1 << shard) != 0;
            let shared: Vec<(ShareGroup, TopicFilter)> = shared_by_shard
                .iter()
                .filter(|(s, _, _)| s.0 == shard)
                .map(|(_, g, f)| (g.clone(), f.clone()))
                .collect();
            if !wants_ordinary && shared.is_empty() {
                continue;
            }
            if shard == self.id.0 {
                self.persisted_in_route.set(false);
                self.deliver_local(
                    &mut st,
                    &message,
                    wants_ordinary,
                    &shared,
                    &mut puback,
                    Origin::Local,
                );
                if want_acks && self.persisted_in_route.get() {
                    let to = self.local_reply_to();
                    self.ack_when_sessions_durable(to);
                    acks.push(to.id);
                }
            } else if ack_deliveries {
                acks.push(self.request(ShardId(shard), |to| ShardMsg::Publish {
                    message: message.clone(),
                    ordinary: wants_ordinary,
                    shared,
                    ack: Some(to),
                    puback: None,
                    forwarded: false,
                }));
            } else {
                self.post_to(
                    ShardId(shard),
                    ShardMsg::Publish {
                        message: message.clone(),
                        ordinary: wants_ordinary,
                        shared,
                        ack: None,
                        // Offered only to a shard with a backlogged session: elsewhere the
                        // publisher's shard acknowledges at once, with no round trip.
                        puback: puback.take_if(|_| self.backlogs.any(ShardId(shard))),
                        forwarded: false,
                    },
                );
            }
        }
        *offered = offered.or(puback);
        acks
    }

    /// A reply id on this shard, answered by this shard.
    fn local_reply_to(&self) -> ReplyTo {
        ReplyTo {
            shard: self.id,
            id: self.replies.register(),
        }
    }

    pub(super) fn peers(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.shard_count)
            .filter(move |&s| s != self.id.0)
            .map(ShardId)
    }

    pub fn apply_retained(&self, topic: &str, message: Option<SharedMessage>) {
        let mut st = self.state.borrow_mut();
        match message {
            Some(m) => match iotcore_core::topic::TopicName::try_from(topic) {
                Ok(name) => {
                    st.retained.insert(&name, m);
                }
                Err(e) => tracing::warn!(error = %e, "retained message with invalid topic"),
            },
            None => {
                st.retained.remove(topic);
            }
        }
    }

    /// Retained messages matching a filter, for a new subscription.
    pub fn retained_matching(&self, filter: &TopicFilter) -> Vec<SharedMessage> {
        let st = self.state.borrow();
        let mut out = Vec::new();
        st.retained
            .for_each_matching(filter, |_, m| out.push(m.clone()));
        out
    }

    /// Delivers to this shard's subscribers: the ordinary ones if asked, and one member of
    /// each listed shared subscription. A message from another shard (`Peer`, `Forwarded`)
    /// is held (and its references counted) there too.
    pub(super) fn deliver_local(
        &self,
        st: &mut ShardState,
        message: &SharedMessage,
        ordinary: bool,
        shared: &[(ShareGroup, TopicFilter)],
        puback: &mut Option<PubAckTo>,
        origin: Origin,
    ) {
        let from_peer = matches!(origin, Origin::Peer | Origin::Forwarded);
        // The shard's clock (set per socket read and per mesh batch) is precise enough for
        // expiry and congestion; a clock read per message was 6% of a fan-in shard's time.
        let now = self.clock.get();
        if message.is_expired(now) {
            bump(&self.metrics.dropped_expired_total, 1);
            return;
        }
        if ordinary {
            let mut scratch = std::mem::take(&mut st.scratch);
            scratch.clear();
            let filters = st.subs.for_each_match(&message.topic, |key, sub| {
                scratch.push(Match {
                    key: *key,
                    qos: sub.options.qos,
                    retain_as_published: sub.options.retain_as_published,
                    no_local: sub.options.no_local,
                    id: sub.id,
                })
            });
            // Every QoS 1/2 delivery holds a reference to the message: with many here, a
            // message from another shard gets a copy of its own, so the two shards do not
            // take turns on one reference count (5% of a shard's time in a QoS 1 fan-out).
            let own_copy;
            let message = if from_peer
                && message.qos != QoS::AtMostOnce
                && scratch.len() >= OWN_COPY_MIN_DELIVERIES
            {
                own_copy = Arc::new(Message::clone(message));
                &own_copy
            } else {
                message
            };
            // Overlapping subscriptions of one session give one delivery, at the highest
            // QoS, carrying every matching subscription identifier. Sorting brings a
            // session's matches together; with one filter matched each session is there
            // once (sorting 100 matches per message was 2% of a QoS 1 fan-out shard).
            if filters > 1 {
                scratch.sort_unstable_by_key(|m| m.key);
            }
            let mut i = 0;
            while i < scratch.len() {
                let first = scratch[i];
                let mut qos = first.qos;
                let mut rap = first.retain_as_published;
                let mut no_local = first.no_local;
                let mut ids = Vec::new();
                let mut j = i;
                while j < scratch.len() && scratch[j].key == first.key {
                    qos = qos.max(scratch[j].qos);
                    rap |= scratch[j].retain_as_published;
                    no_local &= scratch[j].no_local;
                    if let Some(id) = scratch[j].id {
                        ids.push(id);
                    }
                    j += 1;
                }
                i = j;
                self.deliver_to(
                    st,
                    first.key,
                    message,
                    qos,
                    rap && message.retain,
                    ids,
                    now,
                    no_local,
                    puback,
                );
            }
            st.scratch = scratch;
        }
        for (group, filter) in shared {
            let mut members: Vec<(SessionKey, QoS, Option<u32>)> = Vec::new();
            st.shared_subs
                .for_each_match(&message.topic, |(g, key), sub| {
                    if g == group && &sub.filter == filter {
                        members.push((*key, sub.options.qos, sub.id));
                    }
                });
            if members.is_empty() {
                // The sender's interest table still named this shard for the group: its
                // member left and the news had not reached the sender yet. Another shard
                // with a member gets it, once, rather than nobody.
                if matches!(origin, Origin::Peer | Origin::Rehomed) {
                    self.forward_shared(st, message, group, filter);
                }
                continue;
            }
            members.sort_unstable_by_key(|m| m.0);
            let counter = st
                .member_turn
                .entry((group.clone(), filter.clone()))
                .or_insert(0);
            let (key, qos, id) = members[*counter % members.len()];
            *counter = counter.wrapping_add(1);
            self.deliver_to(
                st,
                key,
                message,
                qos,
                false,
                id.into_iter().collect(),
                now,
                false,
                puback,
            );
        }
    }

    /// Gives the messages an ended session still owed through its shared subscriptions
    /// (queued, or sent and not acknowledged) to another member of the group, here or on
    /// another shard: the spec's "SHOULD send to another client subscribed to the same
    /// Shared Subscription" for a session that ends before its client comes back. A message
    /// the session also had through an ordinary subscription goes to the group as well
    /// (QoS 1 allows the duplicate; losing it does not).
    pub fn rehome_shared(&self, session: &crate::session::Session) {
        let groups: Vec<(ShareGroup, TopicFilter)> = session
            .subscriptions
            .values()
            .filter_map(|r| {
                r.filter
                    .share_group
                    .clone()
                    .map(|g| (g, r.filter.filter.clone()))
            })
            .collect();
        if groups.is_empty() {
            return;
        }
        let mut st = self.state.borrow_mut();
        for (_, delivery) in session.outbound.all() {
            let topic = &delivery.message.topic;
            let Some(group) = groups
                .iter()
                .find(|(_, f)| iotcore_core::topic::filter_matches(f.as_str(), topic))
            else {
                continue;
            };
            bump(&self.metrics.shared_rehomed_total, 1);
            self.deliver_local(
                &mut st,
                &delivery.message,
                false,
                std::slice::from_ref(group),
                &mut None,
                Origin::Rehomed,
            );
        }
    }

    /// Sends a shared-subscription message on to another shard that, by this shard's
    /// interest table, has a member of the group (the next one in turn).
    fn forward_shared(
        &self,
        st: &mut ShardState,
        message: &SharedMessage,
        group: &ShareGroup,
        filter: &TopicFilter,
    ) {
        let mut shards: Vec<ShardId> = Vec::new();
        st.interest.for_each_match(&message.topic, |(shard, g), f| {
            if *shard != self.id && g.as_ref() == Some(group) && f == filter {
                shards.push(*shard);
            }
        });
        if shards.is_empty() {
            return;
        }
        shards.sort_unstable();
        let counter = st
            .shard_turn
            .entry((group.clone(), filter.clone()))
            .or_insert(0);
        let to = shards[*counter % shards.len()];
        *counter = counter.wrapping_add(1);
        bump(&self.metrics.shared_forwarded_total, 1);
        self.post_to(
            to,
            ShardMsg::Publish {
                message: message.clone(),
                ordinary: false,
                shared: vec![(group.clone(), filter.clone())],
                ack: None,
                puback: None,
                forwarded: true,
            },
        );
    }

    /// One delivery to one session: written at once at QoS 0 (or dropped if the connection
    /// is congested or absent), queued into the session's window at QoS 1 and 2. A
    /// backlogged session takes the publisher's PUBACK (`flow.rs`).
    #[allow(clippy::too_many_arguments)]
    fn deliver_to(
        &self,
        st: &mut ShardState,
        key: SessionKey,
        message: &SharedMessage,
        sub_qos: QoS,
        retain: bool,
        subscription_ids: Vec<u32>,
        now: Instant,
        no_local: bool,
        puback: &mut Option<PubAckTo>,
    ) {
        let Some(slot) = st.sessions.get_mut(&key) else {
            return;
        };
        if no_local && message.publisher.as_ref() == Some(&slot.session.client_id) {
            return;
        }
        let qos = sub_qos.min(message.qos);
        if qos == QoS::AtMostOnce {
            let Some(conn) = &slot.conn else { return };
            if conn.congested(now) {
                bump(&self.metrics.dropped_qos0_total, 1);
                return;
            }
            conn.send_publish(message, qos, None, retain, false, &subscription_ids, now);
            bump(&self.metrics.messages_out_total, 1);
            return;
        }
        let persistent = slot.session.expiry_secs > 0;
        let delivery = Delivery {
            message: message.clone(),
            retain,
            subscription_ids,
            seq: if persistent {
                self.directory.next_seq()
            } else {
                0
            },
        };
        if persistent {
            self.persist_queued(&slot.session.client_id, &delivery, qos);
        }
        if let Err(full) = slot.session.outbound.enqueue(delivery, qos) {
            self.persist_done(&slot.session.client_id, &full.0);
            bump(&self.metrics.dropped_queue_full_total, 1);
            if let Some(conn) = &slot.conn {
                conn.congested(now);
            }
            self.hold_if_backlogged(slot, key, true, puback, now);
            return;
        }
        self.hold_if_backlogged(slot, key, false, puback, now);
        if slot.conn.is_some() {
            self.pump(slot, now);
        }
    }

    /// Refills a session's window after its connection's buffer drained.
    pub fn refill(&self, key: SessionKey) {
        let mut st = self.state.borrow_mut();
        if let Some(slot) = st.sessions.get_mut(&key) {
            self.pump(slot, Instant::now());
        }
    }

    /// Moves queued QoS 1/2 messages into the in-flight window and writes them.
    pub fn pump(&self, slot: &mut super::SessionSlot, now: Instant) {
        let Some(conn) = slot.conn.clone() else {
            return;
        };
        // A congested connection gets nothing more in flight; messages wait in the
        // (bounded) session queue until the client reads again.
        if conn.congested(now) {
            return;
        }
        let mut too_big = Vec::new();
        // Messages parked by a smaller window on reconnect come back with DUP set.
        let dropped = slot.session.outbound.fill_window_dup(
            |d| !d.message.is_expired(now),
            |pid, qos, dup, d| {
                if conn.send_publish(
                    &d.message,
                    qos,
                    Some(pid),
                    d.retain,
                    dup,
                    &d.subscription_ids,
                    now,
                ) {
                    bump(&self.metrics.messages_out_total, 1);
                } else {
                    too_big.push((pid, qos));
                }
            },
        );
        bump(&self.metrics.dropped_expired_total, dropped as u64);
        // A message the client cannot take is treated as delivered ([MQTT-3.1.2-25]).
        for (pid, qos) in too_big {
            let done = match qos {
                QoS::ExactlyOnce => slot
                    .session
                    .outbound
                    .on_pubrec(pid, iotcore_core::mqtt::ReasonCode::UnspecifiedError)
                    .ok()
                    .flatten(),
                _ => slot.session.outbound.on_puback(pid).ok(),
            };
            if let Some(d) = done {
                self.persist_done(&slot.session.client_id, &d);
            }
        }
        self.release_held(slot);
    }
}

impl Shard {
    /// Sends one retained message to a session that just subscribed (RETAIN flag set,
    /// [MQTT-3.3.1-9]).
    pub fn deliver_retained(
        &self,
        key: SessionKey,
        message: &SharedMessage,
        sub_qos: QoS,
        id: Option<u32>,
    ) {
        let now = Instant::now();
        if message.is_expired(now) {
            return;
        }
        let mut st = self.state.borrow_mut();
        self.deliver_to(
            &mut st,
            key,
            message,
            sub_qos,
            true,
            id.into_iter().collect(),
            now,
            false,
            &mut None,
        );
    }
}
