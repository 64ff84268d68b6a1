//! The client→server QoS 2 state machine and the inbound Receive Maximum quota.
#![allow(clippy::unwrap_used)]

// Nested so that `cargo test session` selects these tests by name.
mod session_inbound {
    use iotcore_core::mqtt::PacketId;
    use iotcore_core::session::{Inbound, InboundQos2, ReceiveMaximumExceeded};

    fn pid(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    #[test]
    fn new_publish_then_pubrel_completes() {
        let mut inb = Inbound::new(10);
        assert_eq!(inb.on_qos2_publish(pid(5)), Ok(InboundQos2::New));
        assert_eq!(inb.pending_len(), 1);
        assert!(inb.on_pubrel(pid(5)));
        assert_eq!(inb.pending_len(), 0);
        // After PUBCOMP the id is free: the same id is a new message ([MQTT-4.3.3-12]).
        assert_eq!(inb.on_qos2_publish(pid(5)), Ok(InboundQos2::New));
    }

    #[test]
    fn resend_before_pubrel_is_a_duplicate() {
        let mut inb = Inbound::new(10);
        assert_eq!(inb.on_qos2_publish(pid(9)), Ok(InboundQos2::New));
        assert_eq!(inb.on_qos2_publish(pid(9)), Ok(InboundQos2::Duplicate));
        assert_eq!(inb.on_qos2_publish(pid(9)), Ok(InboundQos2::Duplicate));
        assert_eq!(inb.pending_len(), 1);
    }

    #[test]
    fn pubrel_for_an_unknown_id_is_false() {
        let mut inb = Inbound::new(10);
        assert!(!inb.on_pubrel(pid(1)));
        inb.on_qos2_publish(pid(1)).unwrap();
        assert!(inb.on_pubrel(pid(1)));
        // A PUBREL resent after our PUBCOMP was lost.
        assert!(!inb.on_pubrel(pid(1)));
    }

    #[test]
    fn receive_maximum_is_enforced_but_duplicates_pass() {
        let mut inb = Inbound::new(2);
        assert_eq!(inb.on_qos2_publish(pid(1)), Ok(InboundQos2::New));
        assert_eq!(inb.on_qos2_publish(pid(2)), Ok(InboundQos2::New));
        assert_eq!(inb.on_qos2_publish(pid(3)), Err(ReceiveMaximumExceeded));
        assert_eq!(inb.pending_len(), 2);
        assert_eq!(inb.on_qos2_publish(pid(2)), Ok(InboundQos2::Duplicate));
        assert!(inb.on_pubrel(pid(1)));
        assert_eq!(inb.on_qos2_publish(pid(3)), Ok(InboundQos2::New));
        let msg = ReceiveMaximumExceeded.to_string();
        assert!(msg.contains("[MQTT-3.3.4-7]"), "{msg}");
        assert!(msg.contains("receive maximum exceeded"), "{msg}");
    }

    #[test]
    fn zero_receive_maximum_is_taken_as_one() {
        let mut inb = Inbound::new(0);
        assert_eq!(inb.on_qos2_publish(pid(1)), Ok(InboundQos2::New));
        assert_eq!(inb.on_qos2_publish(pid(2)), Err(ReceiveMaximumExceeded));
    }

    #[test]
    fn ids_are_tracked_independently_of_arrival_order() {
        let mut inb = Inbound::new(u16::MAX);
        for id in [300, 7, 65535, 1, 42] {
            assert_eq!(inb.on_qos2_publish(pid(id)), Ok(InboundQos2::New));
        }
        for id in [42, 65535, 1, 300, 7] {
            assert_eq!(inb.on_qos2_publish(pid(id)), Ok(InboundQos2::Duplicate));
        }
        for id in [1, 300, 42] {
            assert!(inb.on_pubrel(pid(id)));
        }
        assert_eq!(inb.pending_len(), 2);
        assert_eq!(inb.on_qos2_publish(pid(7)), Ok(InboundQos2::Duplicate));
        assert_eq!(inb.on_qos2_publish(pid(42)), Ok(InboundQos2::New));
    }

    #[test]
    fn clear_forgets_pending_ids() {
        let mut inb = Inbound::new(10);
        inb.on_qos2_publish(pid(1)).unwrap();
        inb.on_qos2_publish(pid(2)).unwrap();
        inb.clear();
        assert_eq!(inb.pending_len(), 0);
        assert!(!inb.on_pubrel(pid(1)));
        assert_eq!(inb.on_qos2_publish(pid(2)), Ok(InboundQos2::New));
    }
}
