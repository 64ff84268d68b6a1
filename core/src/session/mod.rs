//! Per-client QoS 1 and QoS 2 state machines.
//!
//! Two independent halves, both plain data with no I/O: the broker feeds them the packets it
//! receives and sends what they tell it to.
//!
//! - [`Outbound`]: server→client deliveries. Messages wait in a bounded FIFO queue until the
//!   in-flight window (the client's Receive Maximum, [MQTT-3.3.4-9]) has room, are then sent with
//!   a fresh packet identifier, and stay in flight until acknowledged.
//! - [`Inbound`]: client→server QoS 2 publishes awaiting PUBREL, which stops a resent PUBLISH
//!   from being routed twice, and the server's own Receive Maximum quota ([MQTT-3.3.4-7]).
//!
//! ## Server → client (`Outbound`)
//!
//! ```text
//!  enqueue ──► queued ──fill_window──► sent with packet id
//!                 ▲                        │
//!                 │ set_window shrinks     │
//!              parked ◄────────────────────┤ (AwaitingPubAck / AwaitingPubRec only)
//!   (keeps its id; fill_window re-sends    │
//!    it first, DUP=1)                      │
//!                                          │
//!  QoS 1:  AwaitingPubAck ──PUBACK──► done (on_puback returns the message)
//!
//!  QoS 2:  AwaitingPubRec ──PUBREC < 0x80──► AwaitingPubComp ──PUBCOMP──► done
//!               │          (broker sends PUBREL)             (on_pubcomp returns it)
//!               └──PUBREC >= 0x80──► done (on_pubrec returns Some(message), no PUBREL)
//!
//!  reconnect: set_window(new Receive Maximum), then resend in_flight() in send order:
//!             AwaitingPubAck / AwaitingPubRec ► PUBLISH DUP=1, AwaitingPubComp ► PUBREL,
//!             then fill_window.
//! ```
//!
//! Any other acknowledgement (unknown id, PUBCOMP before PUBREC, PUBACK for QoS 2, ...) is an
//! [`AckError`] and changes nothing.
//!
//! ## Client → server (`Inbound`, QoS 2 only; QoS 1 is just PUBLISH ► route ► PUBACK)
//!
//! ```text
//!  PUBLISH id ──on_qos2_publish──► New: route, PUBREC ──► awaiting PUBREL ──PUBREL──► PUBCOMP
//!                   │                                     │  (on_pubrel = true)
//!                   │  PUBLISH id again ◄─────────────────┘
//!                   ├─► Duplicate: PUBREC again, do not route
//!                   └─► ReceiveMaximumExceeded: DISCONNECT 0x93
//!  PUBREL for an id not awaiting ──► on_pubrel = false: PUBCOMP 0x92 (v5)
//! ```

mod inbound;
mod outbound;

pub use inbound::{Inbound, InboundQos2, ReceiveMaximumExceeded};
pub use outbound::{AckError, Outbound, Phase, QueueFull};
