//! Server→client deliveries at QoS 1 and 2.

use std::collections::VecDeque;
use std::fmt;

use crate::mqtt::{PacketId, QoS, ReasonCode};

/// Where a message sent to the client at QoS>0 stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// QoS 1: PUBLISH sent, PUBACK not yet received ([MQTT-4.3.2]).
    AwaitingPubAck,
    /// QoS 2: PUBLISH sent, PUBREC not yet received ([MQTT-4.3.3]).
    AwaitingPubRec,
    /// QoS 2: PUBREC received and PUBREL sent, PUBCOMP not yet received ([MQTT-4.3.3]).
    AwaitingPubComp,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::AwaitingPubAck => "awaiting PUBACK",
            Phase::AwaitingPubRec => "awaiting PUBREC",
            Phase::AwaitingPubComp => "awaiting PUBCOMP",
        })
    }
}

/// [`Outbound::enqueue`] refused the message: the queue is at its limit. The message is handed
/// back so the caller can count or log it (MQTT 5 lets the server discard it, section 4.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFull<M>(pub M);

/// An acknowledgement from the client that does not fit the state of the delivery it names.
///
/// The session is left unchanged when one of these is returned; whether to ignore the packet or
/// to disconnect is the broker's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No delivery with this packet identifier is in flight on this connection.
    #[error(
        "[MQTT-4.3.2]/[MQTT-4.3.3] acknowledgement for packet identifier {} which is not in flight",
        .0.get()
    )]
    UnknownPacketId(PacketId),
    /// The delivery exists but expects a different acknowledgement: e.g. PUBCOMP before PUBREC,
    /// PUBACK for a QoS 2 message, or a repeated PUBREC after PUBREL was sent.
    #[error(
        "[MQTT-4.3.2]/[MQTT-4.3.3] unexpected acknowledgement for packet identifier {}, which is {phase}",
        .packet_id.get()
    )]
    WrongPhase { packet_id: PacketId, phase: Phase },
}

/// A message that holds a packet identifier.
#[derive(Debug)]
struct Flight<M> {
    id: PacketId,
    qos: QoS,
    phase: Phase,
    /// Sent on an earlier connection but not yet re-sent on this one, because `set_window` shrank
    /// the window below the number in flight. See [`Outbound::set_window`].
    parked: bool,
    /// Where its id was taken in the allocator's walk round the id space (see `id_taken`).
    position: u64,
    msg: M,
}

/// Server→client deliveries at QoS 1 and 2: the in-flight window, bounded by the client's
/// Receive Maximum ([MQTT-3.3.4-9]), and a bounded FIFO queue behind it (for offline sessions and
/// for a full window).
///
/// # Invariants
/// - Every message is in exactly one place: the queue (never sent, no packet identifier), the
///   flight list (holds a packet identifier), or it has been handed back to the caller (acked,
///   refused, filtered out or dropped). Nothing is duplicated or lost in between.
/// - Packet identifiers held by the flight list are pairwise distinct, so a fresh one never
///   collides with one in flight ([MQTT-2.2.1-3]/[MQTT-4.3.2-1]).
/// - The flight list is in original send order, and messages leave the queue in FIFO order,
///   so resends follow the original order ([MQTT-4.6.0-1]).
/// - `in_flight_len() <= window()`, with one exception: a window shrink can not un-send a QoS 2
///   message awaiting PUBCOMP (it must be finished with PUBREL, [MQTT-4.3.3-6]), so if more of
///   those are in flight than the new window allows, they all stay and nothing else is in
///   flight until they drain. (A PUBREL is not a PUBLISH, so this does not break
///   [MQTT-3.3.4-9].)
/// - Parked messages (see [`Outbound::set_window`]) keep their packet identifier and phase
///   (AwaitingPubAck or AwaitingPubRec); they are not in flight on this connection and count as
///   queued, ahead of every never-sent message.
/// - `window() >= 1`.
///
/// Storage is one `VecDeque` for the queue and one for the flight list; lookups by packet
/// identifier scan the flight list, which is O(window) and cache-friendly for the usual windows
/// of tens to hundreds. Nothing is allocated per message beyond the queue slot.
#[derive(Debug)]
pub struct Outbound<M> {
    flight: VecDeque<Flight<M>>,
    /// How many entries of `flight` are parked (at most 65535: each has its own packet id).
    /// Fields are kept narrow: a broker keeps one `Outbound` per session, idle or not.
    parked: u16,
    queue: VecDeque<(QoS, M)>,
    window: u16,
    queue_limit: u32,
    /// The next packet identifier to try; wraps 65535 -> 1.
    next_id: u16,
    /// How far the allocator has walked round the id space in total: `next_id`'s position.
    position: u64,
    /// The position of the id `allocate_id` handed out last.
    allocated_at: u64,
}

impl<M> Outbound<M> {
    /// `window` is the client's Receive Maximum (65535 when absent; the broker's own choice for
    /// 3.1.1). Zero is a Protocol Error in CONNECT and would stall the session forever, so it is
    /// taken as 1. `queue_limit` bounds the messages waiting behind a full window.
    pub fn new(window: u16, queue_limit: usize) -> Self {
        Outbound {
            flight: VecDeque::new(),
            parked: 0,
            queue: VecDeque::new(),
            window: window.max(1),
            queue_limit: u32::try_from(queue_limit).unwrap_or(u32::MAX),
            next_id: 1,
            position: 0,
            allocated_at: 0,
        }
    }

    /// Adopts a new Receive Maximum, as a reconnect may bring one (0 is taken as 1).
    ///
    /// When the window shrinks below the number in flight, the most recently sent messages still
    /// awaiting PUBACK or PUBREC are *parked* until the window is below the new limit. A parked
    /// message keeps its packet identifier, because a resend must use the original one
    /// ([MQTT-4.4.0-1]; for QoS 2 a new one could make the client deliver it twice), but it is
    /// not re-sent yet, because that would exceed the client's Receive Maximum ([MQTT-3.3.4-9]).
    /// [`in_flight`](Self::in_flight) leaves it out; [`fill_window`](Self::fill_window) re-sends
    /// it, in original order, ahead of any queued message, as soon as there is room — that
    /// resend is a redelivery (DUP=1), which [`fill_window_dup`](Self::fill_window_dup) reports.
    ///
    /// Call this before resending [`in_flight`](Self::in_flight) after a reconnect.
    pub fn set_window(&mut self, window: u16) {
        self.window = window.max(1);
        let mut excess = self
            .in_flight_len()
            .saturating_sub(usize::from(self.window));
        // Newest first, so the messages that stay active are the oldest ones and a resend never
        // overtakes an earlier PUBLISH ([MQTT-4.6.0-1]). AwaitingPubComp can't be parked: it
        // must be finished with PUBREL, never re-sent as a PUBLISH ([MQTT-4.3.3-6]).
        for entry in self.flight.iter_mut().rev() {
            if excess == 0 {
                break;
            }
            if !entry.parked && entry.phase != Phase::AwaitingPubComp {
                entry.parked = true;
                self.parked += 1;
                excess -= 1;
            }
        }
    }

    /// Queues a message for delivery at `qos` (1 or 2; a QoS 0 message needs no state machine,
    /// and if given one anyway it is delivered at QoS 1 rather than being lost).
    ///
    /// The message is refused when, after filling the window's free room, more than
    /// `queue_limit` messages would be left waiting; so `queue_limit` counts queued, not
    /// in-flight, messages, and a limit of 0 still lets messages straight into a free window.
    pub fn enqueue(&mut self, msg: M, qos: QoS) -> Result<(), QueueFull<M>> {
        let free = usize::from(self.window).saturating_sub(self.in_flight_len());
        if self.queued_len() >= (self.queue_limit as usize).saturating_add(free) {
            return Err(QueueFull(msg));
        }
        let qos = match qos {
            QoS::AtMostOnce => QoS::AtLeastOnce,
            other => other,
        };
        self.queue.push_back((qos, msg));
        Ok(())
    }

    /// Moves queued messages into the window while it has room, each with a fresh packet id that
    /// is not in flight (wrap 65535 -> 1), calling `send(packet_id, qos, &msg)` for each, in FIFO
    /// order. Parked messages (see [`set_window`](Self::set_window)) go first, with their
    /// original packet identifiers.
    pub fn fill_window(&mut self, mut send: impl FnMut(PacketId, QoS, &M)) {
        self.fill_window_dup(|_| true, |id, qos, _dup, msg| send(id, qos, msg));
    }

    /// Same as [`fill_window`](Self::fill_window) but lets the caller skip a queued message (e.g.
    /// expired): return false from `keep` and it is dropped, not sent. Returns the number dropped.
    ///
    /// Parked messages are not offered to `keep`: they were already sent once, and a message
    /// whose onward delivery has started must not be expired ([MQTT-3.3.2-5], [MQTT-4.3.3-7]).
    pub fn fill_window_filtered(
        &mut self,
        keep: impl FnMut(&M) -> bool,
        mut send: impl FnMut(PacketId, QoS, &M),
    ) -> usize {
        self.fill_window_dup(keep, |id, qos, _dup, msg| send(id, qos, msg))
    }

    /// Same as [`fill_window_filtered`](Self::fill_window_filtered), and tells `send` whether the
    /// PUBLISH is a redelivery of a parked message, which must carry DUP=1 ([MQTT-3.3.1-1]).
    pub fn fill_window_dup(
        &mut self,
        mut keep: impl FnMut(&M) -> bool,
        mut send: impl FnMut(PacketId, QoS, bool, &M),
    ) -> usize {
        let window = usize::from(self.window);
        if self.parked > 0 {
            let mut active = self.in_flight_len();
            for entry in self.flight.iter_mut() {
                if self.parked == 0 || active >= window {
                    break;
                }
                if entry.parked {
                    entry.parked = false;
                    self.parked -= 1;
                    active += 1;
                    send(entry.id, entry.qos, true, &entry.msg);
                }
            }
        }
        // Never-sent messages may only follow once every parked one is re-sent, so FIFO order
        // holds across the reconnect ([MQTT-4.6.0-1]).
        let mut dropped = 0;
        while self.parked == 0 && self.in_flight_len() < window {
            let Some((qos, msg)) = self.queue.pop_front() else {
                break;
            };
            if !keep(&msg) {
                dropped += 1;
                continue;
            }
            let Some(id) = self.allocate_id() else {
                // Unreachable while the invariants hold (fewer than 65535 identifiers are taken
                // whenever the window has room), but never lose the message if they don't.
                self.queue.push_front((qos, msg));
                break;
            };
            let phase = match qos {
                QoS::ExactlyOnce => Phase::AwaitingPubRec,
                _ => Phase::AwaitingPubAck,
            };
            send(id, qos, false, &msg);
            self.flight.push_back(Flight {
                id,
                qos,
                phase,
                parked: false,
                position: self.allocated_at,
                msg,
            });
        }
        dropped
    }

    /// PUBACK from the client: the QoS 1 delivery is done and the message is handed back.
    pub fn on_puback(&mut self, id: PacketId) -> Result<M, AckError> {
        let index = self.find(id, Phase::AwaitingPubAck)?;
        self.remove(index, id)
    }

    /// PUBREC from the client. With a success reason the message moves to AwaitingPubComp and
    /// the caller sends PUBREL ([MQTT-4.3.3-4]); `Ok(None)`. With an error reason (>= 0x80) the
    /// delivery is finished, must not be re-sent, and the message is handed back: `Ok(Some(msg))`.
    ///
    /// A second PUBREC for a message already awaiting PUBCOMP is `WrongPhase`; answering it with
    /// PUBREL again is harmless.
    pub fn on_pubrec(&mut self, id: PacketId, reason: ReasonCode) -> Result<Option<M>, AckError> {
        let index = self.find(id, Phase::AwaitingPubRec)?;
        if reason.is_error() {
            return self.remove(index, id).map(Some);
        }
        if let Some(entry) = self.flight.get_mut(index) {
            entry.phase = Phase::AwaitingPubComp;
        }
        Ok(None)
    }

    /// PUBCOMP from the client: the QoS 2 delivery is done and the message is handed back.
    pub fn on_pubcomp(&mut self, id: PacketId) -> Result<M, AckError> {
        let index = self.find(id, Phase::AwaitingPubComp)?;
        self.remove(index, id)
    }

    /// After a reconnect: the in-flight messages in send order, to resend (PUBLISH with DUP=1 for
    /// AwaitingPubAck/AwaitingPubRec, PUBREL for AwaitingPubComp) — [MQTT-4.4.0-1].
    ///
    /// Call [`set_window`](Self::set_window) first, and [`fill_window`](Self::fill_window) after.
    pub fn in_flight(&self) -> impl Iterator<Item = (PacketId, QoS, Phase, &M)> {
        self.flight
            .iter()
            .filter(|entry| !entry.parked)
            .map(|entry| (entry.id, entry.qos, entry.phase, &entry.msg))
    }

    /// Every message the session still owes, in flight (parked too) then queued, with its
    /// QoS: what must survive a restart.
    pub fn all(&self) -> impl Iterator<Item = (QoS, &M)> {
        self.flight
            .iter()
            .map(|entry| (entry.qos, &entry.msg))
            .chain(self.queue.iter().map(|(qos, msg)| (*qos, msg)))
    }

    /// Messages in flight on this connection (sent, not yet fully acknowledged).
    pub fn in_flight_len(&self) -> usize {
        self.flight.len() - usize::from(self.parked)
    }

    /// Messages waiting for room in the window, parked ones included.
    pub fn queued_len(&self) -> usize {
        self.queue.len() + usize::from(self.parked)
    }

    pub fn window(&self) -> u16 {
        self.window
    }

    /// Drops queued messages for which `keep` returns false (e.g. expired ones); returns the
    /// number dropped. Parked messages are kept: their delivery has started ([MQTT-3.3.2-5]).
    pub fn retain_queued(&mut self, mut keep: impl FnMut(&M) -> bool) -> usize {
        let before = self.queue.len();
        self.queue.retain(|(_, msg)| keep(msg));
        before - self.queue.len()
    }

    /// Forgets every message, in flight and queued: the session ended or a Clean Start began.
    pub fn clear(&mut self) {
        self.flight.clear();
        self.queue.clear();
        self.parked = 0;
    }

    /// The index of the active (not parked) delivery `id`, if it is in `expected` phase.
    fn find(&self, id: PacketId, expected: Phase) -> Result<usize, AckError> {
        // A parked message was not sent on this connection, so the client can't be acknowledging
        // it (acknowledgements are never re-sent across a reconnect, [MQTT-4.4.0-1]).
        let index = self
            .flight
            .iter()
            .position(|entry| entry.id == id && !entry.parked)
            .ok_or(AckError::UnknownPacketId(id))?;
        match self.flight.get(index) {
            Some(entry) if entry.phase == expected => Ok(index),
            Some(entry) => Err(AckError::WrongPhase {
                packet_id: id,
                phase: entry.phase,
            }),
            None => Err(AckError::UnknownPacketId(id)),
        }
    }

    fn remove(&mut self, index: usize, id: PacketId) -> Result<M, AckError> {
        // `index` comes from `find` on the same, unchanged list, so this always succeeds.
        self.flight
            .remove(index)
            .map(|entry| entry.msg)
            .ok_or(AckError::UnknownPacketId(id))
    }

    /// A packet identifier held by no message, the first free one at or after `next_id` in the
    /// cyclic order 1..=65535.
    fn allocate_id(&mut self) -> Option<PacketId> {
        let start = self.next_id;
        let found = if !self.id_taken(start) {
            // The common case: identifiers are handed out in sequence and come back long before
            // the counter wraps round to them.
            Some(start)
        } else {
            self.first_free_from(start)
        };
        let id = found?;
        // Advance the position by how far the id is from `start`, plus one for the id.
        let skipped =
            (u32::from(id) + u32::from(u16::MAX) - u32::from(start)) % u32::from(u16::MAX);
        self.position += u64::from(skipped);
        self.allocated_at = self.position;
        self.position += 1;
        self.next_id = if id == u16::MAX { 1 } else { id + 1 };
        PacketId::new(id)
    }

    fn id_taken(&self, id: u16) -> bool {
        // Fast path, O(1), for the usual `id == next_id`: every message in flight took its id
        // at a position (`Flight::position`) between the oldest one's and `self.position`.
        // If that stretch is shorter than one lap of the id space, `next_id` (the id at
        // `self.position`) differs from all of them. Otherwise (a message held for a whole
        // lap) scan.
        match self.flight.front() {
            None => return false,
            Some(front)
                if id == self.next_id && self.position - front.position < u64::from(u16::MAX) =>
            {
                return false
            }
            Some(_) => {}
        }
        self.flight.iter().any(|entry| entry.id.get() == id)
    }

    /// The first identifier at or after `start` (cyclically) that no message holds, without
    /// allocating: `free(k)`, the number of free identifiers among the `k` from `start`, grows
    /// by 0 or 1 with each step of `k`, so the smallest `k` with `free(k) > 0` — found by binary
    /// search with O(window) counting per step — ends at the first free identifier. A plain
    /// probe-and-scan could cost 65535 × window when a large window is nearly full.
    fn first_free_from(&self, start: u16) -> Option<u16> {
        const IDS: u32 = u16::MAX as u32;
        let distance = |id: u16| (u32::from(id) + IDS - u32::from(start)) % IDS;
        let free_within = |k: u32| {
            k - self
                .flight
                .iter()
                .filter(|e| distance(e.id.get()) < k)
                .count() as u32
        };
        if free_within(IDS) == 0 {
            return None;
        }
        let (mut lo, mut hi) = (1, IDS);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if free_within(mid) > 0 {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        // Offset lo - 1 from start, wrapped into 1..=65535.
        let id = (u32::from(start) - 1 + lo - 1) % IDS + 1;
        u16::try_from(id).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pid(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    /// An Outbound whose flight list holds exactly `ids`, with `next_id` at `next`.
    fn holding(ids: &[u16], next: u16) -> Outbound<u16> {
        let mut out = Outbound::new(u16::MAX, 0);
        out.flight = ids
            .iter()
            .map(|&id| Flight {
                id: pid(id),
                qos: QoS::AtLeastOnce,
                phase: Phase::AwaitingPubAck,
                parked: false,
                position: 0,
                msg: id,
            })
            .collect();
        out.next_id = next;
        // As if these had been held for laps: `id_taken` must scan, not trust positions.
        out.position = 2 * u64::from(u16::MAX);
        out
    }

    #[test]
    fn first_free_skips_a_run_of_taken_ids() {
        let out = holding(&[5, 6, 7, 9], 5);
        assert_eq!(out.first_free_from(5), Some(8));
        assert_eq!(out.first_free_from(9), Some(10));
    }

    #[test]
    fn first_free_wraps_past_65535() {
        let out = holding(&[65534, 65535, 1, 2], 65534);
        assert_eq!(out.first_free_from(65534), Some(3));
    }

    #[test]
    fn first_free_finds_the_one_hole_behind_the_counter_in_a_full_range() {
        // Every identifier but 41 is taken and the counter sits just past the hole: the search
        // must wrap all the way round.
        let ids: Vec<u16> = (1..=u16::MAX).filter(|&id| id != 41).collect();
        let mut out = holding(&ids, 42);
        assert_eq!(out.allocate_id(), Some(pid(41)));
        assert_eq!(out.next_id, 42);
        out.flight.push_back(Flight {
            id: pid(41),
            qos: QoS::AtLeastOnce,
            phase: Phase::AwaitingPubAck,
            parked: false,
            position: 0,
            msg: 41,
        });
        assert_eq!(out.allocate_id(), None);
    }
}
