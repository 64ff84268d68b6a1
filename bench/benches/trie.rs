//! Subscription matching: `SubscriptionTrie::for_each_match` against a naive linear scan with
//! `filter_matches`, over 10, 1,000 and 100,000 filters (a mix of exact filters, `+` and `#`
//! wildcards, as IoT fleets subscribe), and the cost of insert + remove.
//! `cargo bench -p iotcore-bench --bench trie`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use iotcore_core::topic::{filter_matches, SubscriptionTrie, TopicFilter};

/// `n` filters over n/4 devices: per device its exact telemetry topic, a `+` filter on
/// the metric, a `#` under the device, and a fleet-wide `+/+/status`-like filter.
fn filters(n: usize) -> Vec<TopicFilter> {
    let devices = (n / 4).max(1);
    let mut v = Vec::with_capacity(n);
    let mut i = 0;
    while v.len() < n {
        let d = i % devices;
        let f = match (i / devices) % 4 {
            0 => format!("devices/d{d}/telemetry/temperature"),
            1 => format!("devices/d{d}/telemetry/+"),
            2 => format!("devices/d{d}/#"),
            _ => format!("fleet/f{}/+/status", d % 64),
        };
        v.push(TopicFilter::try_from(f).expect("valid filter"));
        i += 1;
    }
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("trie/match");
    for n in [10usize, 1_000, 100_000] {
        if n >= 100_000 {
            g.sample_size(10);
            g.measurement_time(Duration::from_secs(3));
        } else {
            g.sample_size(50);
            g.measurement_time(Duration::from_secs(2));
        }
        let fs = filters(n);
        let mut trie: SubscriptionTrie<u32, u8> = SubscriptionTrie::new();
        for (k, f) in fs.iter().enumerate() {
            trie.insert(f, k as u32, 0);
        }
        let naive: Vec<(String, u32)> = fs
            .iter()
            .enumerate()
            .map(|(k, f)| (f.as_str().to_string(), k as u32))
            .collect();
        // A topic of a device in the middle: matched by three of its filters.
        let topic = format!("devices/d{}/telemetry/temperature", (n / 4).max(1) / 2);
        let mut check = (0usize, 0usize);
        trie.for_each_match(&topic, |_, _| check.0 += 1);
        check.1 = naive
            .iter()
            .filter(|(f, _)| filter_matches(f, &topic))
            .count();
        assert_eq!(check.0, check.1, "trie and naive scan disagree");

        g.bench_with_input(BenchmarkId::new("trie", n), &topic, |b, t| {
            b.iter(|| {
                let mut hits = 0u32;
                trie.for_each_match(black_box(t), |k, _| hits = hits.wrapping_add(*k));
                black_box(hits)
            })
        });
        g.bench_with_input(BenchmarkId::new("naive", n), &topic, |b, t| {
            b.iter(|| {
                let mut hits = 0u32;
                for (f, k) in &naive {
                    if filter_matches(f, black_box(t)) {
                        hits = hits.wrapping_add(*k);
                    }
                }
                black_box(hits)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("trie/insert_remove");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(2));
    for n in [10usize, 1_000, 100_000] {
        let fs = filters(n);
        let mut trie: SubscriptionTrie<u32, u8> = SubscriptionTrie::new();
        for (k, f) in fs.iter().enumerate() {
            trie.insert(f, k as u32, 0);
        }
        // A new filter (nodes created, then pruned) ...
        let fresh = TopicFilter::try_from("devices/new-device/telemetry/+").expect("valid");
        g.bench_function(BenchmarkId::new("new_filter", n), |b| {
            b.iter(|| {
                trie.insert(black_box(&fresh), u32::MAX, 1);
                black_box(trie.remove(&fresh, &u32::MAX))
            })
        });
        // ... and one more subscriber on an existing filter (no allocation on the path).
        let existing = fs[fs.len() / 2].clone();
        g.bench_function(BenchmarkId::new("existing_filter", n), |b| {
            b.iter(|| {
                trie.insert(black_box(&existing), u32::MAX, 1);
                black_box(trie.remove(&existing, &u32::MAX))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
