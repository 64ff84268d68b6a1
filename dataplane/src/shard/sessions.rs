//! Sessions on a shard: installing one (new, resumed or moved here by a takeover), its
//! subscriptions in the tries and the interest table, and taking it away again.

use std::rc::Rc;

use iotcore_core::topic::{ShareGroup, TopicFilter};

use super::mesh::ShardMsg;
use super::replies::ReplyId;
use super::{LocalSub, SessionSlot, Shard, ShardState};
use crate::connection::handle::Kill;
use crate::ids::{ClientId, SessionKey};
use crate::message::Message;
use crate::session::{Session, SubscriptionRecord};

impl Shard {
    /// Puts a session on this shard, re-creating the trie entries of its subscriptions
    /// (a session moved from another shard brings only its records). Returns interest acks.
    pub fn install_session(&self, key: SessionKey, session: Session) -> Vec<ReplyId> {
        self.persist_installed(&session);
        let mut acks = Vec::new();
        let mut st = self.state.borrow_mut();
        for record in session.subscriptions.values() {
            acks.extend(self.add_to_tries(&mut st, key, record));
        }
        let slot = crate::heap::long_lived(|| {
            Box::new(SessionSlot {
                session,
                conn: None,
                held: None,
            })
        });
        st.sessions.insert(key, slot);
        acks
    }

    /// Adds or replaces one subscription of a session. Returns whether it existed before,
    /// and interest acks to await before the SUBACK (so a publisher on another shard that
    /// hears of the SUBACK cannot outrun the interest update).
    pub fn subscribe(&self, key: SessionKey, record: SubscriptionRecord) -> (bool, Vec<ReplyId>) {
        let mut st = self.state.borrow_mut();
        let full = record.filter.full();
        let existed = st
            .sessions
            .get(&key)
            .is_some_and(|s| s.session.subscriptions.contains_key(&full));
        let acks = if existed {
            // Same filter again: replace the options in place, the interest is unchanged.
            self.replace_in_tries(&mut st, key, &record);
            Vec::new()
        } else {
            self.add_to_tries(&mut st, key, &record)
        };
        if let Some(slot) = st.sessions.get_mut(&key) {
            slot.session.subscriptions.insert(full, record);
            self.persist_session(&slot.session, None);
        }
        (existed, acks)
    }

    /// Removes one subscription; false if the session had none on that filter.
    pub fn unsubscribe(&self, key: SessionKey, full_filter: &str) -> bool {
        let mut st = self.state.borrow_mut();
        let Some(record) = st
            .sessions
            .get_mut(&key)
            .and_then(|s| s.session.subscriptions.remove(full_filter))
        else {
            return false;
        };
        self.remove_from_tries(&mut st, key, &record);
        if let Some(slot) = st.sessions.get(&key) {
            self.persist_session(&slot.session, None);
        }
        true
    }

    /// Takes a session that ends with its connection (expiry 0) out of its shared
    /// subscriptions' groups at once, while its connection still closes: a message the
    /// group gets meanwhile goes to another member instead of to a session about to end
    /// with it. The subscriptions stay recorded until the session is removed.
    pub fn leave_shared_groups(&self, key: SessionKey) {
        let mut st = self.state.borrow_mut();
        let shared: Vec<SubscriptionRecord> = match st.sessions.get(&key) {
            Some(slot) if slot.session.expiry_secs == 0 => slot
                .session
                .subscriptions
                .values()
                .filter(|r| r.filter.share_group.is_some())
                .cloned()
                .collect(),
            _ => return,
        };
        for record in &shared {
            self.remove_from_tries(&mut st, key, record);
        }
    }

    /// Takes a session off this shard: its trie entries, its slot.
    pub fn remove_session(&self, key: SessionKey) -> Option<Box<SessionSlot>> {
        let mut st = self.state.borrow_mut();
        let mut slot = st.sessions.remove(&key)?;
        self.release_all_held(&mut slot);
        self.persist_ended(&slot.session.client_id);
        for record in slot.session.subscriptions.values() {
            self.remove_from_tries(&mut st, key, record);
        }
        Some(slot)
    }

    /// Another shard took this client id: close the connection, move the session out.
    /// The old connection's will is published now if its delay is zero or the new
    /// connection starts clean (the session ends); otherwise the session goes on and the
    /// will is dropped ([MQTT-3.1.3-9]). `key` is the session's as the directory recorded
    /// it: every session is installed under the key its claim returned (and a session
    /// whose claim was overtaken before it was installed is never installed).
    pub(super) fn surrender_session(
        self: &Rc<Self>,
        key: SessionKey,
        clean_start: bool,
    ) -> Option<Box<Session>> {
        let mut slot = self.remove_session(key)?;
        if let Some(conn) = slot.conn.take() {
            conn.kill(Kill::TakenOver);
        }
        if let Some(will) = slot.session.will.take() {
            if clean_start || will.delay_interval.unwrap_or(0) == 0 {
                self.publish_will(&slot.session.client_id, will);
            }
        }
        Some(Box::new(slot.session))
    }

    /// Publishes a will message as if its client had sent it.
    pub fn publish_will(
        self: &Rc<Self>,
        client_id: &ClientId,
        will: Box<iotcore_core::mqtt::Will>,
    ) {
        let will = *will;
        let mut properties = will.properties;
        let expires_at = properties
            .message_expiry_interval
            .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(u64::from(s)));
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let message = std::sync::Arc::new(Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties,
            expires_at,
            publisher: Some(client_id.clone()),
        });
        // Nobody waits on a will: the acks of a retained will are not needed.
        self.route_unacked(message);
    }

    /// A new subscription: into the tries, and into the interest table if its filter is new
    /// to this shard.
    fn add_to_tries(
        &self,
        st: &mut ShardState,
        key: SessionKey,
        record: &SubscriptionRecord,
    ) -> Vec<ReplyId> {
        self.replace_in_tries(st, key, record);
        self.interest_up(
            st,
            record.filter.share_group.clone(),
            record.filter.filter.clone(),
        )
    }

    /// Inserts (or overwrites) the trie entry of a subscription; the interest is unchanged.
    fn replace_in_tries(&self, st: &mut ShardState, key: SessionKey, record: &SubscriptionRecord) {
        let sub = LocalSub {
            filter: record.filter.filter.clone(),
            options: record.options,
            id: record.id,
        };
        let filter = &record.filter.filter;
        match &record.filter.share_group {
            None => {
                st.subs.insert(filter, key, sub);
            }
            Some(group) => {
                st.shared_subs.insert(filter, (group.clone(), key), sub);
            }
        }
    }

    fn remove_from_tries(&self, st: &mut ShardState, key: SessionKey, record: &SubscriptionRecord) {
        let filter = &record.filter.filter;
        let removed = match &record.filter.share_group {
            None => st.subs.remove(filter, &key).is_some(),
            Some(group) => st
                .shared_subs
                .remove(filter, &(group.clone(), key))
                .is_some(),
        };
        if removed {
            self.interest_down(st, record.filter.share_group.clone(), filter.clone());
        }
    }

    fn interest_up(
        &self,
        st: &mut ShardState,
        group: Option<ShareGroup>,
        filter: TopicFilter,
    ) -> Vec<ReplyId> {
        let count = st
            .local_interest
            .entry((group.clone(), filter.clone()))
            .or_insert(0);
        *count += 1;
        if *count > 1 {
            return Vec::new();
        }
        st.interest
            .insert(&filter, (self.id, group.clone()), filter.clone());
        let peers: Vec<_> = self.peers().collect();
        peers
            .into_iter()
            .map(|peer| {
                self.request(peer, |to| ShardMsg::Interest {
                    from: self.id,
                    filter: filter.clone(),
                    group: group.clone(),
                    add: true,
                    ack: Some(to),
                })
            })
            .collect()
    }

    fn interest_down(&self, st: &mut ShardState, group: Option<ShareGroup>, filter: TopicFilter) {
        let k = (group.clone(), filter.clone());
        let Some(count) = st.local_interest.get_mut(&k) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        st.local_interest.remove(&k);
        st.interest.remove(&filter, &(self.id, group.clone()));
        for peer in self.peers() {
            self.post_to(
                peer,
                ShardMsg::Interest {
                    from: self.id,
                    filter: filter.clone(),
                    group: group.clone(),
                    add: false,
                    ack: None,
                },
            );
        }
    }
}
