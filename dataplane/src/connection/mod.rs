//! One client connection, from accept to close: the CONNECT handshake, then a read loop that
//! decodes packets straight out of the read buffer and handles each on the shard, while a
//! writer task sends what the shard encoded for it.

pub mod affinity;
mod connect;
pub mod handle;
mod io;
mod packets;
pub mod park;
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
            End::Protocol { .. } => DisconnectReason::ClientError,
            End::Killed(Kill::TakenOver) => DisconnectReason::DuplicateClientId,
            End::Killed(Kill::SlowConsumer) => DisconnectReason::Throttled,
            End::Killed(Kill::Shutdown | Kill::Closing) => DisconnectReason::ServerInitiated,
            End::Killed(Kill::KeepAlive) => DisconnectReason::KeepAliveTimeout,
        }
    }

    /// The DISCONNECT the server sends an MQTT 5 client, if any.
    fn server_disconnect(&self) -> Option<(ReasonCode, Option<String>)> {
        match self {
            End::ClientDisconnect { .. } | End::Lost | End::Killed(Kill::WriteFailed) => None,
            End::Killed(Kill::Closing) => None,
            End::Protocol { code, message } => Some((*code, Some(message.clone()))),
            End::Killed(k) => Some((k.reason_code(), None)),
        }
    }
}

/// What handling the next buffered packet came to.
enum Step {
    /// Handled; go on.
    Done,
    /// Handled up to a wait (see `packets::Later`).
    Later(packets::Later),
    /// Nothing whole left in the buffer.
    Drained,
    End(End),
}

/// Counts an accepted connection for the shard until dropped, through its handshake; from
/// CONNACK on its `Connection` holds the count (parked ones stay counted), so shutdown
/// waits for every goodbye.
struct LiveGuard(Rc<Shard>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        leave(&self.0);
    }
}

/// A connection counted by `serve` is gone.
fn leave(shard: &Shard) {
    shard.live_connections.set(shard.live_connections.get() - 1);
    shard.placement.leave(shard.id);
}

impl Drop for Connection {
    fn drop(&mut self) {
        leave(&self.shard);
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
    /// Topic aliases the client set toward the server ([MQTT-3.3.2-12]). Boxed once the
    /// first is set: most clients set none, and parked connections keep this (`park.rs`).
    /// (The box is the point: 8 bytes in the struct where the map itself is 48.)
    #[allow(clippy::box_collection)]
    inbound_aliases: Option<Box<HashMap<u16, ByteString>>>,
    /// Session expiry from CONNECT; a DISCONNECT may not raise it from 0 ([MQTT-3.14.2-2]).
    connect_expiry: u32,
}

/// The task of one accepted connection, already counted for this shard by
/// `Placement::place`.
///
/// The handshake is boxed and freed once done: an async fn's state is as large as its
/// largest await point, and the handshake's (the socket before it is split, the CONNECT,
/// the refusal paths) would otherwise size the task of every connection for its whole
/// life. It is boxed before the task is made, so not even the socket's argument slot stays
/// in the task. What the connection keeps is `Live`.
///
/// `read` holds bytes already read from the socket (by the shard that handed it over);
/// `peer` is the client's address when the accept gave it.
pub fn serve(
    shard: Rc<Shard>,
    stream: TcpStream,
    read: BytesMut,
    peer: Option<std::net::SocketAddr>,
) -> impl std::future::Future<Output = ()> {
    shard.live_connections.set(shard.live_connections.get() + 1);
    let live_guard = LiveGuard(shard.clone());
    let handshake = Box::pin(handshake(shard, stream, read, peer));
    async move {
        let Some(live) = handshake.await else {
            drop(live_guard);
            return;
        };
        // The count passes to the `Connection`, made right before the handshake returned
        // (no await between), whose drop gives it back. Not a field of it: the shard is
        // already one, and parked connections keep their `Connection` (`park.rs`).
        std::mem::forget(live_guard);
        serve_live(live).await;
    }
}

/// Serves a connection after CONNACK until it ends or parks.
async fn serve_live(mut live: Live) {
    let shard = &live.connection.shard;
    shard
        .parking
        .watch(live.connection.conn_id, shard.clock.get());
    if live.run().await {
        park(live);
    }
}

/// Puts an idle connection to rest (`park.rs`): its tasks end, its socket waits in the
/// shard's epoll instance. Where that fails it goes on as before.
fn park(live: Live) {
    let Live {
        connection, reader, ..
    } = live;
    let shard = connection.shard.clone();
    // The writer has ended, so the reader's half is the stream's only owner.
    let stream = match reader.into_stream() {
        Ok(stream) => stream,
        Err(reader) => {
            tracing::warn!("a connection to park still shares its stream; it stays awake");
            return resume(connection, reader);
        }
    };
    let socket = match affinity::duplicate(&stream) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot park a connection");
            return resume(connection, io::Half::new(stream));
        }
    };
    // Closes the original descriptor and cancels the stream's armed poll.
    drop(stream);
    let resting = park::Resting::new(connection, socket);
    match shard.parking.park(resting) {
        Ok(()) => bump(&shard.metrics.connections_parked_total, 1),
        Err(resting) => wake(*resting),
    }
}

/// Serves a parked connection again.
fn wake(resting: park::Resting) {
    let park::Resting {
        connection, socket, ..
    } = resting;
    resume(connection, io::Half::new(stream_of(socket)));
}

/// Serves a connection again with new tasks, from its stream's one half.
fn resume(connection: Connection, reader: io::Half) {
    let shard = connection.shard.clone();
    let writer_task = glommio::spawn_local(writer::run(
        shard.clone(),
        connection.conn.clone(),
        reader.another(),
    ));
    let live = Live {
        // CONNECT is behind it: the version is known, and another CONNECT is an error.
        decoder: Decoder::with_version(connection.version, shard.config.limits.max_packet_bytes),
        connection,
        reader,
        buf: BytesMut::new(),
        writer_task,
    };
    glommio::spawn_local(serve_live(live)).detach();
}

/// A TCP socket (accepted, handed over, or a parked connection's) as a glommio stream of
/// the calling shard.
pub fn stream_of(socket: std::os::fd::OwnedFd) -> TcpStream {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: `socket` is an open TCP socket that nothing else owns; the stream takes the
    // descriptor over and is its only owner from here on.
    #[allow(unsafe_code)]
    unsafe {
        TcpStream::from_raw_fd(socket.into_raw_fd())
    }
}

/// Starts the shard's task that brings parked connections back (`park.rs`).
pub fn start_parking(shard: &Rc<Shard>) {
    if !shard.parking.enabled() {
        return;
    }
    shard.parking.adopt_thread();
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let mut ids = Vec::new();
        loop {
            shard.parking.wait_for_wakes(&mut ids).await;
            for id in ids.drain(..) {
                let conn = shard.connections.borrow().get(&id).cloned();
                // `None`: woken twice, or not parked.
                if let Some(resting) = conn.and_then(|c| shard.parking.unpark(&c)) {
                    bump(&shard.metrics.connections_unparked_total, 1);
                    wake(*resting);
                }
            }
        }
    })
    .detach();
}

/// An accepted connection after CONNACK: what its task holds while the client is connected.
struct Live {
    connection: Connection,
    reader: io::Half,
    buf: BytesMut,
    decoder: Decoder,
    writer_task: glommio::Task<()>,
}

/// CONNECT to CONNACK. `None` when the connection ended there (refused, timed out, bad
/// first packet).
async fn handshake(
    shard: Rc<Shard>,
    stream: TcpStream,
    mut buf: BytesMut,
    peer: Option<std::net::SocketAddr>,
) -> Option<Live> {
    let peer = match peer {
        Some(peer) => peer,
        None => stream.peer_addr().ok()?,
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, writer_half) = io::split(stream);
    let mut decoder = Decoder::new(shard.config.limits.max_packet_bytes);

    let connect_timeout = Duration::from_secs(shard.config.limits.connect_timeout_secs);
    let handshake_deadline = shard.handshake_deadline(connect_timeout);
    // Every byte read before the CONNECT was decoded, in case the connection moves to its
    // thing's shard (`affinity.rs`): a CONNECT is small, and this is once per connection.
    let mut read_so_far = BytesMut::new();
    let first = futures_lite::future::or(
        async {
            Some(
                read_first_packet(
                    &shard,
                    &mut reader,
                    &mut buf,
                    &mut decoder,
                    &mut read_so_far,
                )
                .await,
            )
        },
        async {
            handshake_deadline.passed().await;
            None
        },
    )
    .await;
    drop(handshake_deadline);
    let connect = match first {
        None => {
            tracing::debug!(%peer, "no CONNECT within connect_timeout_secs; closing");
            return None;
        }
        Some(Ok(Some(Packet::Connect(c)))) => {
            if let Some(owner) = affinity::owner_for(&shard, &c.client_id) {
                affinity::hand_over(&shard, owner, reader, writer_half, read_so_far);
                return None;
            }
            c
        }
        Some(Ok(_)) => return None,
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
                writer::run(shard.clone(), conn, writer_half).await;
            }
            return None;
        }
    };

    let version = connect.protocol;
    let limits = &shard.config.limits;
    // Kept for the connection's life, parked or not: from the long-lived heap (`heap.rs`).
    let conn = crate::heap::long_lived(|| {
        Rc::new(ConnHandle::new(
            version,
            connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
            if version == ProtocolVersion::V5 {
                connect.properties.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
            limits.max_outbound_bytes,
            Duration::from_secs(limits.slow_consumer_timeout_secs),
        ))
    });
    let mut writer_task =
        glommio::spawn_local(writer::run(shard.clone(), conn.clone(), writer_half));

    if let Err(refused) = connect::validate(&connect, &peer, &shard.config) {
        tracing::info!(%peer, client_id = %connect.client_id, reason = refused.1, "CONNECT refused");
        conn.send(&connect::refusal(version, refused.0));
        close(&conn, &mut writer_task).await;
        return None;
    }
    let Some(accepted) = connect::establish(&shard, &connect).await else {
        close(&conn, &mut writer_task).await;
        return None;
    };
    conn.send(&Packet::ConnAck(accepted.connack));
    let key = accepted.key;
    let conn_id = shard.register_connection(conn.clone());
    // Disconnect at 1.5 times the keep-alive ([MQTT-3.1.2-24]), checked by the shard.
    shard.watch_keep_alive(conn_id, &conn, accepted.keep_alive.mul_f64(1.5));
    bump(&shard.metrics.connections_total, 1);
    conn.set_session_key(key);
    attach(&shard, key, &conn);

    let connection = Connection {
        shard: shard.clone(),
        conn,
        conn_id,
        key,
        client_id: accepted.client_id,
        version,
        inbound_aliases: None,
        connect_expiry: connect.properties.session_expiry_interval.unwrap_or(0),
    };
    connection.emit(|who| events::connected(who, &peer.ip().to_string()));
    Some(Live {
        connection,
        reader,
        buf,
        decoder,
        writer_task,
    })
}

/// How long a reader about to park waits for its writer to stop (it is idle unless
/// something was queued since the reader looked).
const WRITER_STOP_WAIT: Duration = Duration::from_millis(100);

/// How a read loop stopped.
enum ReadExit {
    End(End),
    /// The connection was asked to park and is between packets with nothing to write.
    Park,
}

impl Live {
    /// Serves the connection until it ends (`false`) or may park (`true`: its writer has
    /// stopped, nothing is left to write and no packet is half read).
    ///
    /// Borrows rather than consumes `self`: a moved-in `Live` would be held twice in the
    /// task's state (the argument's slot and the locals taken out of it).
    async fn run(&mut self) -> bool {
        let end = loop {
            match self
                .connection
                .read_loop(&mut self.reader, &mut self.buf, &mut self.decoder)
                .await
            {
                ReadExit::End(end) => break end,
                ReadExit::Park => {
                    if Box::pin(self.stop_writer()).await {
                        return true;
                    }
                    // Something came up meanwhile: looked at again later.
                    let connection = &self.connection;
                    let shard = &connection.shard;
                    shard.parking.watch(connection.conn_id, shard.clock.get());
                }
            }
        };
        self.buf = BytesMut::new();
        let connection = &self.connection;
        tracing::debug!(client_id = %connection.client_id, ?end, "connection ended");
        let shard = connection.shard.clone();
        // Before the goodbye, which waits for the writer: a group's messages meanwhile go
        // to its other members, not to a session that is ending.
        shard.leave_shared_groups(connection.key);
        let conn = connection.conn.clone();
        if connection.version == ProtocolVersion::V5 {
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
        close(&conn, &mut self.writer_task).await;
        shard.unregister_connection(connection.conn_id);
        connection.detach(&end);
        connection.emit(|who| events::disconnected(who, end.lifecycle_reason()));
        false
    }

    /// Stops the writer so the connection can park. `false` when it cannot after all: it
    /// was killed meanwhile, got something to write (then a writer runs again), or the
    /// writer is stuck in a write (a client that does not read): the reader must not stop
    /// reading for it.
    async fn stop_writer(&mut self) -> bool {
        enum Stop {
            Stopped,
            Killed,
            Busy,
        }
        let conn = self.connection.conn.clone();
        conn.stop_writer.set(true);
        conn.writer_wake.notify();
        let stop = futures_lite::future::or(
            async {
                (&mut self.writer_task).await;
                Stop::Stopped
            },
            futures_lite::future::or(
                async {
                    conn.kill_wake.notified().await;
                    Stop::Killed
                },
                async {
                    glommio::timer::sleep(WRITER_STOP_WAIT).await;
                    Stop::Busy
                },
            ),
        )
        .await;
        conn.stop_writer.set(false);
        match stop {
            // The read loop ends on it (the wake-up was taken here), the writer still runs.
            Stop::Killed => {
                conn.kill_wake.notify();
                false
            }
            Stop::Busy => false,
            Stop::Stopped if conn.quiet() && self.buf.is_empty() => true,
            Stop::Stopped => {
                // A finished task must not be awaited again: a new writer takes its place.
                let shard = self.connection.shard.clone();
                self.writer_task =
                    glommio::spawn_local(writer::run(shard, conn, self.reader.another()));
                false
            }
        }
    }
}

/// Lets the writer send what is pending, then stops it (waiting at most a second: a client
/// that never reads must not hold the connection open).
async fn close(conn: &Rc<ConnHandle>, writer_task: &mut glommio::Task<()>) {
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

/// Most packets a connection handles before it lets the shard's other tasks run, even with
/// more already read: a 64 KiB read of small publishes is ~800 packets, and a saturated
/// shard then gave its own publishers most of its time while its peer's waited in the mesh.
/// Fan-in at QoS 0: 3.2M → 4.2M msgs/s with both cores busy (bench/results, session 4).
/// (16 KiB reads did as well there, but cost pairs of 1 KiB QoS 1 messages 30%.)
const PACKETS_PER_TURN: usize = 256;

/// Reads until one whole packet is decoded: `Ok(None)` on end of stream. `read_so_far`
/// gets a copy of everything read until then, the packet's bytes included.
async fn read_first_packet(
    shard: &Shard,
    reader: &mut io::Half,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
    read_so_far: &mut BytesMut,
) -> Result<Option<Packet>, iotcore_core::mqtt::DecodeError> {
    loop {
        read_so_far.clear();
        read_so_far.extend_from_slice(buf);
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
    /// Publishes a lifecycle event about this client.
    fn emit(&self, make: impl FnOnce(&Who<'_>) -> Option<crate::message::SharedMessage>) {
        let session_identifier = events::session_identifier(self.key);
        let who = Who {
            client_id: &self.client_id,
            session_identifier: &session_identifier,
            principal: "anonymous",
            version_number: self.key.0,
        };
        if let Some(message) = make(&who) {
            self.shard.route_unacked(message);
        }
    }

    /// Decodes and handles the next packet in `buf`. A function of its own, not inline in
    /// the read loop: a decoder result matched around an await would stay (264 bytes) in
    /// every connection's task.
    fn next_packet(&mut self, decoder: &mut Decoder, buf: &mut BytesMut) -> Step {
        match decoder.decode(buf) {
            Ok(Some(packet)) => match self.handle(packet) {
                Ok(None) => Step::Done,
                Ok(Some(later)) => Step::Later(later),
                Err(end) => Step::End(end),
            },
            Ok(None) => {
                // Everything decoded: drop the (now empty) buffer so an idle connection
                // holds no read memory; decoded messages keep what they point into alive
                // on their own.
                if buf.is_empty() {
                    *buf = BytesMut::new();
                }
                Step::Drained
            }
            Err(e) => Step::End(End::Protocol {
                code: e.reason_code(),
                message: e.to_string(),
            }),
        }
    }

    /// Waits while the shard's outboxes are over their mark, then lets the shard's other
    /// tasks run. A client that keeps the socket full would otherwise never let this task
    /// return Pending, starving every other connection of the shard. `Err`: the connection
    /// was killed meanwhile.
    async fn give_turn(&self) -> Result<(), End> {
        self.shard.backpressure().await;
        futures_lite::future::yield_now().await;
        match self.conn.killed() {
            Some(kill) => Err(End::Killed(kill)),
            None => Ok(()),
        }
    }

    async fn read_loop(
        &mut self,
        reader: &mut io::Half,
        buf: &mut BytesMut,
        decoder: &mut Decoder,
    ) -> ReadExit {
        enum Wake {
            Read(std::io::Result<usize>),
            Killed,
        }
        // No timer here: the shard checks keep-alives for all its connections
        // (`Shard::expire_keep_alives`) and kills a quiet one with `Kill::KeepAlive`. A
        // glommio timer per connection was ~190 bytes of every idle connection.
        loop {
            let mut handled = 0;
            loop {
                match self.next_packet(decoder, buf) {
                    Step::Done => {
                        handled += 1;
                        if handled == PACKETS_PER_TURN {
                            handled = 0;
                            if let Err(end) = self.give_turn().await {
                                return ReadExit::End(end);
                            }
                        }
                    }
                    Step::Later(later) => {
                        if let Err(end) = Box::pin(self.finish(later)).await {
                            return ReadExit::End(end);
                        }
                    }
                    Step::Drained => break,
                    Step::End(end) => return ReadExit::End(end),
                }
            }
            if let Err(end) = self.give_turn().await {
                return ReadExit::End(end);
            }
            let wake = futures_lite::future::or(
                async { Wake::Read(reader.read_into(&self.shard.read_scratch, buf).await) },
                async {
                    self.conn.kill_wake.notified().await;
                    Wake::Killed
                },
            )
            .await;
            match wake {
                Wake::Read(Ok(0)) | Wake::Read(Err(_)) => return ReadExit::End(End::Lost),
                Wake::Read(Ok(n)) => {
                    let now = Instant::now();
                    self.conn.last_read.set(now);
                    self.conn.active.set(true);
                    self.shard.clock.set(now);
                    bump(&self.shard.metrics.bytes_in_total, n as u64);
                }
                Wake::Killed => {
                    if let Some(kill) = self.conn.killed() {
                        return ReadExit::End(End::Killed(kill));
                    }
                    if self.conn.park_asked.replace(false) {
                        if buf.is_empty() && self.conn.quiet() {
                            return ReadExit::Park;
                        }
                        self.shard
                            .parking
                            .watch(self.conn_id, self.shard.clock.get());
                    }
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
            shard.release_all_held(slot);
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
            if let Some(slot) = shard.remove_session(self.key) {
                shard.rehome_shared(&slot.session);
            }
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
            shard.rehome_shared(&slot.session);
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
