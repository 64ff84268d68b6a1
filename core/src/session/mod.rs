//! Per-client QoS 1 and QoS 2 state machines.
