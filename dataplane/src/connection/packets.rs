//! Handling of each packet a connected client may send.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iotcore_core::mqtt::{
    AckProperties, Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use iotcore_core::session::InboundQos2;
use iotcore_core::shadow::{Rejection, ShadowKey, ShadowName, ThingName};
use iotcore_core::topic::{check_limits, SubscriptionFilter, TopicName};

use super::{Connection, End};
use crate::events;
use crate::message::{Message, SharedMessage};
use crate::metrics::bump;
use crate::session::SubscriptionRecord;
use crate::shadow::service::{self as shadow_service, Origin, PubAckTo, ShadowRequest};

fn protocol(code: ReasonCode, message: impl Into<String>) -> End {
    End::Protocol {
        code,
        message: message.into(),
    }
}

/// Topic prefixes clients may not publish to: the broker speaks there.
const BROKER_ONLY_PREFIXES: [&str; 2] = ["$aws/events/", "$SYS/"];

/// A routed PUBLISH whose acknowledgement waits for peers (a retained change).
pub(super) struct PendingAck {
    acks: Vec<crate::shard::replies::ReplyId>,
    qos: QoS,
    packet_id: Option<PacketId>,
}

/// What a packet still needs after its synchronous part: a wait on peers. Kept out of
/// line (boxed by the caller) because an async handler's state would otherwise be part of
/// every connection's task for its whole life, idle or not.
pub(super) enum Later {
    Publish(PendingAck),
    Subscribe(Subscribe),
}

impl Connection {
    /// Handles a packet as far as it can without waiting; almost every packet is done here.
    pub(super) fn handle(&mut self, packet: Packet) -> Result<Option<Later>, End> {
        match packet {
            Packet::Publish(p) => Ok(self.on_publish(p)?.map(Later::Publish)),
            Packet::Subscribe(s) => Ok(Some(Later::Subscribe(s))),
            other => self.handle_control(other).map(|()| None),
        }
    }

    /// The part of a packet's handling that waits on peers.
    pub(super) async fn finish(&mut self, later: Later) -> Result<(), End> {
        match later {
            Later::Publish(pending) => {
                self.shard.await_acks(pending.acks).await;
                self.acknowledge(pending.qos, pending.packet_id);
                Ok(())
            }
            Later::Subscribe(s) => self.on_subscribe(s).await,
        }
    }

    fn handle_control(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::PubAck(r) => {
                self.with_session(|shard, slot| {
                    if let Ok(d) = slot.session.outbound.on_puback(r.packet_id) {
                        shard.persist_done(&slot.session.client_id, &d);
                        shard.pump(slot, shard.clock.get());
                    }
                });
                Ok(())
            }
            Packet::PubRec(r) => {
                let mut reply = None;
                self.with_session(|shard, slot| {
                    match slot.session.outbound.on_pubrec(r.packet_id, r.reason) {
                        Ok(None) => reply = Some(ReasonCode::Success),
                        Ok(Some(d)) => {
                            shard.persist_done(&slot.session.client_id, &d);
                            shard.pump(slot, shard.clock.get());
                        }
                        Err(_) => reply = Some(ReasonCode::PacketIdentifierNotFound),
                    }
                });
                if let Some(reason) = reply {
                    self.conn
                        .send(&Packet::PubRel(self.response(r.packet_id, reason)));
                }
                Ok(())
            }
            Packet::PubRel(r) => {
                let mut found = false;
                self.with_session(|_, slot| found = slot.session.inbound.on_pubrel(r.packet_id));
                let reason = if found {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                self.conn
                    .send(&Packet::PubComp(self.response(r.packet_id, reason)));
                Ok(())
            }
            Packet::PubComp(r) => {
                self.with_session(|shard, slot| {
                    if let Ok(d) = slot.session.outbound.on_pubcomp(r.packet_id) {
                        shard.persist_done(&slot.session.client_id, &d);
                        shard.pump(slot, shard.clock.get());
                    }
                });
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.conn.send(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => {
                if let Some(expiry) = d.properties.session_expiry_interval {
                    if self.connect_expiry == 0 && expiry != 0 {
                        return Err(protocol(
                            ReasonCode::ProtocolError,
                            "[MQTT-3.14.2-2] session expiry cannot be set at DISCONNECT when CONNECT had 0",
                        ));
                    }
                    let max = self.shard.config.limits.session_expiry_max_secs;
                    self.with_session(|_, slot| slot.session.expiry_secs = expiry.min(max));
                }
                Err(End::ClientDisconnect {
                    publish_will: d.reason == ReasonCode::DisconnectWithWillMessage,
                })
            }
            Packet::Connect(_) => Err(protocol(
                ReasonCode::ProtocolError,
                "[MQTT-3.1.0-2] a second CONNECT is a protocol error",
            )),
            Packet::Auth(_) => Err(protocol(
                ReasonCode::ProtocolError,
                "[MQTT-4.12.0-1] AUTH without an authentication method in CONNECT",
            )),
            other => Err(protocol(
                ReasonCode::ProtocolError,
                format!("{} is only sent by a server", other.name()),
            )),
        }
    }

    fn response(&self, packet_id: iotcore_core::mqtt::PacketId, reason: ReasonCode) -> PubResponse {
        PubResponse {
            packet_id,
            reason: if self.version == ProtocolVersion::V5 {
                reason
            } else {
                ReasonCode::Success
            },
            properties: AckProperties::default(),
        }
    }

    /// Runs `f` on this connection's session slot, if the session is still here.
    fn with_session(&self, f: impl FnOnce(&crate::shard::Shard, &mut crate::shard::SessionSlot)) {
        let mut st = self.shard.state.borrow_mut();
        if let Some(slot) = st.sessions.get_mut(&self.key) {
            f(&self.shard, slot);
        }
    }

    /// Refuses one PUBLISH: an MQTT 5 client at QoS 1/2 learns why from the ack and stays
    /// connected; otherwise the connection ends with the code.
    fn refuse_publish(&self, p: &Publish, code: ReasonCode, why: &str) -> Result<(), End> {
        match (self.version, p.qos, p.packet_id) {
            (ProtocolVersion::V5, QoS::AtLeastOnce, Some(id)) => {
                self.conn.send(&Packet::PubAck(self.response(id, code)));
                Ok(())
            }
            (ProtocolVersion::V5, QoS::ExactlyOnce, Some(id)) => {
                self.conn.send(&Packet::PubRec(self.response(id, code)));
                Ok(())
            }
            _ => Err(protocol(code, why.to_string())),
        }
    }

    /// Checks and routes a PUBLISH. Acknowledges it at once, or returns what to wait for
    /// before acknowledging.
    fn on_publish(&mut self, mut p: Publish) -> Result<Option<PendingAck>, End> {
        let limits = &self.shard.config.limits;
        bump(&self.shard.metrics.messages_in_total, 1);
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(protocol(
                ReasonCode::ProtocolError,
                "[MQTT-3.3.4-6] a PUBLISH from a client must not carry a subscription identifier",
            ));
        }
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias == 0 || alias > limits.topic_alias_maximum {
                return Err(protocol(
                    ReasonCode::TopicAliasInvalid,
                    format!(
                        "[MQTT-3.3.2-9] topic alias {alias} is above the maximum {}",
                        limits.topic_alias_maximum
                    ),
                ));
            }
            if p.topic.is_empty() {
                match self.inbound_aliases.as_ref().and_then(|a| a.get(&alias)) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        return Err(protocol(
                            ReasonCode::ProtocolError,
                            format!("[MQTT-3.3.4-?] topic alias {alias} was never set"),
                        ))
                    }
                }
            } else {
                self.inbound_aliases
                    .get_or_insert_with(Box::default)
                    .insert(alias, p.topic.clone());
            }
        }
        if p.payload.len() > limits.max_payload_bytes {
            return Err(protocol(
                ReasonCode::PacketTooLarge,
                format!(
                    "payload of {} bytes exceeds limits.max_payload_bytes ({})",
                    p.payload.len(),
                    limits.max_payload_bytes
                ),
            ));
        }
        if TopicName::new(p.topic.clone()).is_err() {
            return Err(protocol(
                ReasonCode::TopicNameInvalid,
                "[MQTT-4.7.3-1] invalid topic name",
            ));
        }
        if let Err(e) = check_limits(&p.topic, limits.max_topic_bytes, limits.max_topic_levels) {
            return self
                .refuse_publish(&p, ReasonCode::TopicNameInvalid, &e.to_string())
                .map(|()| None);
        }
        if BROKER_ONLY_PREFIXES
            .iter()
            .any(|pre| p.topic.starts_with(pre))
        {
            return self
                .refuse_publish(
                    &p,
                    ReasonCode::NotAuthorized,
                    "topic reserved for the broker",
                )
                .map(|()| None);
        }
        if p.qos == QoS::ExactlyOnce {
            let Some(id) = p.packet_id else {
                return Err(protocol(
                    ReasonCode::ProtocolError,
                    "QoS 2 PUBLISH without packet id",
                ));
            };
            let mut state = Ok(InboundQos2::New);
            self.with_session(|_, slot| state = slot.session.inbound.on_qos2_publish(id));
            match state {
                Err(_) => {
                    return Err(protocol(
                        ReasonCode::ReceiveMaximumExceeded,
                        "[MQTT-3.3.4-9] more QoS 2 publishes in flight than the receive maximum",
                    ))
                }
                Ok(InboundQos2::Duplicate) => {
                    // Already routed: acknowledge again, do not deliver twice.
                    self.conn
                        .send(&Packet::PubRec(self.response(id, ReasonCode::Success)));
                    return Ok(None);
                }
                Ok(InboundQos2::New) => {}
            }
        }

        let mut properties = p.properties;
        properties.topic_alias = None;
        let expires_at = properties
            .message_expiry_interval
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let message: SharedMessage = Arc::new(Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            expires_at,
            publisher: Some(self.client_id.clone()),
        });
        // A QoS 1 PUBACK someone else may send: a shadow request's goes with its answer, and
        // a backlogged subscriber may hold any other (publisher flow control, flow.rs).
        let mut puback = match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(packet_id)) => Some(PubAckTo {
                shard: self.shard.id,
                conn: self.conn_id,
                packet_id,
            }),
            _ => None,
        };
        let offered = puback.is_some();
        let acks = if message.topic.starts_with("$aws/things/") {
            let acks = self.shard.route(message.clone());
            // Not when persistent sessions' durable copies must be awaited first.
            let puback = puback.filter(|_| acks.is_empty());
            if self.shadow_request(&message, puback) && puback.is_some() {
                return Ok(None);
            }
            acks
        } else {
            let acks = self.shard.route_offering(message, &mut puback);
            if offered && puback.is_none() {
                return Ok(None);
            }
            acks
        };
        if !acks.is_empty() {
            return Ok(Some(PendingAck {
                acks,
                qos: p.qos,
                packet_id: p.packet_id,
            }));
        }
        self.acknowledge(p.qos, p.packet_id);
        Ok(None)
    }

    /// A PUBLISH on a shadow request topic also goes to the shadow service (the message is
    /// routed to subscribers as well, as AWS does). A bad thing or shadow name is answered
    /// on `/rejected` at once. True when the service took the request, and with it `puback`.
    fn shadow_request(&self, message: &Message, puback: Option<PubAckTo>) -> bool {
        let Some(topic) = crate::shadow::topics::parse(&message.topic) else {
            return false;
        };
        let key = ThingName::new(topic.thing).and_then(|thing| {
            Ok(ShadowKey {
                thing,
                name: topic.shadow.map(ShadowName::new).transpose()?,
            })
        });
        match key {
            Ok(key) => {
                self.shard.shadow_request(ShadowRequest {
                    key,
                    op: topic.op,
                    payload: message.payload.clone(),
                    origin: Origin::Mqtt(puback),
                });
                true
            }
            Err(e) => {
                let rejection = Rejection {
                    code: 400,
                    message: e.to_string(),
                    client_token: shadow_service::client_token(&message.payload),
                };
                let out = shadow_service::rejected(
                    topic.prefix,
                    topic.op.as_str(),
                    Origin::Mqtt(None),
                    &rejection,
                    crate::shadow::now_secs(),
                );
                if let shadow_service::Output::Publish { topic, payload } = out {
                    self.shard.route_unacked(Arc::new(Message {
                        topic: topic.into(),
                        payload: payload.into(),
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        properties: Default::default(),
                        expires_at: None,
                        publisher: None,
                    }));
                }
                false
            }
        }
    }

    /// PUBACK or PUBREC for a routed PUBLISH.
    fn acknowledge(&self, qos: QoS, packet_id: Option<PacketId>) {
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                self.conn.send(&Packet::PubAck(PubResponse::success(id)));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                self.conn.send(&Packet::PubRec(PubResponse::success(id)));
            }
            _ => {}
        }
    }

    async fn on_subscribe(&mut self, s: Subscribe) -> Result<(), End> {
        let limits = &self.shard.config.limits;
        let v5 = self.version == ProtocolVersion::V5;
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut acks = Vec::new();
        let mut retained_wanted = Vec::new();
        let mut subscribed = Vec::new();
        for (index, (text, options)) in s.filters.into_iter().enumerate() {
            let failure = |code: ReasonCode| {
                if v5 {
                    code
                } else {
                    ReasonCode::UnspecifiedError
                }
            };
            if index >= limits.max_filters_per_subscribe {
                reasons.push(failure(ReasonCode::QuotaExceeded));
                continue;
            }
            let filter = match SubscriptionFilter::parse(text.clone()) {
                Ok(f) => f,
                Err(_) => {
                    reasons.push(failure(ReasonCode::TopicFilterInvalid));
                    continue;
                }
            };
            if check_limits(
                filter.filter.as_str(),
                limits.max_topic_bytes,
                limits.max_topic_levels,
            )
            .is_err()
            {
                reasons.push(failure(ReasonCode::TopicFilterInvalid));
                continue;
            }
            if filter.share_group.is_some() && options.no_local {
                return Err(protocol(
                    ReasonCode::ProtocolError,
                    "[MQTT-3.8.3-4] No Local on a shared subscription",
                ));
            }
            let count = self
                .shard
                .state
                .borrow()
                .sessions
                .get(&self.key)
                .map_or(0, |s| {
                    s.session.subscriptions.len()
                        - usize::from(s.session.subscriptions.contains_key(&text))
                });
            if count >= limits.max_subscriptions_per_connection {
                reasons.push(failure(ReasonCode::QuotaExceeded));
                continue;
            }
            let shared = filter.share_group.is_some();
            let record = SubscriptionRecord {
                filter: filter.clone(),
                options,
                id: s.properties.subscription_identifier,
            };
            let (existed, more_acks) = self.shard.subscribe(self.key, record);
            acks.extend(more_acks);
            reasons.push(match options.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
            subscribed.push(text.to_string());
            use iotcore_core::mqtt::RetainHandling;
            let send_retained = !shared
                && match options.retain_handling {
                    RetainHandling::OnSubscribe => true,
                    RetainHandling::OnNewSubscribe => !existed,
                    RetainHandling::Never => false,
                };
            if send_retained {
                retained_wanted.push((
                    filter.filter,
                    options.qos,
                    s.properties.subscription_identifier,
                ));
            }
        }
        self.shard.await_acks(acks).await;
        self.conn.send(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: AckProperties::default(),
            reasons,
        }));
        for (filter, qos, id) in retained_wanted {
            for message in self.shard.retained_matching(&filter) {
                self.shard.deliver_retained(self.key, &message, qos, id);
            }
        }
        if !subscribed.is_empty() {
            self.emit(|who| events::subscriptions(who, true, &subscribed));
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        let mut removed = Vec::new();
        for filter in &u.filters {
            if self.shard.unsubscribe(self.key, filter) {
                reasons.push(ReasonCode::Success);
                removed.push(filter.to_string());
            } else {
                reasons.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        self.conn.send(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: AckProperties::default(),
            reasons: if self.version == ProtocolVersion::V5 {
                reasons
            } else {
                Vec::new()
            },
        }));
        if !removed.is_empty() {
            self.emit(|who| events::subscriptions(who, false, &removed));
        }
    }
}
