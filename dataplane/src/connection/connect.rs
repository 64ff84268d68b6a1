//! The CONNECT handshake: validate, authenticate, claim the client id (taking over any
//! session it had, on whatever shard), and answer CONNACK.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytestring::ByteString;
use iotcore_core::mqtt::{
    ConnAck, ConnAckProperties, Connect, Packet, ProtocolVersion, ReasonCode, UserProperty,
};
use iotcore_core::topic::{check_limits, TopicName};

use crate::config::{AnonymousPolicy, Config};
use crate::ids::{ClientId, SessionKey};
use crate::session::Session;
use crate::shard::mesh::ShardMsg;
use crate::shard::replies::Reply;
use crate::shard::Shard;

/// What the handshake settled for the rest of the connection.
pub struct Accepted {
    pub key: SessionKey,
    pub client_id: ClientId,
    pub keep_alive: Duration,
    pub connack: ConnAck,
}

/// A refusal: the CONNACK code to send before closing.
pub struct Refused(pub ReasonCode, pub &'static str);

fn is_loopback(peer: &SocketAddr) -> bool {
    match peer {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Checks that need no shared state.
pub fn validate(connect: &Connect, peer: &SocketAddr, config: &Config) -> Result<(), Refused> {
    let limits = &config.limits;
    let allowed = match config.auth.allow_anonymous {
        AnonymousPolicy::Any => true,
        AnonymousPolicy::Loopback => is_loopback(peer),
        AnonymousPolicy::None => false,
    };
    if !allowed {
        return Err(Refused(
            ReasonCode::NotAuthorized,
            "anonymous clients are accepted only from loopback (auth.allow_anonymous)",
        ));
    }
    if connect.properties.authentication_method.is_some() {
        return Err(Refused(
            ReasonCode::BadAuthenticationMethod,
            "enhanced authentication is not supported",
        ));
    }
    if connect.client_id.len() > limits.max_client_id_bytes {
        return Err(Refused(
            ReasonCode::ClientIdentifierNotValid,
            "client id longer than limits.max_client_id_bytes",
        ));
    }
    if connect.client_id.is_empty()
        && connect.protocol == ProtocolVersion::V311
        && !connect.clean_start
    {
        return Err(Refused(
            ReasonCode::ClientIdentifierNotValid,
            "[MQTT-3.1.3-8] an empty client id needs clean session",
        ));
    }
    if let Some(will) = &connect.will {
        if TopicName::new(will.topic.clone()).is_err()
            || check_limits(&will.topic, limits.max_topic_bytes, limits.max_topic_levels).is_err()
        {
            return Err(Refused(ReasonCode::TopicNameInvalid, "invalid will topic"));
        }
        if will.payload.len() > limits.max_payload_bytes {
            return Err(Refused(
                ReasonCode::PacketTooLarge,
                "will payload larger than limits.max_payload_bytes",
            ));
        }
    }
    Ok(())
}

fn assigned_client_id(shard: &Shard) -> ClientId {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    ClientId::from(format!("iotcore-{}-{nanos:08x}-{n}", shard.id.0))
}

/// Claims the client id, brings its old session here if it had one, and installs the
/// session for this connection. Returns `None` if a newer connection claimed the id while
/// this one was waiting.
pub async fn establish(shard: &Rc<Shard>, connect: &Connect) -> Option<Accepted> {
    let config = &shard.config;
    let limits = &config.limits;
    let v5 = connect.protocol == ProtocolVersion::V5;
    let assigned = connect.client_id.is_empty();
    let client_id = if assigned {
        crate::heap::long_lived(|| assigned_client_id(shard))
    } else {
        // A copy of its own: a slice would keep the whole CONNECT packet (will, password,
        // properties) alive for as long as the session lives.
        crate::heap::long_lived(|| ClientId::from(&*connect.client_id))
    };

    let requested_expiry = if v5 {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        limits.session_expiry_max_secs
    };
    let expiry = requested_expiry.min(limits.session_expiry_max_secs);

    let (key, previous) = shard.directory.claim(&client_id, shard.id);
    let old = match previous {
        None => None,
        Some(owner) if owner.shard == shard.id => {
            shard.take_local_session(owner.key, connect.clean_start)
        }
        Some(owner) => {
            let id = shard.request(owner.shard, |to| ShardMsg::TakeSession {
                key: owner.key,
                clean_start: connect.clean_start,
                reply: to,
            });
            let reply = futures_lite::future::or(
                async {
                    match shard.replies.wait(id).await {
                        Reply::Session(s) => s,
                        Reply::Ack | Reply::Http { .. } => None,
                    }
                },
                async {
                    glommio::timer::sleep(Duration::from_secs(5)).await;
                    None
                },
            )
            .await;
            reply.map(|b| *b)
        }
    };
    if !shard.directory.is_current(&client_id, key) {
        return None;
    }

    let client_receive_max = connect.properties.receive_maximum.unwrap_or(u16::MAX);
    let window = client_receive_max.min(limits.receive_maximum);
    let (mut session, session_present) = match old {
        Some(mut s) if !connect.clean_start => {
            s.outbound.set_window(window);
            (s, true)
        }
        _ => (
            Session::new(
                client_id.clone(),
                window,
                limits.max_queued_messages,
                limits.receive_maximum,
            ),
            false,
        ),
    };
    session.expiry_secs = expiry;
    session.will = connect.will.clone().map(Box::new);
    let acks = shard.install_session(key, session);
    shard.await_acks(acks).await;

    let keep_alive = effective_keep_alive(connect.keep_alive, config);
    let mut properties = ConnAckProperties::default();
    if v5 {
        properties.receive_maximum = Some(limits.receive_maximum);
        properties.maximum_packet_size = Some(limits.max_packet_bytes);
        properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
        properties.retain_available = Some(true);
        properties.wildcard_subscription_available = Some(true);
        properties.subscription_identifiers_available = Some(true);
        properties.shared_subscription_available = Some(true);
        if requested_expiry != expiry {
            properties.session_expiry_interval = Some(expiry);
        }
        if assigned {
            properties.assigned_client_identifier = Some(ByteString::from(client_id.as_str()));
        }
        if keep_alive != connect.keep_alive {
            properties.server_keep_alive = Some(keep_alive);
        }
        if connect.properties.request_response_information == Some(true) {
            properties.response_information =
                Some(ByteString::from(format!("$aws/responses/{client_id}")));
        }
        properties.user_properties.push(UserProperty {
            name: "shard".into(),
            value: shard.id.0.to_string().into(),
        });
    }
    Some(Accepted {
        key,
        client_id,
        keep_alive: Duration::from_secs(u64::from(keep_alive)),
        connack: ConnAck {
            session_present,
            code: ReasonCode::Success,
            properties,
        },
    })
}

/// The keep-alive the server enforces: the client's, clamped to the configured range, with
/// "none" (0) meaning the maximum, as AWS does.
fn effective_keep_alive(requested: u16, config: &Config) -> u16 {
    let l = &config.limits;
    if requested == 0 {
        l.keep_alive_max_secs
    } else {
        requested.clamp(l.keep_alive_min_secs, l.keep_alive_max_secs)
    }
}

pub fn refusal(version: ProtocolVersion, code: ReasonCode) -> Packet {
    let code = match version {
        ProtocolVersion::V5 => code,
        // 3.1.1 can only say what its six return codes say.
        ProtocolVersion::V311 => ReasonCode::from_v311_connack(code.to_v311_connack())
            .unwrap_or(ReasonCode::NotAuthorized),
    };
    Packet::ConnAck(ConnAck {
        session_present: false,
        code,
        properties: ConnAckProperties::default(),
    })
}
