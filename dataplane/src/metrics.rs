//! Per-shard counters: plain cells, touched only by their shard. A timer task of each shard
//! copies them into that shard's `Snapshot` (atomics written by that shard alone) a few times
//! a second; the admin thread reads the snapshots and renders Prometheus text. Nothing on
//! the publish path touches an atomic.

use std::cell::Cell;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! metrics {
    (
        counters { $($counter:ident: $chelp:literal,)* }
        gauges { $($gauge:ident: $ghelp:literal,)* }
    ) => {
        /// Counters, owned by one shard.
        #[derive(Default)]
        pub struct Metrics {
            $(pub $counter: Cell<u64>,)*
        }

        /// Gauges, computed by the shard when it publishes a snapshot.
        #[derive(Default, Debug, Clone, Copy)]
        pub struct Gauges {
            $(pub $gauge: u64,)*
        }

        /// What the admin thread sees of one shard.
        #[derive(Default)]
        pub struct Snapshot {
            $($counter: AtomicU64,)*
            $($gauge: AtomicU64,)*
        }

        impl Snapshot {
            pub fn publish(&self, metrics: &Metrics, gauges: Gauges) {
                $(self.$counter.store(metrics.$counter.get(), Ordering::Relaxed);)*
                $(self.$gauge.store(gauges.$gauge, Ordering::Relaxed);)*
            }

            /// (name, help, kind, value) of every metric.
            fn samples(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
                vec![
                    $((stringify!($counter), $chelp, "counter", self.$counter.load(Ordering::Relaxed)),)*
                    $((stringify!($gauge), $ghelp, "gauge", self.$gauge.load(Ordering::Relaxed)),)*
                ]
            }
        }
    };
}

metrics! {
    counters {
        connections_total: "Connections that completed CONNECT.",
        messages_in_total: "PUBLISH packets received from clients.",
        messages_out_total: "PUBLISH packets sent to clients.",
        bytes_in_total: "Bytes read from client sockets.",
        bytes_out_total: "Bytes written to client sockets.",
        writes_total: "Socket write calls (messages_out/writes = deliveries per write).",
        dropped_qos0_total: "QoS 0 deliveries dropped because the connection was congested.",
        dropped_queue_full_total: "QoS 1/2 deliveries dropped because the session queue was full.",
        dropped_expired_total: "Messages dropped because their message expiry passed.",
        pubacks_held_total: "QoS 1 PUBACKs held for a backlogged subscriber (publisher flow control).",
        pubacks_held_expired_total: "Held PUBACKs sent when limits.max_puback_delay_ms passed, not because the subscriber caught up.",
        mesh_batches_in_total: "Batches received from other shards.",
        mesh_messages_in_total: "Messages received from other shards (per batch: deliveries per wake-up).",
        mesh_batches_out_total: "Batches sent to other shards.",
        slow_consumer_disconnects_total: "Connections closed for not reading.",
        connections_handed_over_total: "Connections accepted here and served by a shard with fewer (placement).",
        connections_to_thing_owner_total: "Connections handed after CONNECT to the shard owning the thing named like the client.",
        shared_rehomed_total: "Shared-subscription messages an ended session still owed, given to another member of the group.",
        shared_forwarded_total: "Shared-subscription messages sent on to another shard because the member this shard had left.",
        connections_parked_total: "Times an idle connection parked.",
        connections_unparked_total: "Times a parked connection came back (traffic, something to send, or a kill).",
        shadow_requests_total: "Shadow requests (get, update, delete) applied by this shard as the thing's owner.",
        log_commits_total: "Group commits of this shard's logs (each an fsync when storage.durable).",
        log_committed_records_total: "Log records those commits covered (per commit: the group size).",
    }
    gauges {
        connections: "Live connections.",
        parked_connections: "Live connections parked for being idle (no tasks, socket in epoll).",
        sessions: "Sessions held (online and offline).",
        subscriptions: "Subscriptions in the shard's tries.",
        retained_messages: "Retained messages (every shard holds a replica).",
        backlogged_sessions: "Sessions holding publishers' PUBACKs (flow control).",
        outbox_depth: "Messages waiting to be sent to other shards.",
        shadows: "Shadows (classic and named, deleted ones included) this shard owns.",
    }
}

pub fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get().wrapping_add(by));
}

/// Prometheus text exposition of every shard's snapshot, labelled by shard.
pub fn render(shards: &[std::sync::Arc<Snapshot>]) -> String {
    let mut out = String::new();
    let per_shard: Vec<_> = shards.iter().map(|s| s.samples()).collect();
    let Some(first) = per_shard.first() else {
        return out;
    };
    for (i, (name, help, kind, _)) in first.iter().enumerate() {
        let _ = writeln!(out, "# HELP iotcore_{name} {help}");
        let _ = writeln!(out, "# TYPE iotcore_{name} {kind}");
        for (shard, samples) in per_shard.iter().enumerate() {
            if let Some((_, _, _, value)) = samples.get(i) {
                let _ = writeln!(out, "iotcore_{name}{{shard=\"{shard}\"}} {value}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_labels_each_shard() {
        let a = std::sync::Arc::new(Snapshot::default());
        let b = std::sync::Arc::new(Snapshot::default());
        let m = Metrics::default();
        bump(&m.messages_in_total, 5);
        b.publish(
            &m,
            Gauges {
                connections: 2,
                ..Default::default()
            },
        );
        let text = render(&[a, b]);
        assert!(text.contains("# TYPE iotcore_messages_in_total counter"));
        assert!(text.contains("iotcore_messages_in_total{shard=\"0\"} 0"));
        assert!(text.contains("iotcore_messages_in_total{shard=\"1\"} 5"));
        assert!(text.contains("iotcore_connections{shard=\"1\"} 2"));
    }
}
