//! The shard's deadlines for its connections, checked by the housekeeping task (every
//! `HOUSEKEEPING_INTERVAL`, server.rs) instead of a glommio timer per connection: the
//! CONNECT timeout of new connections and the keep-alive of established ones.

use std::cmp::Reverse;
use std::rc::Rc;

use super::Shard;
use crate::connection::handle::{ConnHandle, Kill};
use crate::notify::Notify;

/// A connection's CONNECT deadline (`Shard::handshake_deadline`).
pub struct HandshakeDeadline<'a> {
    shard: &'a Shard,
    id: u64,
    notify: Rc<Notify>,
}

impl HandshakeDeadline<'_> {
    /// Completes once the deadline has passed.
    pub async fn passed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for HandshakeDeadline<'_> {
    fn drop(&mut self) {
        self.shard.handshake_waits.borrow_mut().remove(&self.id);
    }
}

impl Shard {
    /// A wake-up for a new connection, notified once `timeout` has passed (checked by
    /// `expire_handshakes`, so up to one housekeeping interval late). Dropping it ends the
    /// wait.
    pub fn handshake_deadline(&self, timeout: std::time::Duration) -> HandshakeDeadline<'_> {
        let id = self.next_handshake.get() + 1;
        self.next_handshake.set(id);
        let notify = Rc::new(Notify::default());
        self.handshake_waits.borrow_mut().insert(id, notify.clone());
        self.handshakes
            .borrow_mut()
            .push_back((std::time::Instant::now() + timeout, id));
        HandshakeDeadline {
            shard: self,
            id,
            notify,
        }
    }

    /// Wakes the connections whose CONNECT deadline passed; the ones that completed their
    /// handshake no longer wait, and are simply dropped from the queue.
    ///
    /// After a burst of connections the queue holds one entry per connection for the whole
    /// CONNECT timeout (10 s by default), nearly all of them done: once it holds more than
    /// twice the handshakes still waiting, it keeps only those (its room for 10,000
    /// connections was 39 bytes each, `perf/idle_memory.sh`).
    pub fn expire_handshakes(&self) {
        let now = std::time::Instant::now();
        let mut queue = self.handshakes.borrow_mut();
        let waits = self.handshake_waits.borrow();
        while queue.front().is_some_and(|(deadline, _)| *deadline <= now) {
            if let Some((_, id)) = queue.pop_front() {
                if let Some(notify) = waits.get(&id) {
                    notify.notify();
                }
            }
        }
        if queue.len() > 2 * waits.len() + 1024 {
            queue.retain(|(_, id)| waits.contains_key(id));
            let keep = 2 * queue.len();
            queue.shrink_to(keep);
        }
    }

    /// Starts checking a connection's keep-alive (`limit` is 1.5 times the client's value;
    /// zero: the client asked for none).
    pub fn watch_keep_alive(&self, conn_id: u64, conn: &ConnHandle, limit: std::time::Duration) {
        if limit.is_zero() {
            return;
        }
        conn.set_keep_alive(limit);
        // The CONNECT just arrived: the quiet time starts now, not when the socket was
        // accepted (a slow handshake must not eat into the first keep-alive period).
        conn.last_read.set(std::time::Instant::now());
        let check = crate::epoch::micros(conn.last_read.get() + limit);
        self.keep_alives
            .borrow_mut()
            .push(Reverse((check, conn_id)));
    }

    /// Kills the connections that were quiet for their whole keep-alive; the others (and
    /// ones that heard from their client since) are looked at again when their time comes.
    /// One heap entry per connection instead of a timer: checked by the housekeeping task,
    /// so up to one housekeeping interval late.
    pub fn expire_keep_alives(&self) {
        let now = std::time::Instant::now();
        let now_us = crate::epoch::micros(now);
        self.compact_keep_alives();
        loop {
            let due = {
                let mut heap = self.keep_alives.borrow_mut();
                match heap.peek() {
                    Some(Reverse((at, _))) if *at <= now_us => {
                        heap.pop().map(|Reverse((_, id))| id)
                    }
                    _ => None,
                }
            };
            let Some(id) = due else { return };
            let Some(conn) = self.connections.borrow().get(&id).cloned() else {
                continue; // gone already
            };
            let limit = conn.keep_alive();
            let next = conn.last_read.get() + limit;
            if next <= now {
                conn.kill(Kill::KeepAlive);
            } else {
                self.keep_alives
                    .borrow_mut()
                    .push(Reverse((crate::epoch::micros(next), id)));
            }
        }
    }

    /// Asks the connections quiet since the last look to park (`connection/park.rs`); the
    /// others are looked at again one interval later.
    pub fn ask_idle_to_park(&self) {
        if !self.parking.enabled() {
            return;
        }
        let now = std::time::Instant::now();
        self.parking.give_back_memory(now);
        let mut due = Vec::new();
        self.parking.take_due_watches(now, &mut due);
        let conns = self.connections.borrow();
        for id in due {
            let Some(conn) = conns.get(&id) else {
                continue; // gone
            };
            if conn.active.replace(false) {
                conn.quiet_looks.set(0);
                self.parking.watch(id, now);
                continue;
            }
            let quiet = conn.quiet_looks.get().saturating_add(1);
            if quiet < conn.looks_to_park.get() {
                conn.quiet_looks.set(quiet);
                self.parking.watch(id, now);
            } else {
                conn.quiet_looks.set(0);
                conn.park_asked.set(true);
                conn.kill_wake.notify();
            }
        }
    }

    /// Entries of ended connections stay in the heap until their time comes, which is up
    /// to 1.5 × 1200 s away: under connection churn the heap would grow without bound, so
    /// once it holds more than twice the live connections it is rebuilt from the live ones.
    fn compact_keep_alives(&self) {
        let live = self.connections.borrow();
        let mut heap = self.keep_alives.borrow_mut();
        if heap.len() <= 2 * live.len() + 1024 {
            return;
        }
        let entries = std::mem::take(&mut *heap).into_vec();
        *heap = entries
            .into_iter()
            .filter(|Reverse((_, id))| live.contains_key(id))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::directory::Directory;
    use crate::ids::ShardId;

    fn shard() -> Rc<Shard> {
        Shard::new(
            ShardId(0),
            1,
            Arc::new(Config::default()),
            Arc::new(Directory::default()),
            Arc::new(crate::placement::Placement::new(1)),
            Arc::new(crate::flow::Backlogs::new(1)),
        )
    }

    fn conn() -> Rc<ConnHandle> {
        Rc::new(ConnHandle::new(
            iotcore_core::mqtt::ProtocolVersion::V5,
            u32::MAX,
            0,
            usize::MAX,
            Duration::from_secs(1),
        ))
    }

    #[test]
    fn a_quiet_connection_is_killed_and_a_talking_one_is_looked_at_again() {
        let shard = shard();
        let (quiet, talking) = (conn(), conn());
        // Margins wide enough for a loaded machine: a check comes late, never early.
        let limit = Duration::from_millis(400);
        for c in [&quiet, &talking] {
            let id = shard.register_connection(c.clone());
            shard.watch_keep_alive(id, c, limit);
        }
        std::thread::sleep(Duration::from_millis(300));
        talking.last_read.set(std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(150));
        shard.expire_keep_alives();
        assert_eq!(quiet.killed(), Some(Kill::KeepAlive));
        assert_eq!(talking.killed(), None);
        assert_eq!(
            shard.keep_alives.borrow().len(),
            1,
            "the talking one is queued again"
        );
        std::thread::sleep(Duration::from_millis(300));
        shard.expire_keep_alives();
        assert_eq!(talking.killed(), Some(Kill::KeepAlive));
    }

    #[test]
    fn a_handshake_deadline_fires_once_passed_and_keeps_nothing_once_dropped() {
        let shard = shard();
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let done = shard.handshake_deadline(Duration::from_millis(10));
        let pending = shard.handshake_deadline(Duration::from_millis(10));
        drop(done);
        assert_eq!(
            shard.handshake_waits.borrow().len(),
            1,
            "the dropped one is gone"
        );
        std::thread::sleep(Duration::from_millis(20));
        shard.expire_handshakes();
        let mut passed = std::pin::pin!(pending.passed());
        assert!(std::future::Future::poll(passed.as_mut(), &mut cx).is_ready());
        assert!(shard.handshakes.borrow().is_empty());
    }

    #[test]
    fn finished_handshakes_do_not_keep_the_queue_long() {
        let shard = shard();
        let waiting: Vec<_> = (0..10)
            .map(|_| shard.handshake_deadline(Duration::from_secs(10)))
            .collect();
        for _ in 0..5000 {
            drop(shard.handshake_deadline(Duration::from_secs(10)));
        }
        shard.expire_handshakes();
        let queue = shard.handshakes.borrow();
        assert_eq!(queue.len(), 10, "only the ones still waiting");
        assert!(
            queue.capacity() < 1024,
            "room given back: {}",
            queue.capacity()
        );
        drop(queue);
        drop(waiting);
    }

    #[test]
    fn ended_connections_do_not_pile_up_in_the_keep_alive_heap() {
        let shard = shard();
        let mut ids = Vec::new();
        for _ in 0..5000 {
            let c = conn();
            let id = shard.register_connection(c.clone());
            shard.watch_keep_alive(id, &c, Duration::from_secs(1800));
            ids.push(id);
        }
        for id in &ids[10..] {
            shard.unregister_connection(*id);
        }
        shard.expire_keep_alives();
        let left = shard.keep_alives.borrow().len();
        assert_eq!(left, 10, "only the live connections stay");
    }
}
