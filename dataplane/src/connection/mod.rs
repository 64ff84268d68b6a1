//! One client connection, from accept to close: the CONNECT handshake, then a read loop that
//! decodes packets straight out of the read buffer and handles each on the shard, while a
//! writer task sends what the shard encoded for it.

mod connect;
pub mod handle;
mod io;
mod packets;
mod writer;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;
use glommio::net::TcpStream;
use iotcore_core::mqtt::{
    Decoder, Disconnect, DisconnectProperties, Packet, ProtocolVersion, ReasonCode,
};

use crate::events::{self, DisconnectReason, Who};
use crate::ids::{ClientId, SessionKey};
use crate::metrics::bump;
use crate::shard::Shard;
use handle::{ConnHandle, Kill};

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent DISCONNECT; `publish_will` for reason 0x04.
    ClientDisconnect { publish_will: bool },
    /// The socket closed or failed.
    Lost,
    /// Nothing arrived for 1.5 times the keep-alive.
    KeepAlive,
    /// The client broke the protocol.
    Protocol { code: ReasonCode, message: String },
    /// The shard closed it.
    Killed(Kill),
}

impl End {
    fn lifecycle_reason(&self) -> DisconnectReason {
        match self {
            End::ClientDisconnect { .. } => DisconnectReason::ClientInitiated,
            End::Lost | End::Killed(Kill::WriteFailed) => DisconnectReason::ConnectionLost,
            End::KeepAlive => DisconnectReason::KeepAliveTimeout,
            End::Protocol { .. } => DisconnectReason::ClientError,
            End::Killed(Kill::TakenOver) => DisconnectReason::DuplicateClientId,
            End::Killed(Kill::SlowConsumer) => DisconnectReason::Throttled,
            End::Killed(Kill::Shutdown | Kill::Closing) => DisconnectReason::ServerInitiated,
        }
    }

    /// The DISCONNECT the server sends an MQTT 5 client, if any.
    fn server_disconnect(&self) -> Option<(ReasonCode, Option<String>)> {
        match self {
            End::ClientDisconnect { .. } | End::Lost | End::Killed(Kill::WriteFailed) => None,
            End::Killed(Kill::Closing) => None,
            End::KeepAlive => Some((ReasonCode::KeepAliveTimeout, None)),
            End::Protocol { code, message } => Some((*code, Some(message.clone()))),
            End::Killed(k) => Some((k.reason_code(), None)),
        }
    }
}

/// Counts a live connection for the shard until dropped.
struct LiveGuard(Rc<Shard>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0
            .live_connections
            .set(self.0.live_connections.get() - 1);
    }
}

/// State of a connection's read side after CONNECT.
pub(crate) struct Connection {
    shard: Rc<Shard>,
    conn: Rc<ConnHandle>,
    /// The shard's id for this connection (`Shard::register_connection`).
    conn_id: u64,
    key: SessionKey,
    client_id: ClientId,
    version: ProtocolVersion,
    /// Topic aliases the client set toward the server ([MQTT-3.3.2-12]).
    inbound_aliases: HashMap<u16, ByteString>,
    /// Session expiry from CONNECT; a DISCONNECT may not raise it from 0 ([MQTT-3.14.2-2]).
    connect_expiry: u32,
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    shard.live_connections.set(shard.live_connections.get() + 1);
    let _live = LiveGuard(shard.clone());
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, writer_half) = io::split(stream);
    let mut buf = BytesMut::new();
    let mut decoder = Decoder::new(shard.config.limits.max_packet_bytes);

    let connect_timeout = Duration::from_secs(shard.config.limits.connect_timeout_secs);
    let handshake_deadline = shard.handshake_deadline(connect_timeout);
    // The handshake's futures and the CONNECT packet are boxed: inline, the largest of them
    // would size the connection's task for its whole life (idle memory per connection).
    let connect = {
        let first = Box::pin(futures_lite::future::or(
            async { Some(read_packet(&shard, &mut reader, &mut buf, &mut decoder).await) },
            async {
                handshake_deadline.notified().await;
                None
            },
        ))
        .await;
        match first {
            None => {
                tracing::debug!(%peer, "no CONNECT within connect_timeout_secs; closing");
                return;
            }
            Some(Ok(Some(Packet::Connect(c)))) => Box::new(c),
            Some(Ok(_)) => return,
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "bad first packet");
                if let iotcore_core::mqtt::DecodeError::UnsupportedProtocolVersion { .. } = e {
                    // [MQTT-3.1.2-2]: answer with return code 0x01 and close.
                    let conn = Rc::new(ConnHandle::new(
                        ProtocolVersion::V311,
                        u32::MAX,
                        0,
                        usize::MAX,
                        Duration::from_secs(1),
                    ));
                    conn.send(&connect::refusal(
                        ProtocolVersion::V311,
                        ReasonCode::UnsupportedProtocolVersion,
                    ));
                    conn.kill(Kill::Closing);
                    Box::pin(writer::run(shard.clone(), conn, writer_half)).await;
                }
                return;
            }
        }
    };

    let version = connect.protocol;
    let limits = &shard.config.limits;
    let conn = Rc::new(ConnHandle::new(
        version,
        connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
        if version == ProtocolVersion::V5 {
            connect.properties.topic_alias_maximum.unwrap_or(0)
        } else {
            0
        },
        limits.max_outbound_bytes,
        Duration::from_secs(limits.slow_consumer_timeout_secs),
    ));
    let writer_task = glommio::spawn_local(writer::run(shard.clone(), conn.clone(), writer_half));

    if let Err(refused) = connect::validate(&connect, &peer, &shard.config) {
        tracing::info!(%peer, client_id = %connect.client_id, reason = refused.1, "CONNECT refused");
        conn.send(&connect::refusal(version, refused.0));
        close(&conn, writer_task).await;
        return;
    }
    // Unpacked in a block so the CONNACK and CONNECT are gone from the task's state before
    // the read loop (a partly moved local keeps its space until its scope ends).
    let (key, client_id, keep_alive, connect_expiry) = {
        let Some(accepted) = Box::pin(connect::establish(&shard, &connect)).await else {
            close(&conn, writer_task).await;
            return;
        };
        conn.send(&Packet::ConnAck(accepted.connack));
        (
            accepted.key,
            accepted.client_id,
            accepted.keep_alive,
            connect.properties.session_expiry_interval.unwrap_or(0),
        )
    };
    drop(connect);
    let span = tracing::debug_span!("conn", client_id = %client_id, shard = shard.id.0);
    let _enter = span.enter();
    let conn_id = shard.register_connection(conn.clone());
    bump(&shard.metrics.connections_total, 1);
    conn.session_key.set(Some(key));
    attach(&shard, key, &conn);

    let mut connection = Connection {
        shard: shard.clone(),
        conn: conn.clone(),
        conn_id,
        key,
        client_id,
        version,
        inbound_aliases: HashMap::new(),
        connect_expiry,
    };
    let session_identifier = connection.session_identifier();
    connection.emit(
        |who| events::connected(who, &peer.ip().to_string()),
        &session_identifier,
    );

    let keep_alive = keep_alive.mul_f64(1.5);
    let end = connection
        .read_loop(&mut reader, &mut buf, &mut decoder, keep_alive)
        .await;
    tracing::debug!(?end, "connection ended");
    if version == ProtocolVersion::V5 {
        if let Some((code, message)) = end.server_disconnect() {
            conn.send(&Packet::Disconnect(Disconnect {
                reason: code,
                properties: DisconnectProperties {
                    reason_string: message.map(Into::into),
                    ..Default::default()
                },
            }));
        }
    }
    if matches!(end, End::Killed(Kill::SlowConsumer)) {
        bump(&shard.metrics.slow_consumer_disconnects_total, 1);
    }
    close(&conn, writer_task).await;
    shard.unregister_connection(conn_id);
    connection.detach(&end);
    connection.emit(
        |who| events::disconnected(who, end.lifecycle_reason()),
        &session_identifier,
    );
}

/// Lets the writer send what is pending, then stops it (waiting at most a second: a client
/// that never reads must not hold the connection open).
async fn close(conn: &Rc<ConnHandle>, writer_task: glommio::Task<()>) {
    conn.kill(Kill::Closing);
    futures_lite::future::or(writer_task, async {
        glommio::timer::sleep(Duration::from_secs(1)).await;
    })
    .await;
}

/// Binds the connection to its session and resends what was in flight ([MQTT-4.4.0-1]).
fn attach(shard: &Rc<Shard>, key: SessionKey, conn: &Rc<ConnHandle>) {
    let mut st = shard.state.borrow_mut();
    let Some(slot) = st.sessions.get_mut(&key) else {
        return;
    };
    slot.conn = Some(conn.clone());
    let now = Instant::now();
    for (pid, qos, phase, d) in slot.session.outbound.in_flight() {
        match phase {
            iotcore_core::session::Phase::AwaitingPubComp => {
                conn.send(&Packet::PubRel(iotcore_core::mqtt::PubResponse::success(
                    pid,
                )));
            }
            _ => {
                conn.send_publish(
                    &d.message,
                    qos,
                    Some(pid),
                    d.retain,
                    true,
                    &d.subscription_ids,
                    now,
                );
            }
        }
    }
    shard.pump(slot, now);
}

/// Reads until one whole packet is decoded: `Ok(None)` on end of stream.
async fn read_packet(
    shard: &Shard,
    reader: &mut io::Half,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Result<Option<Packet>, iotcore_core::mqtt::DecodeError> {
    loop {
        if let Some(p) = decoder.decode(buf)? {
            return Ok(Some(p));
        }
        match reader.read_into(&shard.read_scratch, buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

impl Connection {
    fn session_identifier(&self) -> String {
        let st = self.shard.state.borrow();
        st.sessions
            .get(&self.key)
            .map(|s| s.session.session_identifier.clone())
            .unwrap_or_default()
    }

    /// Publishes a lifecycle event about this client.
    fn emit(
        &self,
        make: impl FnOnce(&Who<'_>) -> Option<crate::message::SharedMessage>,
        session_identifier: &str,
    ) {
        let who = Who {
            client_id: &self.client_id,
            session_identifier,
            principal: "anonymous",
            version_number: self.key.0,
        };
        if let Some(message) = make(&who) {
            self.shard.route_unacked(message);
        }
    }

    async fn read_loop(
        &mut self,
        reader: &mut io::Half,
        buf: &mut BytesMut,
        decoder: &mut Decoder,
        keep_alive: Duration,
    ) -> End {
        enum Wake {
            Read(std::io::Result<usize>),
            Killed,
            Idle,
        }
        // One keep-alive timer, re-armed only when it fires early: creating and cancelling
        // a timer for every read cost more than the read at low message rates.
        let mut last_read = Instant::now();
        let mut idle_timer = glommio::timer::Timer::new(keep_alive);
        loop {
            loop {
                match decoder.decode(buf) {
                    Ok(Some(packet)) => match self.handle(packet) {
                        Ok(None) => {}
                        Ok(Some(later)) => {
                            if let Err(end) = Box::pin(self.finish(later)).await {
                                return end;
                            }
                        }
                        Err(end) => return end,
                    },
                    Ok(None) => {
                        // Everything decoded: drop the (now empty) buffer so an idle
                        // connection holds no read memory; decoded messages keep what
                        // they point into alive on their own.
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                        break;
                    }
                    Err(e) => {
                        return End::Protocol {
                            code: e.reason_code(),
                            message: e.to_string(),
                        }
                    }
                }
            }
            self.shard.backpressure().await;
            // A client that keeps the socket full would otherwise never let this task
            // return Pending, starving every other connection of the shard.
            futures_lite::future::yield_now().await;
            if let Some(kill) = self.conn.killed() {
                return End::Killed(kill);
            }
            let wake = futures_lite::future::or(
                async { Wake::Read(reader.read_into(&self.shard.read_scratch, buf).await) },
                futures_lite::future::or(
                    async {
                        self.conn.kill_wake.notified().await;
                        Wake::Killed
                    },
                    async {
                        if keep_alive.is_zero() {
                            futures_lite::future::pending::<()>().await;
                        }
                        (&mut idle_timer).await;
                        Wake::Idle
                    },
                ),
            )
            .await;
            match wake {
                Wake::Read(Ok(0)) | Wake::Read(Err(_)) => return End::Lost,
                Wake::Read(Ok(n)) => {
                    last_read = Instant::now();
                    self.shard.clock.set(last_read);
                    bump(&self.shard.metrics.bytes_in_total, n as u64);
                }
                Wake::Killed => {
                    if let Some(kill) = self.conn.killed() {
                        return End::Killed(kill);
                    }
                }
                Wake::Idle => {
                    let quiet = last_read.elapsed();
                    if quiet >= keep_alive {
                        return End::KeepAlive;
                    }
                    idle_timer = glommio::timer::Timer::new(keep_alive - quiet);
                }
            }
        }
    }

    /// After the socket is closed: end or park the session, and deal with the will.
    fn detach(&self, end: &End) {
        let shard = &self.shard;
        let mut will_now = None;
        let mut will_delay = None;
        let expiry;
        {
            let mut st = shard.state.borrow_mut();
            let Some(slot) = st.sessions.get_mut(&self.key) else {
                // Taken over: the session and its will went with it.
                return;
            };
            slot.conn = None;
            expiry = slot.session.expiry_secs;
            shard.persist_session(&slot.session, Some(crate::stored_message::unix_ms()));
            let keep_will = match end {
                End::ClientDisconnect { publish_will } => *publish_will,
                End::Killed(Kill::Shutdown) => false,
                _ => true,
            };
            if !keep_will {
                slot.session.will = None;
            }
            if let Some(will) = &slot.session.will {
                let delay = will.delay_interval.unwrap_or(0).min(expiry);
                if delay == 0 {
                    will_now = slot.session.will.take();
                } else {
                    will_delay = Some(delay);
                }
            }
        }
        if let Some(will) = will_now {
            shard.publish_will(&self.client_id, will);
        }
        if shard.shutting_down.get() {
            return;
        }
        if expiry == 0 {
            shard.remove_session(self.key);
            shard.directory.release(&self.client_id, self.key);
        } else {
            spawn_expiry(shard.clone(), self.key, self.client_id.clone(), expiry);
        }
        if let Some(delay) = will_delay {
            spawn_delayed_will(shard.clone(), self.key, self.client_id.clone(), delay);
        }
    }
}

/// Ends an offline session once its expiry passes, unless a connection took it back (which
/// gives it a new key, so this key no longer finds it).
pub(crate) fn spawn_expiry(shard: Rc<Shard>, key: SessionKey, client_id: ClientId, secs: u32) {
    glommio::spawn_local(async move {
        glommio::timer::sleep(Duration::from_secs(u64::from(secs))).await;
        let offline = shard
            .state
            .borrow()
            .sessions
            .get(&key)
            .is_some_and(|s| s.conn.is_none());
        if !offline {
            return;
        }
        if let Some(mut slot) = shard.remove_session(key) {
            shard.directory.release(&client_id, key);
            if let Some(will) = slot.session.will.take() {
                shard.publish_will(&client_id, will);
            }
        }
    })
    .detach();
}

/// Publishes a delayed will unless the client came back first ([MQTT-3.1.3-9]).
fn spawn_delayed_will(shard: Rc<Shard>, key: SessionKey, client_id: ClientId, secs: u32) {
    glommio::spawn_local(async move {
        glommio::timer::sleep(Duration::from_secs(u64::from(secs))).await;
        let will = {
            let mut st = shard.state.borrow_mut();
            match st.sessions.get_mut(&key) {
                Some(slot) if slot.conn.is_none() => slot.session.will.take(),
                _ => None,
            }
        };
        if let Some(will) = will {
            shard.publish_will(&client_id, will);
        }
    })
    .detach();
}
