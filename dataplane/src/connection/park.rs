//! Parked connections: a connection quiet in both directions for `[server] park_idle_ms`
//! gives up its two tasks, its glommio stream and that stream's armed read poll, and waits
//! as a bare socket in the shard's epoll instance plus the little state its session needs
//! (`Resting`). Any of three things brings it back, as new tasks running the same code:
//! bytes (or a hang-up) on the socket, something to send to it, or a kill (take-over,
//! keep-alive, shutdown). Erlang brokers can do much the same by hibernating an idle
//! client's process (`erlang:hibernate/3`); Mosquitto needs no such thing, as it keeps no
//! task per client.
//!
//! Why: an idle connection cost 2.5 KiB of broker memory, of which the tasks, the stream
//! and its poll were over half (bench/results, session 6).
//!
//! Who parks: the housekeeping task (`Shard::ask_idle_to_park`) looks at each unparked
//! connection once per `park_idle_ms`; one with no read and no write since the last look is
//! asked to park (`ConnHandle::park_asked` and its kill wake-up). Its reader parks only
//! between packets, with nothing waiting to be written and the writer not writing; else it
//! goes on and is looked at again later.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::task::{RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::handle::ConnHandle;
use super::Connection;
use crate::notify::Notify;

/// What a parked connection keeps, in its handle (`ConnHandle::resting`). The connection
/// stays counted as live (its `Connection` holds the count), so shutdown waits for its
/// goodbye.
pub(crate) struct Resting {
    pub connection: Connection,
    pub socket: OwnedFd,
    /// When it parked, in `epoch::millis32` (wrapping; 4 bytes where the struct had
    /// padding).
    parked_at_ms: u32,
}

impl Resting {
    pub fn new(connection: Connection, socket: OwnedFd) -> Resting {
        Resting {
            connection,
            socket,
            parked_at_ms: 0,
        }
    }
}

/// Connection ids to bring back, filled by the wakers of parked connections.
#[derive(Default)]
struct Due {
    ids: RefCell<Vec<u64>>,
    wake: Notify,
}

thread_local! {
    /// The `Due` of the shard running on this thread (one shard per thread), for wakers that
    /// carry nothing but a connection id.
    static DUE: RefCell<Option<Rc<Due>>> = const { RefCell::new(None) };
}

pub struct Parking {
    /// `None` when parking is off (`park_idle_ms = 0`) or epoll could not be had.
    epoll: Option<Epoll>,
    idle_after: Duration,
    /// Connections parked now.
    parked: Cell<usize>,
    /// Unparked connections and when to look at each next, in that order (the interval is
    /// the same for all).
    watch: RefCell<VecDeque<(Instant, u64)>>,
    due: Rc<Due>,
    /// Connections parked since the freed memory was last given back, and when that was.
    parked_since_give_back: Cell<usize>,
    last_give_back: Cell<Instant>,
    /// One more give-back is due after the last one that followed parking.
    give_back_again: Cell<bool>,
}

/// A connection woken within this many times the quiet time it parked after parks less
/// readily next time (`Parking::unpark`).
const SOON: u64 = 4;
/// The most quiet looks a connection can need to park (64 × 500 ms: 32 s by default).
const MAX_LOOKS_TO_PARK: u8 = 64;

/// At most this often a shard that parked connections gives its free memory back.
const GIVE_BACK_INTERVAL: Duration = Duration::from_secs(1);

impl Parking {
    pub fn new(idle_ms: u64) -> Parking {
        let epoll = if idle_ms == 0 {
            None
        } else {
            match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "no epoll instance: idle connections will not park");
                    None
                }
            }
        };
        Parking {
            epoll,
            idle_after: Duration::from_millis(idle_ms),
            parked: Cell::new(0),
            watch: RefCell::default(),
            due: Rc::default(),
            parked_since_give_back: Cell::new(0),
            last_give_back: Cell::new(Instant::now()),
            give_back_again: Cell::new(false),
        }
    }

    /// Points the revive wakers of this thread at this shard's list. Called on the shard's
    /// thread before any connection parks.
    pub fn adopt_thread(&self) {
        DUE.with(|d| *d.borrow_mut() = Some(self.due.clone()));
    }

    pub fn enabled(&self) -> bool {
        self.epoll.is_some()
    }

    /// Parked connections now.
    pub fn len(&self) -> usize {
        self.parked.get()
    }

    /// Starts looking at an unparked connection's activity, one interval after `now` (the
    /// shard's clock is precise enough).
    pub fn watch(&self, conn_id: u64, now: Instant) {
        if self.enabled() {
            self.watch
                .borrow_mut()
                .push_back((now + self.idle_after, conn_id));
        }
    }

    /// The watched connections whose turn came, taken off the watch.
    pub fn take_due_watches(&self, now: Instant, into: &mut Vec<u64>) {
        let mut watch = self.watch.borrow_mut();
        while let Some(&(at, id)) = watch.front() {
            if at > now {
                break;
            }
            watch.pop_front();
            into.push(id);
        }
        // Once most connections are parked the queue is nearly empty: its capacity, sized
        // for all of them, would be kept per connection for nothing.
        if watch.capacity() > 1024 && watch.len() < watch.capacity() / 4 {
            let keep = watch.len() * 2;
            watch.shrink_to(keep);
        }
    }

    /// Puts a connection to rest: its socket goes into the epoll instance (one-shot, so it
    /// reports once) and its wake-ups are pointed at the shard's revive list. `Err` gives
    /// the connection back when it cannot park.
    pub(crate) fn park(&self, resting: Resting) -> Result<(), Box<Resting>> {
        let mut resting = crate::heap::long_lived(|| Box::new(resting));
        resting.parked_at_ms = crate::epoch::millis32(Instant::now());
        let Some(epoll) = &self.epoll else {
            return Err(resting);
        };
        let id = resting.connection.conn_id;
        let event = EpollEvent::new(
            EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT,
            id,
        );
        if let Err(e) = epoll.add(resting.socket.as_fd(), event) {
            tracing::warn!(error = %e, "cannot park a connection");
            return Err(resting);
        }
        let conn = resting.connection.conn.clone();
        conn.resting.set(Some(resting));
        self.parked.set(self.parked.get() + 1);
        self.parked_since_give_back
            .set(self.parked_since_give_back.get() + 1);
        // Pending notifications (sent since the tasks stopped) bring it back at once.
        conn.writer_wake.call_on_notify(revive_waker(id));
        conn.kill_wake.call_on_notify(revive_waker(id));
        Ok(())
    }

    /// Gives the memory of parked connections' tasks back to the system, at most once per
    /// `GIVE_BACK_INTERVAL` and only after parking some (`heap.rs`), and once more an
    /// interval after the last of those. Called by the shard's housekeeping, after their
    /// tasks have ended.
    ///
    /// The second time: returning the freed pages to the system is program-wide in
    /// mimalloc, and a thread that finds another thread doing it skips it; the shards park
    /// in step, so one of them often did. 45 bytes per idle connection were left resident
    /// (0.86 against 0.90–0.92 KiB with `MIMALLOC_PURGE_DELAY=0`, bench/results session 7).
    pub fn give_back_memory(&self, now: Instant) {
        if now.duration_since(self.last_give_back.get()) < GIVE_BACK_INTERVAL {
            return;
        }
        if self.parked_since_give_back.get() > 0 {
            self.parked_since_give_back.set(0);
            self.give_back_again.set(true);
        } else if !self.give_back_again.replace(false) {
            return;
        }
        self.last_give_back.set(now);
        crate::heap::give_back_free_memory();
    }

    /// Takes a connection out of rest, its socket out of the epoll instance; `None` when it
    /// is not parked (woken twice).
    ///
    /// A connection woken within `SOON` times the quiet time it parked after will need
    /// twice as many quiet looks to park next time (up to `MAX_LOOKS_TO_PARK`); one that
    /// slept longer, one look again. Parking and waking cost a few system calls and two
    /// task spawns: a device that talks every second or two would pay them per message.
    pub(crate) fn unpark(&self, conn: &ConnHandle) -> Option<Box<Resting>> {
        let resting = conn.resting.take()?;
        self.parked.set(self.parked.get() - 1);
        if let Some(epoll) = &self.epoll {
            // Fails only if the socket is not registered, which it is.
            let _ = epoll.delete(resting.socket.as_fd());
        }
        // Wraps after 49 days: a sleep across the wrap reads as short, which costs one
        // doubling of `looks_to_park`, nothing else.
        let slept_ms = crate::epoch::millis32(Instant::now()).wrapping_sub(resting.parked_at_ms);
        let looks = conn.looks_to_park.get();
        let quiet_ms = self.idle_after.as_millis() as u64 * u64::from(looks);
        conn.looks_to_park
            .set(if u64::from(slept_ms) < SOON * quiet_ms {
                looks.saturating_mul(2).min(MAX_LOOKS_TO_PARK)
            } else {
                1
            });
        Some(resting)
    }

    /// Waits until parked connections want to come back, and returns their ids (maybe
    /// repeated, maybe no longer parked). Runs in the shard's parking task only.
    pub async fn wait_for_wakes(&self, into: &mut Vec<u64>) {
        let Some(epoll) = &self.epoll else {
            return std::future::pending().await;
        };
        loop {
            self.collect(epoll, into);
            if !into.is_empty() {
                return;
            }
            let fd = epoll.0.as_raw_fd();
            futures_lite::future::or(
                async {
                    if let Err(e) = glommio::net::wait_readable(fd).await {
                        tracing::warn!(error = %e, "waiting on parked connections failed");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                },
                self.due.wake.notified(),
            )
            .await;
        }
    }

    fn collect(&self, epoll: &Epoll, into: &mut Vec<u64>) {
        into.append(&mut self.due.ids.borrow_mut());
        let mut events = [EpollEvent::empty(); 256];
        loop {
            match epoll.wait(&mut events, 0u8) {
                Ok(n) => {
                    into.extend(events[..n].iter().map(EpollEvent::data));
                    if n < events.len() {
                        return;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "epoll_wait on parked connections failed");
                    return;
                }
            }
        }
    }
}

/// A waker that puts `conn_id` on this thread's revive list. It carries the id in place of
/// a pointer, so parking allocates nothing for it.
fn revive_waker(conn_id: u64) -> Waker {
    fn clone(data: *const ()) -> RawWaker {
        RawWaker::new(data, &VTABLE)
    }
    fn wake(data: *const ()) {
        let id = data as usize as u64;
        DUE.with(|d| {
            if let Some(due) = &*d.borrow() {
                due.ids.borrow_mut().push(id);
                due.wake.notify();
            }
        });
    }
    fn drop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);
    // SAFETY: the data is an integer, never dereferenced; every function of the vtable
    // accepts any value and clone returns a waker of the same vtable. The wakers are woken
    // on the shard's own thread (the connection's `Notify`s are not shared across threads).
    #[allow(unsafe_code)]
    unsafe {
        Waker::from_raw(RawWaker::new(conn_id as usize as *const (), &VTABLE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revive_waker_lists_its_connection_on_this_thread() {
        let due = Rc::new(Due::default());
        DUE.with(|d| *d.borrow_mut() = Some(due.clone()));
        let waker = revive_waker(42);
        let other = waker.clone();
        waker.wake();
        other.wake_by_ref();
        assert_eq!(*due.ids.borrow(), vec![42, 42]);
        DUE.with(|d| *d.borrow_mut() = None);
    }

    #[test]
    fn watches_come_due_in_order() {
        let parking = Parking::new(1);
        for id in 1..=3 {
            parking.watch(id, Instant::now());
        }
        let mut due = Vec::new();
        parking.take_due_watches(Instant::now(), &mut due);
        assert!(due.is_empty(), "not before their time");
        parking.take_due_watches(Instant::now() + Duration::from_millis(5), &mut due);
        assert_eq!(due, vec![1, 2, 3]);
    }

    #[test]
    fn parking_off_watches_nothing() {
        let parking = Parking::new(0);
        parking.watch(1, Instant::now());
        let mut due = Vec::new();
        parking.take_due_watches(Instant::now() + Duration::from_secs(1), &mut due);
        assert!(due.is_empty());
        assert!(!parking.enabled());
    }
}
/// What a parked connection keeps, held to the allocator's size classes it was fitted to
/// (mimalloc: ..., 96, 112, 128, 160, 192, 224, 256, 320, ...; `heap.rs` tests that a
/// request gets its own class). A type that grows into the next class costs every idle
/// connection that class's step (bench/results, sessions 6 and 7).
#[cfg(test)]
mod size_classes {
    use std::mem::size_of;

    /// An `Rc`'s allocation: the value and two counts.
    const RC_HEADER: usize = 16;

    #[test]
    fn parked_state_stays_in_its_size_classes() {
        assert!(size_of::<super::Resting>() <= 80, "Resting");
        assert!(
            size_of::<crate::connection::handle::ConnHandle>() + RC_HEADER <= 192,
            "ConnHandle"
        );
        assert!(size_of::<crate::shard::SessionSlot>() <= 192, "SessionSlot");
    }
}
