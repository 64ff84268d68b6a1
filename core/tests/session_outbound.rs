//! Every transition and error of the server→client QoS 1/2 state machine.
#![allow(clippy::unwrap_used)]

// Nested so that `cargo test session` selects these tests by name.
mod session_outbound {
    use iotcore_core::mqtt::{PacketId, QoS, ReasonCode};
    use iotcore_core::session::{AckError, Outbound, Phase, QueueFull};

    fn pid(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    /// Fills the window and returns what was sent, as (id, qos, msg).
    fn fill(out: &mut Outbound<&'static str>) -> Vec<(u16, QoS, &'static str)> {
        let mut sent = Vec::new();
        out.fill_window(|id, qos, msg| sent.push((id.get(), qos, *msg)));
        sent
    }

    fn in_flight(out: &Outbound<&'static str>) -> Vec<(u16, QoS, Phase, &'static str)> {
        out.in_flight()
            .map(|(id, qos, phase, msg)| (id.get(), qos, phase, *msg))
            .collect()
    }

    #[test]
    fn qos1_publish_then_puback_completes() {
        let mut out = Outbound::new(10, 10);
        out.enqueue("a", QoS::AtLeastOnce).unwrap();
        assert_eq!(out.queued_len(), 1);
        assert_eq!(out.in_flight_len(), 0);
        assert_eq!(fill(&mut out), vec![(1, QoS::AtLeastOnce, "a")]);
        assert_eq!(
            in_flight(&out),
            vec![(1, QoS::AtLeastOnce, Phase::AwaitingPubAck, "a")]
        );
        assert_eq!(out.queued_len(), 0);
        assert_eq!(out.on_puback(pid(1)), Ok("a"));
        assert_eq!(out.in_flight_len(), 0);
        // Done means gone: a second PUBACK is unknown.
        assert_eq!(
            out.on_puback(pid(1)),
            Err(AckError::UnknownPacketId(pid(1)))
        );
    }

    #[test]
    fn qos2_pubrec_then_pubcomp_completes() {
        let mut out = Outbound::new(10, 10);
        out.enqueue("b", QoS::ExactlyOnce).unwrap();
        assert_eq!(fill(&mut out), vec![(1, QoS::ExactlyOnce, "b")]);
        assert_eq!(
            in_flight(&out),
            vec![(1, QoS::ExactlyOnce, Phase::AwaitingPubRec, "b")]
        );
        assert_eq!(out.on_pubrec(pid(1), ReasonCode::Success), Ok(None));
        assert_eq!(
            in_flight(&out),
            vec![(1, QoS::ExactlyOnce, Phase::AwaitingPubComp, "b")]
        );
        // NoMatchingSubscribers (0x10) is not an error: the flow continues with PUBREL.
        out.enqueue("c", QoS::ExactlyOnce).unwrap();
        fill(&mut out);
        assert_eq!(
            out.on_pubrec(pid(2), ReasonCode::NoMatchingSubscribers),
            Ok(None)
        );
        assert_eq!(out.on_pubcomp(pid(1)), Ok("b"));
        assert_eq!(out.on_pubcomp(pid(2)), Ok("c"));
        assert_eq!(out.in_flight_len(), 0);
    }

    #[test]
    fn pubrec_with_error_reason_finishes_the_delivery() {
        let mut out = Outbound::new(10, 10);
        out.enqueue("x", QoS::ExactlyOnce).unwrap();
        fill(&mut out);
        assert_eq!(
            out.on_pubrec(pid(1), ReasonCode::QuotaExceeded),
            Ok(Some("x"))
        );
        assert_eq!(out.in_flight_len(), 0);
        // No PUBREL phase: the PUBCOMP that follows is unknown.
        assert_eq!(
            out.on_pubcomp(pid(1)),
            Err(AckError::UnknownPacketId(pid(1)))
        );
        assert_eq!(
            out.on_pubrec(pid(1), ReasonCode::UnspecifiedError),
            Err(AckError::UnknownPacketId(pid(1)))
        );
    }

    #[test]
    fn acks_of_unknown_ids_are_errors_and_change_nothing() {
        let mut out = Outbound::new(10, 10);
        out.enqueue("a", QoS::AtLeastOnce).unwrap();
        fill(&mut out);
        let before = in_flight(&out);
        assert_eq!(
            out.on_puback(pid(7)),
            Err(AckError::UnknownPacketId(pid(7)))
        );
        assert_eq!(
            out.on_pubrec(pid(7), ReasonCode::Success),
            Err(AckError::UnknownPacketId(pid(7)))
        );
        assert_eq!(
            out.on_pubcomp(pid(7)),
            Err(AckError::UnknownPacketId(pid(7)))
        );
        assert_eq!(in_flight(&out), before);
    }

    #[test]
    fn pubcomp_before_pubrec_is_wrong_phase() {
        let mut out = Outbound::new(10, 10);
        out.enqueue("q2", QoS::ExactlyOnce).unwrap();
        fill(&mut out);
        let err = out.on_pubcomp(pid(1)).unwrap_err();
        assert_eq!(
            err,
            AckError::WrongPhase {
                packet_id: pid(1),
                phase: Phase::AwaitingPubRec
            }
        );
        assert!(err.to_string().contains("[MQTT-4.3.3]"), "{err}");
        assert!(err.to_string().contains("awaiting PUBREC"), "{err}");
        // Still intact: the proper flow goes on.
        assert_eq!(out.on_pubrec(pid(1), ReasonCode::Success), Ok(None));
        assert_eq!(out.on_pubcomp(pid(1)), Ok("q2"));
    }

    #[test]
    fn acks_of_the_wrong_kind_are_wrong_phase() {
        let mut out = Outbound::new(10, 10);
        out.enqueue("q1", QoS::AtLeastOnce).unwrap();
        out.enqueue("q2", QoS::ExactlyOnce).unwrap();
        fill(&mut out);
        let q1 = AckError::WrongPhase {
            packet_id: pid(1),
            phase: Phase::AwaitingPubAck,
        };
        assert_eq!(out.on_pubrec(pid(1), ReasonCode::Success), Err(q1));
        // An error PUBREC for a QoS 1 message must not finish it either.
        assert_eq!(out.on_pubrec(pid(1), ReasonCode::UnspecifiedError), Err(q1));
        assert_eq!(out.on_pubcomp(pid(1)), Err(q1));
        assert_eq!(
            out.on_puback(pid(2)),
            Err(AckError::WrongPhase {
                packet_id: pid(2),
                phase: Phase::AwaitingPubRec
            })
        );
        out.on_pubrec(pid(2), ReasonCode::Success).unwrap();
        let q2 = AckError::WrongPhase {
            packet_id: pid(2),
            phase: Phase::AwaitingPubComp,
        };
        // A repeated PUBREC after PUBREL was sent.
        assert_eq!(out.on_pubrec(pid(2), ReasonCode::Success), Err(q2));
        assert_eq!(out.on_puback(pid(2)), Err(q2));
        assert_eq!(out.on_puback(pid(1)), Ok("q1"));
        assert_eq!(out.on_pubcomp(pid(2)), Ok("q2"));
    }

    #[test]
    fn error_messages_name_the_spec() {
        let unknown = AckError::UnknownPacketId(pid(42)).to_string();
        assert!(unknown.contains("[MQTT-4.3.2]"), "{unknown}");
        assert!(unknown.contains("42"), "{unknown}");
    }

    #[test]
    fn full_window_is_freed_by_puback_and_the_next_queued_moves_in() {
        let mut out = Outbound::new(2, 10);
        for m in ["a", "b", "c", "d"] {
            out.enqueue(m, QoS::AtLeastOnce).unwrap();
        }
        assert_eq!(
            fill(&mut out),
            vec![(1, QoS::AtLeastOnce, "a"), (2, QoS::AtLeastOnce, "b")]
        );
        assert_eq!((out.in_flight_len(), out.queued_len()), (2, 2));
        // Full: filling again sends nothing.
        assert_eq!(fill(&mut out), vec![]);
        assert_eq!(out.on_puback(pid(2)), Ok("b"));
        assert_eq!(fill(&mut out), vec![(3, QoS::AtLeastOnce, "c")]);
        assert_eq!(out.in_flight_len(), 2);
        // PUBCOMP and an error PUBREC free a slot too.
        out.enqueue("e", QoS::ExactlyOnce).unwrap();
        assert_eq!(out.on_puback(pid(1)), Ok("a"));
        assert_eq!(fill(&mut out), vec![(4, QoS::AtLeastOnce, "d")]);
        assert_eq!(out.on_puback(pid(3)), Ok("c"));
        assert_eq!(fill(&mut out), vec![(5, QoS::ExactlyOnce, "e")]);
        assert_eq!(
            out.on_pubrec(pid(5), ReasonCode::Success),
            Ok(None),
            "a PUBREC does not free the slot"
        );
        out.enqueue("f", QoS::AtLeastOnce).unwrap();
        out.enqueue("g", QoS::AtLeastOnce).unwrap();
        assert_eq!(fill(&mut out), vec![]);
        assert_eq!(out.on_pubcomp(pid(5)), Ok("e"));
        assert_eq!(fill(&mut out), vec![(6, QoS::AtLeastOnce, "f")]);
    }

    #[test]
    fn queue_limit_counts_messages_that_will_not_fit_in_the_window() {
        let mut out = Outbound::new(2, 3);
        // Two fit in the window's free room, three more may wait.
        for m in ["1", "2", "3", "4", "5"] {
            out.enqueue(m, QoS::AtLeastOnce).unwrap();
        }
        assert_eq!(out.enqueue("6", QoS::AtLeastOnce), Err(QueueFull("6")));
        fill(&mut out);
        assert_eq!((out.in_flight_len(), out.queued_len()), (2, 3));
        assert_eq!(out.enqueue("6", QoS::ExactlyOnce), Err(QueueFull("6")));
        out.on_puback(pid(1)).unwrap();
        // The freed slot makes room for one more, before or after filling.
        out.enqueue("6", QoS::AtLeastOnce).unwrap();
        assert_eq!(out.enqueue("7", QoS::AtLeastOnce), Err(QueueFull("7")));
        fill(&mut out);
        assert_eq!((out.in_flight_len(), out.queued_len()), (2, 3));
    }

    #[test]
    fn queue_limit_zero_still_admits_into_a_free_window() {
        let mut out = Outbound::new(1, 0);
        out.enqueue("a", QoS::AtLeastOnce).unwrap();
        assert_eq!(out.enqueue("b", QoS::AtLeastOnce), Err(QueueFull("b")));
        fill(&mut out);
        assert_eq!(out.enqueue("b", QoS::AtLeastOnce), Err(QueueFull("b")));
    }

    #[test]
    fn packet_ids_wrap_from_65535_to_1_skipping_ids_in_flight() {
        let mut out = Outbound::new(3, 0);
        // Keep ids 1 and 2 in flight; push the counter round with a third slot.
        out.enqueue(0u32, QoS::AtLeastOnce).unwrap();
        out.enqueue(1u32, QoS::AtLeastOnce).unwrap();
        out.fill_window(|_, _, _| {});
        let mut last = 0;
        for n in 2u32..=65534 {
            out.enqueue(n, QoS::AtLeastOnce).unwrap();
            out.fill_window(|id, _, _| last = id.get());
            assert_eq!(out.on_puback(PacketId::new(last).unwrap()), Ok(n));
        }
        assert_eq!(last, 65535, "ids 3..=65535 were used once each");
        // Next in sequence is 1 after the wrap, but 1 and 2 are in flight.
        out.enqueue(70000, QoS::ExactlyOnce).unwrap();
        let mut sent = Vec::new();
        out.fill_window(|id, qos, msg| sent.push((id.get(), qos, *msg)));
        assert_eq!(sent, vec![(3, QoS::ExactlyOnce, 70000)]);
        // Freeing 1 does not pull the counter back: allocation continues in sequence at 4.
        assert_eq!(out.on_puback(pid(1)), Ok(0));
        out.enqueue(70001, QoS::AtLeastOnce).unwrap();
        out.fill_window(|id, _, _| last = id.get());
        assert_eq!(last, 4);
        let ids: Vec<u16> = out.in_flight().map(|(id, ..)| id.get()).collect();
        assert_eq!(ids, vec![2, 3, 4]);
    }

    #[test]
    fn resend_after_reconnect_is_in_send_order_with_phases() {
        let mut out = Outbound::new(10, 10);
        out.enqueue("a", QoS::AtLeastOnce).unwrap();
        out.enqueue("b", QoS::ExactlyOnce).unwrap();
        out.enqueue("c", QoS::ExactlyOnce).unwrap();
        out.enqueue("d", QoS::AtLeastOnce).unwrap();
        fill(&mut out);
        out.on_pubrec(pid(2), ReasonCode::Success).unwrap();
        out.on_puback(pid(4)).unwrap();
        // The connection drops; messages arrive for the offline session.
        out.enqueue("e", QoS::AtLeastOnce).unwrap();
        // Reconnect with the same Receive Maximum.
        out.set_window(10);
        assert_eq!(
            in_flight(&out),
            vec![
                (1, QoS::AtLeastOnce, Phase::AwaitingPubAck, "a"), // PUBLISH DUP=1
                (2, QoS::ExactlyOnce, Phase::AwaitingPubComp, "b"), // PUBREL
                (3, QoS::ExactlyOnce, Phase::AwaitingPubRec, "c"), // PUBLISH DUP=1
            ]
        );
        assert_eq!(fill(&mut out), vec![(5, QoS::AtLeastOnce, "e")]);
        assert_eq!(out.on_pubcomp(pid(2)), Ok("b"));
        assert_eq!(out.on_puback(pid(1)), Ok("a"));
        assert_eq!(out.on_pubrec(pid(3), ReasonCode::Success), Ok(None));
        assert_eq!(out.on_pubcomp(pid(3)), Ok("c"));
        assert_eq!(out.on_puback(pid(5)), Ok("e"));
    }

    #[test]
    fn window_shrink_on_reconnect_parks_the_newest_publishes_with_their_ids() {
        let mut out = Outbound::new(4, 10);
        for (m, qos) in [
            ("a", QoS::AtLeastOnce),
            ("b", QoS::ExactlyOnce),
            ("c", QoS::ExactlyOnce),
            ("d", QoS::AtLeastOnce),
            ("e", QoS::AtLeastOnce),
        ] {
            out.enqueue(m, qos).unwrap();
        }
        fill(&mut out);
        out.on_pubrec(pid(3), ReasonCode::Success).unwrap();
        // Reconnect with Receive Maximum 2: a (PUBACK) and c (PUBCOMP) stay; b and d are parked.
        out.set_window(2);
        assert_eq!(out.window(), 2);
        assert_eq!(
            in_flight(&out),
            vec![
                (1, QoS::AtLeastOnce, Phase::AwaitingPubAck, "a"),
                (3, QoS::ExactlyOnce, Phase::AwaitingPubComp, "c"),
            ]
        );
        assert_eq!((out.in_flight_len(), out.queued_len()), (2, 3));
        // Parked ones were not re-sent on this connection: an ack for one is unknown.
        assert_eq!(
            out.on_pubrec(pid(2), ReasonCode::Success),
            Err(AckError::UnknownPacketId(pid(2)))
        );
        // Nothing goes out while the window is full.
        assert_eq!(fill(&mut out), vec![]);
        // One slot frees: b is re-sent with its original id, as a redelivery.
        assert_eq!(out.on_puback(pid(1)), Ok("a"));
        let mut sent = Vec::new();
        out.fill_window_dup(
            |_| true,
            |id, qos, dup, msg| sent.push((id.get(), qos, dup, *msg)),
        );
        assert_eq!(sent, vec![(2, QoS::ExactlyOnce, true, "b")]);
        // d, parked, goes before e, never sent, which then gets a fresh id.
        assert_eq!(out.on_pubcomp(pid(3)), Ok("c"));
        sent.clear();
        out.fill_window_dup(
            |_| true,
            |id, qos, dup, msg| sent.push((id.get(), qos, dup, *msg)),
        );
        assert_eq!(sent, vec![(4, QoS::AtLeastOnce, true, "d")]);
        assert_eq!(out.on_puback(pid(4)), Ok("d"));
        sent.clear();
        out.fill_window_dup(
            |_| true,
            |id, qos, dup, msg| sent.push((id.get(), qos, dup, *msg)),
        );
        assert_eq!(sent, vec![(5, QoS::AtLeastOnce, false, "e")]);
        assert_eq!(out.on_pubrec(pid(2), ReasonCode::Success), Ok(None));
        assert_eq!(out.on_pubcomp(pid(2)), Ok("b"));
        assert_eq!(out.on_puback(pid(5)), Ok("e"));
        assert_eq!((out.in_flight_len(), out.queued_len()), (0, 0));
    }

    #[test]
    fn window_shrink_keeps_every_message_awaiting_pubcomp() {
        let mut out = Outbound::new(3, 10);
        for m in ["a", "b", "c"] {
            out.enqueue(m, QoS::ExactlyOnce).unwrap();
        }
        out.enqueue("d", QoS::AtLeastOnce).unwrap();
        fill(&mut out);
        for id in 1..=3 {
            out.on_pubrec(pid(id), ReasonCode::Success).unwrap();
        }
        // A PUBREL can't be undone, so all three stay in flight for their PUBREL resend, even
        // though the new window is 1; nothing new is sent until they drain below it.
        out.set_window(1);
        assert_eq!(out.in_flight_len(), 3);
        assert!(out
            .in_flight()
            .all(|(_, _, phase, _)| phase == Phase::AwaitingPubComp));
        assert_eq!(out.on_pubcomp(pid(1)), Ok("a"));
        assert_eq!(out.on_pubcomp(pid(2)), Ok("b"));
        assert_eq!(fill(&mut out), vec![]);
        assert_eq!(out.on_pubcomp(pid(3)), Ok("c"));
        assert_eq!(fill(&mut out), vec![(4, QoS::AtLeastOnce, "d")]);
    }

    #[test]
    fn window_growth_on_reconnect_sends_more() {
        let mut out = Outbound::new(1, 10);
        for m in ["a", "b", "c"] {
            out.enqueue(m, QoS::AtLeastOnce).unwrap();
        }
        fill(&mut out);
        out.set_window(3);
        assert_eq!(out.window(), 3);
        assert_eq!(
            fill(&mut out),
            vec![(2, QoS::AtLeastOnce, "b"), (3, QoS::AtLeastOnce, "c")]
        );
    }

    #[test]
    fn zero_window_is_taken_as_one() {
        let mut out = Outbound::new(0, 10);
        assert_eq!(out.window(), 1);
        out.enqueue("a", QoS::AtLeastOnce).unwrap();
        assert_eq!(fill(&mut out).len(), 1);
        out.set_window(0);
        assert_eq!(out.window(), 1);
        assert_eq!(out.in_flight_len(), 1);
    }

    #[test]
    fn qos0_is_delivered_at_qos1() {
        let mut out = Outbound::new(1, 1);
        out.enqueue("a", QoS::AtMostOnce).unwrap();
        assert_eq!(fill(&mut out), vec![(1, QoS::AtLeastOnce, "a")]);
    }

    #[test]
    fn filtered_fill_drops_rejected_messages_without_using_slots_or_ids() {
        let mut out = Outbound::new(2, 10);
        for m in ["keep1", "old1", "old2", "keep2", "keep3"] {
            out.enqueue(m, QoS::AtLeastOnce).unwrap();
        }
        let mut sent = Vec::new();
        let dropped = out.fill_window_filtered(
            |m| m.starts_with("keep"),
            |id, _, m| sent.push((id.get(), *m)),
        );
        assert_eq!(dropped, 2);
        assert_eq!(sent, vec![(1, "keep1"), (2, "keep2")]);
        assert_eq!(out.queued_len(), 1);
    }

    #[test]
    fn retain_queued_drops_only_queued_messages() {
        let mut out = Outbound::new(1, 10);
        for m in ["x1", "a", "x2", "b"] {
            out.enqueue(m, QoS::AtLeastOnce).unwrap();
        }
        fill(&mut out); // "x1" goes in flight and is out of reach of retain_queued.
        assert_eq!(out.retain_queued(|m| !m.starts_with('x')), 1);
        assert_eq!(out.queued_len(), 2);
        assert_eq!(in_flight(&out).len(), 1);
        assert_eq!(out.on_puback(pid(1)), Ok("x1"));
        assert_eq!(fill(&mut out), vec![(2, QoS::AtLeastOnce, "a")]);
    }

    #[test]
    fn retain_queued_and_filters_spare_parked_messages() {
        let mut out = Outbound::new(2, 10);
        out.enqueue("a", QoS::AtLeastOnce).unwrap();
        out.enqueue("b", QoS::ExactlyOnce).unwrap();
        fill(&mut out);
        out.set_window(1);
        assert_eq!(out.retain_queued(|_| false), 0);
        assert_eq!(out.queued_len(), 1);
        out.on_puback(pid(1)).unwrap();
        let mut sent = Vec::new();
        let dropped = out.fill_window_filtered(|_| false, |id, _, m| sent.push((id.get(), *m)));
        assert_eq!((dropped, sent), (0, vec![(2, "b")]));
    }

    #[test]
    fn clear_forgets_everything() {
        let mut out = Outbound::new(1, 10);
        out.enqueue("a", QoS::AtLeastOnce).unwrap();
        out.enqueue("b", QoS::AtLeastOnce).unwrap();
        fill(&mut out);
        out.clear();
        assert_eq!((out.in_flight_len(), out.queued_len()), (0, 0));
        assert_eq!(in_flight(&out), vec![]);
        assert_eq!(
            out.on_puback(pid(1)),
            Err(AckError::UnknownPacketId(pid(1)))
        );
    }
}
