//! Random sequences of enqueue, fill, acknowledgements (right and wrong), expiry and reconnects
//! against a simple model of the outbound window: no message is lost or duplicated, every one is
//! first sent in FIFO order and finished exactly once, and the window bound holds throughout.
#![allow(clippy::unwrap_used)]

// Nested so that `cargo test session` selects these tests by name.
mod session_proptest {
    use std::collections::{HashSet, VecDeque};

    use iotcore_core::mqtt::{PacketId, QoS, ReasonCode};
    use iotcore_core::session::{AckError, Outbound, Phase, QueueFull};
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy)]
    enum Reply {
        Puback,
        PubrecOk,
        PubrecErr,
        Pubcomp,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue(QoS),
        Fill,
        /// Acknowledge the in-flight message at this index (modulo the count).
        Ack(usize, Reply),
        /// Acknowledge an id that is probably not in flight.
        AckStray(u16, Reply),
        /// Reconnect with a new Receive Maximum.
        Reconnect(u16),
        /// Drop queued messages divisible by this.
        Expire(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let qos = prop_oneof![Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)];
        let ack = prop_oneof![
            Just(Reply::Puback),
            Just(Reply::PubrecOk),
            Just(Reply::PubrecErr),
            Just(Reply::Pubcomp)
        ];
        prop_oneof![
            4 => qos.prop_map(Op::Enqueue),
            3 => Just(Op::Fill),
            6 => (any::<usize>(), ack.clone()).prop_map(|(i, a)| Op::Ack(i, a)),
            1 => (1u16.., ack).prop_map(|(id, a)| Op::AckStray(id, a)),
            1 => (0u16..8).prop_map(Op::Reconnect),
            1 => (2u64..6).prop_map(Op::Expire),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Entry {
        id: u16,
        qos: QoS,
        phase: Phase,
        parked: bool,
        msg: u64,
    }

    /// The model: the same state as `Outbound`, kept in plain vectors, with the rules spelled out
    /// one by one.
    struct Model {
        window: usize,
        queue_limit: usize,
        queue: VecDeque<(u64, QoS)>,
        flight: Vec<Entry>,
        next_msg: u64,
        accepted: Vec<u64>,
        first_sends: Vec<u64>,
        finished: Vec<u64>,
        dropped: Vec<u64>,
    }

    impl Model {
        fn active(&self) -> usize {
            self.flight.iter().filter(|e| !e.parked).count()
        }
        fn parked(&self) -> usize {
            self.flight.len() - self.active()
        }
    }

    fn pid(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    fn apply(out: &mut Outbound<u64>, m: &mut Model, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Enqueue(qos) => {
                let msg = m.next_msg;
                m.next_msg += 1;
                let free = m.window.saturating_sub(m.active());
                let fits = m.queue.len() + m.parked() < m.queue_limit + free;
                let got = out.enqueue(msg, qos);
                if fits {
                    prop_assert_eq!(got, Ok(()));
                    m.queue.push_back((msg, qos));
                    m.accepted.push(msg);
                } else {
                    prop_assert_eq!(got, Err(QueueFull(msg)));
                }
            }
            Op::Fill => {
                let mut sent = Vec::new();
                let dropped = out.fill_window_dup(
                    |_| true,
                    |id, qos, dup, msg| sent.push((id.get(), qos, dup, *msg)),
                );
                prop_assert_eq!(dropped, 0);
                let mut sent = sent.into_iter();
                // Parked ones first, in send order, with their own ids, as redeliveries.
                let mut active = m.active();
                for e in m.flight.iter_mut() {
                    if active >= m.window {
                        break;
                    }
                    if e.parked {
                        e.parked = false;
                        active += 1;
                        prop_assert_eq!(sent.next(), Some((e.id, e.qos, true, e.msg)));
                    }
                }
                if m.parked() == 0 {
                    while m.active() < m.window {
                        let Some((msg, qos)) = m.queue.pop_front() else {
                            break;
                        };
                        let Some((id, sqos, dup, smsg)) = sent.next() else {
                            return Err(TestCaseError::fail("a queued message was not sent"));
                        };
                        prop_assert_eq!((sqos, dup, smsg), (qos, false, msg));
                        prop_assert!(
                            m.flight.iter().all(|e| e.id != id),
                            "packet id {} is in flight",
                            id
                        );
                        let phase = if qos == QoS::ExactlyOnce {
                            Phase::AwaitingPubRec
                        } else {
                            Phase::AwaitingPubAck
                        };
                        m.first_sends.push(msg);
                        m.flight.push(Entry {
                            id,
                            qos,
                            phase,
                            parked: false,
                            msg,
                        });
                    }
                }
                prop_assert_eq!(sent.next(), None);
            }
            Op::Ack(index, ack) => {
                let actives: Vec<usize> = (0..m.flight.len())
                    .filter(|&i| !m.flight[i].parked)
                    .collect();
                if actives.is_empty() {
                    return Ok(());
                }
                let at = actives[index % actives.len()];
                let e = m.flight[at].clone();
                let id = pid(e.id);
                let wrong = Err(AckError::WrongPhase {
                    packet_id: id,
                    phase: e.phase,
                });
                match ack {
                    Reply::Puback => {
                        let got = out.on_puback(id);
                        if e.phase == Phase::AwaitingPubAck {
                            prop_assert_eq!(got, Ok(e.msg));
                            m.flight.remove(at);
                            m.finished.push(e.msg);
                        } else {
                            prop_assert_eq!(got, wrong);
                        }
                    }
                    Reply::PubrecOk | Reply::PubrecErr => {
                        let reason = if matches!(ack, Reply::PubrecOk) {
                            ReasonCode::Success
                        } else {
                            ReasonCode::ImplementationSpecificError
                        };
                        let got = out.on_pubrec(id, reason);
                        if e.phase != Phase::AwaitingPubRec {
                            prop_assert_eq!(got, wrong.map(|_: u64| None));
                        } else if reason.is_error() {
                            prop_assert_eq!(got, Ok(Some(e.msg)));
                            m.flight.remove(at);
                            m.finished.push(e.msg);
                        } else {
                            prop_assert_eq!(got, Ok(None));
                            m.flight[at].phase = Phase::AwaitingPubComp;
                        }
                    }
                    Reply::Pubcomp => {
                        let got = out.on_pubcomp(id);
                        if e.phase == Phase::AwaitingPubComp {
                            prop_assert_eq!(got, Ok(e.msg));
                            m.flight.remove(at);
                            m.finished.push(e.msg);
                        } else {
                            prop_assert_eq!(got, wrong);
                        }
                    }
                }
            }
            Op::AckStray(raw, ack) => {
                // Parked ids count as unknown: they were not sent on this connection.
                if m.flight.iter().any(|e| e.id == raw && !e.parked) {
                    return Ok(());
                }
                let id = pid(raw);
                let unknown = AckError::UnknownPacketId(id);
                match ack {
                    Reply::Puback => prop_assert_eq!(out.on_puback(id), Err(unknown)),
                    Reply::PubrecOk => {
                        prop_assert_eq!(out.on_pubrec(id, ReasonCode::Success), Err(unknown))
                    }
                    Reply::PubrecErr => prop_assert_eq!(
                        out.on_pubrec(id, ReasonCode::UnspecifiedError),
                        Err(unknown)
                    ),
                    Reply::Pubcomp => prop_assert_eq!(out.on_pubcomp(id), Err(unknown)),
                }
            }
            Op::Reconnect(window) => {
                out.set_window(window);
                m.window = usize::from(window.max(1));
                let mut excess = m.active().saturating_sub(m.window);
                for e in m.flight.iter_mut().rev() {
                    if excess > 0 && !e.parked && e.phase != Phase::AwaitingPubComp {
                        e.parked = true;
                        excess -= 1;
                    }
                }
            }
            Op::Expire(k) => {
                let dropped = out.retain_queued(|msg| msg % k != 0);
                let before = m.queue.len();
                let (gone, kept): (Vec<_>, Vec<_>) =
                    m.queue.drain(..).partition(|(msg, _)| msg % k == 0);
                m.queue = kept.into();
                m.dropped.extend(gone.iter().map(|(msg, _)| *msg));
                prop_assert_eq!(dropped, before - m.queue.len());
            }
        }
        Ok(())
    }

    fn check_invariants(out: &Outbound<u64>, m: &Model) -> Result<(), TestCaseError> {
        let got: Vec<_> = out
            .in_flight()
            .map(|(id, qos, phase, msg)| (id.get(), qos, phase, *msg))
            .collect();
        let want: Vec<_> = m
            .flight
            .iter()
            .filter(|e| !e.parked)
            .map(|e| (e.id, e.qos, e.phase, e.msg))
            .collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(out.in_flight_len(), m.active());
        prop_assert_eq!(out.queued_len(), m.queue.len() + m.parked());
        prop_assert_eq!(usize::from(out.window()), m.window);
        prop_assert!(
            out.in_flight_len() <= usize::from(out.window())
                || out
                    .in_flight()
                    .all(|(_, _, phase, _)| phase == Phase::AwaitingPubComp),
            "window exceeded by messages that could have been parked"
        );
        let ids: HashSet<u16> = m.flight.iter().map(|e| e.id).collect();
        prop_assert_eq!(ids.len(), m.flight.len(), "duplicate packet ids");
        prop_assert_eq!(
            m.accepted.len(),
            m.finished.len() + m.dropped.len() + m.flight.len() + m.queue.len(),
            "a message was lost or duplicated"
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn outbound_matches_the_model(
            window in 1u16..6,
            queue_limit in 0usize..6,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut out = Outbound::new(window, queue_limit);
            let mut m = Model {
                window: usize::from(window),
                queue_limit,
                queue: VecDeque::new(),
                flight: Vec::new(),
                next_msg: 0,
                accepted: Vec::new(),
                first_sends: Vec::new(),
                finished: Vec::new(),
                dropped: Vec::new(),
            };
            for op in &ops {
                apply(&mut out, &mut m, op)?;
                check_invariants(&out, &m)?;
            }

            // Drain: reconnect with a roomy window, then acknowledge everything properly.
            apply(&mut out, &mut m, &Op::Reconnect(8))?;
            for _ in 0..10_000 {
                if m.flight.is_empty() && m.queue.is_empty() {
                    break;
                }
                apply(&mut out, &mut m, &Op::Fill)?;
                let ack = match m.flight.iter().find(|e| !e.parked).map(|e| e.phase) {
                    Some(Phase::AwaitingPubAck) => Reply::Puback,
                    Some(Phase::AwaitingPubRec) => Reply::PubrecOk,
                    Some(Phase::AwaitingPubComp) => Reply::Pubcomp,
                    None => continue,
                };
                apply(&mut out, &mut m, &Op::Ack(0, ack))?;
                check_invariants(&out, &m)?;
            }
            prop_assert_eq!((out.in_flight_len(), out.queued_len()), (0, 0));

            // Every accepted message finished or expired exactly once...
            let mut done: Vec<u64> = m.finished.iter().chain(&m.dropped).copied().collect();
            done.sort_unstable();
            prop_assert_eq!(&done, &m.accepted);
            // ...and those not expired were first sent in the order they were enqueued.
            let dropped: HashSet<u64> = m.dropped.iter().copied().collect();
            let expected: Vec<u64> =
                m.accepted.iter().copied().filter(|msg| !dropped.contains(msg)).collect();
            prop_assert_eq!(&m.first_sends, &expected);
        }

        /// With acknowledgements in order, messages complete in FIFO order across reconnects.
        #[test]
        fn in_order_acks_complete_in_fifo_order(
            window in 1u16..5,
            qos2 in proptest::collection::vec(any::<bool>(), 1..60),
            reconnect_every in 2usize..10,
            new_windows in proptest::collection::vec(1u16..5, 60),
        ) {
            let mut out = Outbound::new(window, qos2.len());
            for (msg, &q2) in qos2.iter().enumerate() {
                let qos = if q2 { QoS::ExactlyOnce } else { QoS::AtLeastOnce };
                out.enqueue(msg, qos).unwrap();
            }
            let mut done = Vec::new();
            for step in 0..10_000 {
                if out.in_flight_len() + out.queued_len() == 0 {
                    break;
                }
                if step % reconnect_every == 0 {
                    out.set_window(new_windows[step % new_windows.len()]);
                }
                out.fill_window(|_, _, _| {});
                prop_assert!(
                    out.in_flight_len() <= usize::from(out.window())
                        || out.in_flight().all(|(_, _, p, _)| p == Phase::AwaitingPubComp)
                );
                let Some((id, _, phase, _)) = out.in_flight().next() else { continue };
                match phase {
                    Phase::AwaitingPubAck => done.push(out.on_puback(id).unwrap()),
                    Phase::AwaitingPubRec => {
                        prop_assert_eq!(out.on_pubrec(id, ReasonCode::Success).unwrap(), None)
                    }
                    Phase::AwaitingPubComp => done.push(out.on_pubcomp(id).unwrap()),
                }
            }
            prop_assert_eq!(done, (0..qos2.len()).collect::<Vec<_>>());
        }
    }

    proptest! {
        // Each case walks the whole id space twice.
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Over two full wraps of the 16-bit id space, with random messages held in flight for a
        /// long time, a fresh packet id never collides with one still in flight.
        #[test]
        fn packet_ids_never_collide_across_wraps(
            window in 2u16..6,
            hold_at in proptest::collection::btree_set(0u32..140_000, 1..20),
            release_at in proptest::collection::btree_set(0u32..140_000, 0..20),
        ) {
            let mut out = Outbound::new(window, 0);
            let mut held: VecDeque<PacketId> = VecDeque::new();
            let mut wraps = 0;
            let mut last = 0;
            for step in 0..140_000u32 {
                out.enqueue(step, QoS::AtLeastOnce).unwrap();
                let mut sent = None;
                out.fill_window(|id, _, _| sent = Some(id));
                let id = sent.unwrap();
                prop_assert!(!held.contains(&id), "id {} reused while in flight", id.get());
                if id.get() < last {
                    wraps += 1;
                }
                last = id.get();
                if hold_at.contains(&step) && held.len() + 2 <= usize::from(window) {
                    held.push_back(id);
                } else {
                    prop_assert_eq!(out.on_puback(id), Ok(step));
                }
                if release_at.contains(&step) {
                    if let Some(old) = held.pop_front() {
                        prop_assert!(out.on_puback(old).is_ok());
                    }
                }
            }
            prop_assert!(wraps >= 2);
        }
    }
}
