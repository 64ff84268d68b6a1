//! A shard: one thread, one glommio executor, and everything it owns: the sessions of the
//! connections it accepted, its subscription trie, its replica of the interest table and of
//! the retained messages. Nothing here is shared with another thread; other shards are
//! reached only through [`mesh`] messages.

mod commits;
mod deadlines;
mod flow;
pub mod links;
pub mod mesh;
mod persistence;
pub mod replies;
mod retained;
mod router;
mod sessions;
mod shadows;

use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use iotcore_core::mqtt::SubscriptionOptions;
use iotcore_core::topic::{RetainedTree, ShareGroup, SubscriptionTrie, TopicFilter};

use crate::config::Config;
use crate::connection::handle::ConnHandle;
use crate::directory::Directory;
use crate::ids::{SessionKey, ShardId};
use crate::message::SharedMessage;
use crate::metrics::{bump, Gauges, Metrics, Snapshot};
use crate::notify::Notify;
use crate::session::Session;
use links::ShardLinks;
use mesh::{Batch, ShardMsg};
use replies::{Replies, Reply, ReplyId, ReplyTo};

/// A session held by this shard, with its connection while it has one.
pub struct SessionSlot {
    pub session: Session,
    pub conn: Option<Rc<ConnHandle>>,
    /// Publishers' PUBACKs held while this session is backlogged (`flow.rs`).
    pub held: Option<Box<crate::flow::Held>>,
}

/// A subscription as the trie stores it.
#[derive(Debug, Clone)]
pub struct LocalSub {
    pub filter: TopicFilter,
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

/// One match of a publish against the local trie, before merging per session.
#[derive(Debug, Clone, Copy)]
struct Match {
    key: SessionKey,
    qos: iotcore_core::mqtt::QoS,
    retain_as_published: bool,
    no_local: bool,
    id: Option<u32>,
}

pub struct ShardState {
    /// Looked up on every delivery: a fast hasher (keys are ours, not a peer's). Slots are
    /// boxed: the table keeps spare room (up to half of it after growing), and inline slots
    /// made that room a few hundred bytes per idle connection.
    pub sessions: HashMap<SessionKey, Box<SessionSlot>, foldhash::fast::RandomState>,
    subs: SubscriptionTrie<SessionKey, LocalSub>,
    shared_subs: SubscriptionTrie<(ShareGroup, SessionKey), LocalSub>,
    /// Replicated on every shard: which shards have a subscriber on which filter.
    interest: SubscriptionTrie<(ShardId, Option<ShareGroup>), TopicFilter>,
    /// How many local subscriptions use each (group, filter): the interest table changes
    /// only when one of these goes from 0 to 1 or back.
    local_interest: HashMap<(Option<ShareGroup>, TopicFilter), u32>,
    retained: RetainedTree<SharedMessage>,
    /// Per shared subscription: which shard gets the next message (on the publishing shard)
    /// and which local member gets it (on the receiving shard). Two counters, since one
    /// shard can play both parts for the same message.
    shard_turn: HashMap<(ShareGroup, TopicFilter), usize>,
    member_turn: HashMap<(ShareGroup, TopicFilter), usize>,
    /// Reused for every publish so matching allocates nothing.
    scratch: Vec<Match>,
}

pub struct Shard {
    pub id: ShardId,
    pub shard_count: usize,
    pub config: Arc<Config>,
    pub directory: Arc<Directory>,
    /// Live connections per shard, for placing new ones (`placement.rs`).
    pub placement: Arc<crate::placement::Placement>,
    /// Backlogged sessions per shard (`flow.rs`).
    pub backlogs: Arc<crate::flow::Backlogs>,
    /// This shard's backlogged sessions, for releasing their PUBACKs held too long.
    backlogged: RefCell<std::collections::HashSet<SessionKey>>,
    pub state: RefCell<ShardState>,
    /// Messages for each peer shard, waiting for that peer's sender task.
    outbox: Vec<RefCell<Outbox>>,
    outbox_wake: Vec<Notify>,
    pub metrics: Metrics,
    pub replies: Replies,
    pub shutting_down: Cell<bool>,
    /// Live connection tasks, so shutdown can wait for them to say goodbye.
    pub live_connections: Cell<usize>,
    pub connections: RefCell<HashMap<u64, Rc<ConnHandle>>>,
    next_conn: Cell<u64>,
    /// Every connection of the shard reads into this, then keeps only what arrived
    /// (connection/io.rs): no connection holds a read buffer while it waits.
    pub read_scratch: RefCell<Vec<u8>>,
    /// The shadows of the things this shard owns (`None` until opened at start-up).
    pub shadows: RefCell<Option<crate::shadow::service::ShadowService>>,
    /// Wakes the group-commit task when shadow records were appended.
    shadow_commit: Notify,
    /// The log of the retained topics this shard owns (`storage::retained_owner`).
    pub retained_store: RefCell<Option<crate::retained_store::RetainedStore>>,
    retained_commit: Notify,
    /// The persistent sessions held by this shard, on its `sessions/` log.
    pub session_store: RefCell<Option<crate::session_store::SessionStore>>,
    session_commit: Notify,
    /// Set while routing one message when a delivery was written to the session log, so
    /// the publisher's acknowledgement waits for its fsync.
    persisted_in_route: Cell<bool>,
    /// A task queue for the group-commit tasks, whose turn must not wait behind a round of
    /// every busy connection (answers wait on them): `Latency::Matters`.
    commit_queue: Cell<Option<glommio::TaskQueueHandle>>,
    /// The time of the latest read on this shard (a socket read or a mesh batch), for work
    /// done per packet that only needs the time to the millisecond (expiry, congestion,
    /// held PUBACKs): one clock read per read, not one per message.
    pub clock: Cell<std::time::Instant>,
    /// Connections still waiting for their CONNECT, oldest first (the timeout is the same for
    /// all, so deadlines come in order): the housekeeping task wakes the expired ones. A
    /// glommio timer per connection instead re-armed the ring's timeout, and each re-arm is
    /// an io_uring cancel that searches every armed poll: a quarter of the CPU while 10,000
    /// clients connect.
    ///
    /// The queue holds ids; the wake-ups are in `handshake_waits` only while their handshake
    /// runs. (The queue held the wake-ups themselves, 40 bytes per connection kept for the
    /// whole timeout after the CONNECT had long arrived.)
    handshakes: RefCell<std::collections::VecDeque<(std::time::Instant, u64)>>,
    handshake_waits: RefCell<HashMap<u64, Rc<Notify>>>,
    next_handshake: Cell<u64>,
    /// When to look at a connection's keep-alive next, by connection id (earliest first):
    /// (when, in `epoch::micros`; connection id), 16 bytes an entry where an `Instant` made
    /// it 24, one entry per connection with a keep-alive.
    keep_alives: RefCell<BinaryHeap<Reverse<(u64, u64)>>>,
    /// Idle connections at rest, and the watch that finds them (`connection/park.rs`).
    pub parking: crate::connection::park::Parking,
}

/// Messages for one peer, already cut into batches of at most `MAX_BATCH`: taking a batch
/// moves nothing. (One flat `Vec` drained from the front moved every message behind the
/// batch, each time: 13% of a saturated shard's time in fan-in.)
#[derive(Default)]
struct Outbox {
    batches: std::collections::VecDeque<Batch>,
    len: usize,
}

impl Outbox {
    fn push(&mut self, msg: ShardMsg) {
        match self.batches.back_mut() {
            Some(b) if b.len() < MAX_BATCH => b.push(msg),
            _ => self.batches.push_back(vec![msg]),
        }
        self.len += 1;
    }

    fn take(&mut self) -> Batch {
        let batch = self.batches.pop_front().unwrap_or_default();
        self.len -= batch.len();
        batch
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// The shard's read scratch buffer: the most one read call takes from a socket.
const READ_SCRATCH_BYTES: usize = 64 * 1024;

/// Beyond this many messages waiting for one peer, publishers wait (backpressure).
const OUTBOX_HIGH_WATER: usize = 4096;
/// Most mesh batches one receiver handles before it yields: as many as the channel holds.
/// At one batch per turn, a saturated shard gave its own connections (a 64 KiB read each
/// per turn) ~99% of its time and the peer's publishers waited on their full outbox, so in
/// fan-in one core did everything: 2.5M msgs/s. Draining the channel each turn lets the
/// peer read and route its share: 3.1–3.3M (bench/results, session 4).
const MESH_BATCHES_PER_TURN: usize = 128;
/// Most messages in one mesh batch.
const MAX_BATCH: usize = 256;

impl Shard {
    pub fn new(
        id: ShardId,
        shard_count: usize,
        config: Arc<Config>,
        directory: Arc<Directory>,
        placement: Arc<crate::placement::Placement>,
        backlogs: Arc<crate::flow::Backlogs>,
    ) -> Rc<Shard> {
        let parking = crate::connection::park::Parking::new(config.server.park_idle_ms);
        Rc::new(Shard {
            id,
            shard_count,
            config,
            directory,
            placement,
            backlogs,
            backlogged: RefCell::default(),
            state: RefCell::new(ShardState {
                sessions: HashMap::default(),
                subs: SubscriptionTrie::new(),
                shared_subs: SubscriptionTrie::new(),
                interest: SubscriptionTrie::new(),
                local_interest: HashMap::new(),
                retained: RetainedTree::new(),
                shard_turn: HashMap::new(),
                member_turn: HashMap::new(),
                scratch: Vec::new(),
            }),
            outbox: (0..shard_count).map(|_| RefCell::default()).collect(),
            outbox_wake: (0..shard_count).map(|_| Notify::default()).collect(),
            metrics: Metrics::default(),
            replies: Replies::default(),
            shutting_down: Cell::new(false),
            live_connections: Cell::new(0),
            connections: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            read_scratch: RefCell::new(vec![0; READ_SCRATCH_BYTES]),
            shadows: RefCell::new(None),
            shadow_commit: Notify::default(),
            retained_store: RefCell::new(None),
            retained_commit: Notify::default(),
            session_store: RefCell::new(None),
            session_commit: Notify::default(),
            persisted_in_route: Cell::new(false),
            commit_queue: Cell::new(None),
            clock: Cell::new(std::time::Instant::now()),
            handshakes: RefCell::default(),
            handshake_waits: RefCell::default(),
            next_handshake: Cell::new(0),
            keep_alives: RefCell::default(),
            parking,
        })
    }

    /// Connects this shard's channels and starts one sender task and one receiver task per
    /// peer. Receivers connect in their own tasks, so two shards connecting to each other
    /// never wait on one another.
    pub fn start_mesh(self: &Rc<Self>, links: ShardLinks) {
        for (_peer, receiver) in links.receivers {
            let shard = self.clone();
            glommio::spawn_local(async move {
                let receiver = receiver.connect().await;
                while let Some(first) = receiver.recv().await {
                    let mut next = Some(first);
                    let mut turn = 0;
                    while let Some(batch) = next.take() {
                        bump(&shard.metrics.mesh_batches_in_total, 1);
                        shard.clock.set(std::time::Instant::now());
                        bump(&shard.metrics.mesh_messages_in_total, batch.len() as u64);
                        for msg in batch {
                            shard.handle_mesh(msg);
                        }
                        turn += 1;
                        if turn < MESH_BATCHES_PER_TURN {
                            next = futures_lite::future::poll_once(receiver.recv())
                                .await
                                .flatten();
                        }
                    }
                    // A peer that keeps the channel full would otherwise keep this task
                    // running forever (a ready channel never returns Pending), starving the
                    // writers that drain what it delivers, and every other task.
                    futures_lite::future::yield_now().await;
                }
            })
            .detach();
        }
        for (peer, sender) in links.senders.into_iter().enumerate() {
            let Some(sender) = sender else { continue };
            let shard = self.clone();
            glommio::spawn_local(async move {
                let sender = sender.connect().await;
                loop {
                    let batch = shard.take_batch(peer);
                    if batch.is_empty() {
                        shard.outbox_wake[peer].notified().await;
                        continue;
                    }
                    bump(&shard.metrics.mesh_batches_out_total, 1);
                    if sender.send(batch).await.is_err() {
                        // The peer is gone: the process is shutting down.
                        return;
                    }
                }
            })
            .detach();
        }
    }

    /// Queues a message for a peer; its sender task picks it up on its next turn.
    pub fn post_to(&self, to: ShardId, msg: ShardMsg) {
        self.outbox[to.0].borrow_mut().push(msg);
        self.outbox_wake[to.0].notify();
    }

    /// The oldest batch for a peer (empty when there is none).
    fn take_batch(&self, peer: usize) -> Batch {
        self.outbox[peer].borrow_mut().take()
    }

    /// Waits while any peer's outbox is over its high-water mark, so a fast publisher cannot
    /// grow memory without bound when another shard falls behind.
    pub async fn backpressure(&self) {
        while self
            .outbox
            .iter()
            .any(|o| o.borrow().len() > OUTBOX_HIGH_WATER)
        {
            glommio::timer::sleep(std::time::Duration::from_micros(200)).await;
        }
    }

    fn handle_mesh(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish {
                message,
                ordinary,
                shared,
                ack,
                mut puback,
                forwarded,
            } => {
                self.persisted_in_route.set(false);
                let origin = if forwarded {
                    router::Origin::Forwarded
                } else {
                    router::Origin::Peer
                };
                {
                    let mut st = self.state.borrow_mut();
                    self.deliver_local(&mut st, &message, ordinary, &shared, &mut puback, origin);
                }
                // Offered but not held: the subscriber caught up meanwhile.
                if let Some(to) = puback {
                    self.release_puback(to);
                }
                if let Some(to) = ack {
                    if self.persisted_in_route.get() {
                        self.ack_when_sessions_durable(to);
                    } else {
                        self.reply(to, Reply::Ack);
                    }
                }
            }
            ShardMsg::Interest {
                from,
                filter,
                group,
                add,
                ack,
            } => {
                {
                    let mut st = self.state.borrow_mut();
                    if add {
                        st.interest.insert(&filter, (from, group), filter.clone());
                    } else {
                        st.interest.remove(&filter, &(from, group));
                    }
                }
                if let Some(to) = ack {
                    self.reply(to, Reply::Ack);
                }
            }
            ShardMsg::Retained {
                topic,
                message,
                ack,
            } => {
                // The owner of the topic writes the change and acknowledges once it is
                // durable; the other shards only update their replica.
                let persisted = self.persist_retained(&topic, message.as_deref(), ack);
                self.apply_retained(&topic, message);
                if let (false, Some(to)) = (persisted, ack) {
                    self.reply(to, Reply::Ack);
                }
            }
            ShardMsg::TakeSession {
                key,
                clean_start,
                reply,
            } => {
                let session = self.surrender_session(key, clean_start);
                self.reply(reply, Reply::Session(session));
            }
            ShardMsg::Shadow(req) => self.apply_shadow_request(*req),
            ShardMsg::ShadowList {
                thing,
                next_token,
                page_size,
                reply,
            } => self.answer_shadow_list(&thing, next_token.as_deref(), page_size, reply),
            ShardMsg::Reply { id, reply } => self.replies.complete(id, reply),
            ShardMsg::PubAck(to) => self.send_puback(to),
            ShardMsg::Adopt(adopted) => {
                let (socket, peer) = *adopted;
                let stream = crate::connection::stream_of(socket);
                self.serve_handed_over(stream, BytesMut::new(), peer);
            }
            ShardMsg::Handover(handover) => {
                let (stream, read) = handover.into_parts();
                self.serve_handed_over(stream, read, None);
            }
        }
    }

    /// Serves a connection another shard counted for this one (`Adopt`, `Handover`), with
    /// the bytes already read from it (and its peer's address, if known).
    fn serve_handed_over(
        self: &Rc<Self>,
        stream: glommio::net::TcpStream,
        read: BytesMut,
        peer: Option<std::net::SocketAddr>,
    ) {
        if self.shutting_down.get() {
            // Closed by the drop; the count taken for it is given back.
            self.placement.leave(self.id);
            return;
        }
        glommio::spawn_local(crate::connection::serve(self.clone(), stream, read, peer)).detach();
    }

    fn reply(&self, to: ReplyTo, reply: Reply) {
        if to.shard == self.id {
            self.replies.complete(to.id, reply);
        } else {
            self.post_to(to.shard, ShardMsg::Reply { id: to.id, reply });
        }
    }

    /// A request to a peer whose answer will be awaited.
    pub fn request(&self, to: ShardId, make: impl FnOnce(ReplyTo) -> ShardMsg) -> ReplyId {
        let id = self.replies.register();
        self.post_to(to, make(ReplyTo { shard: self.id, id }));
        id
    }

    /// Waits for acknowledgements from peers.
    pub async fn await_acks(&self, acks: Vec<ReplyId>) {
        for id in acks {
            self.replies.wait(id).await;
        }
    }

    /// A new connection on this shard takes the client id of a session also on this shard
    /// (`key`, the previous owner's as the directory recorded it).
    pub fn take_local_session(
        self: &Rc<Self>,
        key: SessionKey,
        clean_start: bool,
    ) -> Option<Session> {
        self.surrender_session(key, clean_start).map(|b| *b)
    }

    /// Copies the counters and current gauges to the snapshot the admin thread reads.
    pub fn publish_metrics(&self, snapshot: &Snapshot) {
        let st = self.state.borrow();
        let gauges = Gauges {
            connections: self.connections.borrow().len() as u64,
            parked_connections: self.parking.len() as u64,
            sessions: st.sessions.len() as u64,
            subscriptions: (st.subs.len() + st.shared_subs.len()) as u64,
            retained_messages: st.retained.len() as u64,
            backlogged_sessions: self.backlogged.borrow().len() as u64,
            outbox_depth: self.outbox.iter().map(|o| o.borrow().len() as u64).sum(),
            shadows: self
                .shadows
                .borrow()
                .as_ref()
                .map_or(0, |s| s.store.len() as u64),
        };
        snapshot.publish(&self.metrics, gauges);
    }

    pub fn register_connection(&self, conn: Rc<ConnHandle>) -> u64 {
        let id = self.next_conn.get() + 1;
        self.next_conn.set(id);
        self.connections.borrow_mut().insert(id, conn);
        id
    }

    pub fn unregister_connection(&self, id: u64) {
        self.connections.borrow_mut().remove(&id);
    }
}

#[cfg(test)]
mod outbox_tests {
    use super::*;
    use crate::flow::PubAckTo;
    use iotcore_core::mqtt::PacketId;

    fn msg(id: u16) -> ShardMsg {
        ShardMsg::PubAck(PubAckTo {
            shard: ShardId(0),
            conn: 1,
            packet_id: PacketId::new(id).expect("non-zero"),
        })
    }

    fn id(m: &ShardMsg) -> u16 {
        match m {
            ShardMsg::PubAck(to) => to.packet_id.get(),
            _ => 0,
        }
    }

    #[test]
    fn batches_keep_order_and_size_and_the_count_follows() {
        let mut o = Outbox::default();
        assert!(o.take().is_empty());
        let n = MAX_BATCH * 2 + 10;
        for i in 1..=n {
            o.push(msg(i as u16));
        }
        assert_eq!(o.len(), n);
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let b = o.take();
            if b.is_empty() {
                break;
            }
            sizes.push(b.len());
            seen.extend(b.iter().map(id));
        }
        assert_eq!(sizes, vec![MAX_BATCH, MAX_BATCH, 10]);
        assert_eq!(seen, (1..=n as u16).collect::<Vec<_>>());
        assert_eq!(o.len(), 0);
    }
}
