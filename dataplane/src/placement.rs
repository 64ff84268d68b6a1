//! Which shard serves an accepted connection.
//!
//! Every shard listens on the same port (SO_REUSEPORT) and the kernel picks a listener by a
//! hash of the connection's addresses, which spreads connections unevenly: with 100 devices
//! on 2 shards, 57/43 was common, and the fuller shard's core then set the latency of the
//! whole run (bench/results, session 3). A shard that holds more than `SLACK` connections
//! above the least loaded one hands a new connection to that shard instead of serving it.
//!
//! While there are fewer connections than shards, a new one joins the fullest shard instead:
//! a publisher and its subscriber on one shard need no hop between shards, and the kernel's
//! hash put them on two shards about half the time. Past that, the slack keeps small setups
//! as they are: a handful of connections is never moved.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::ids::ShardId;

/// How far above the least loaded shard a shard may go before it hands connections over:
/// this many, or a 32nd of the least loaded shard's connections if more. The relative part:
/// with 10,000 clients connecting, a slack of 2 handed 30% of them over (the kernel's hash
/// is a random walk), each a cross-shard hop before its CONNACK; with this, 3%. (Connects/s
/// did not change; the broker's CPU per connect fell a little.) 3% of imbalance costs
/// nothing at that scale.
pub const SLACK: usize = 2;

/// Bits in the set of things that have shadows: 2^20 (128 KiB), so a million things fill
/// about 60% of it and as many other names look like things with shadows.
const SHADOWED_BITS: usize = 1 << 20;

/// Live connections per shard, and which things have shadows; shared by all shards.
pub struct Placement {
    live: Box<[AtomicUsize]>,
    /// A bit per hash of a thing name, set once the thing has a shadow (by its owner, when
    /// it stores or recovers one) and never cleared: a deleted shadow's device still gets
    /// thing affinity, which costs nothing. A set, not a map of names: a lookup at CONNECT
    /// must not take a lock or hold a million strings.
    shadowed: Box<[AtomicU64]>,
}

impl Placement {
    pub fn new(shards: usize) -> Placement {
        Placement {
            live: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            shadowed: (0..SHADOWED_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The word and bit of `thing` in `shadowed`. SipHash with fixed keys, not the owner's
    /// CRC-32: the owner's hash is the same for every name of one shard's things.
    fn shadowed_bit(&self, thing: &str) -> Option<(&AtomicU64, u64)> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        thing.hash(&mut h);
        let bit = (h.finish() as usize) % SHADOWED_BITS;
        Some((self.shadowed.get(bit / 64)?, 1u64 << (bit % 64)))
    }

    /// `thing` has a shadow now.
    pub fn mark_shadowed(&self, thing: &str) {
        if let Some((word, mask)) = self.shadowed_bit(thing) {
            // Almost always set already (every update of a thing calls this): a load first
            // keeps the cache line shared between the shards.
            if word.load(Ordering::Relaxed) & mask == 0 {
                word.fetch_or(mask, Ordering::Relaxed);
            }
        }
    }

    /// Whether `thing` has (or had) a shadow; a few other names answer yes too.
    pub fn is_shadowed(&self, thing: &str) -> bool {
        self.shadowed_bit(thing)
            .is_some_and(|(word, mask)| word.load(Ordering::Relaxed) & mask != 0)
    }

    /// The shard to serve a connection `here` accepted, counted for it already (the
    /// count is taken before the hand-over, so a burst of accepts does not all go to the
    /// same shard before it has counted them).
    pub fn place(&self, here: ShardId) -> ShardId {
        let shards = self.live.len();
        let load = |i: usize| self.live.get(i).map_or(0, |n| n.load(Ordering::Relaxed));
        let total: usize = (0..shards).map(load).sum();
        let chosen = if total > 0 && total < shards {
            // Fewer connections than shards: the new one joins the fullest shard. A publisher
            // and its one subscriber on two shards pay a wake-up of the other core per
            // message (p99 at 10k msgs/s 136–223 µs, mostly 86–100 on one shard; session 8).
            (0..shards)
                .max_by_key(|&i| (load(i), i == here.0))
                .unwrap_or(here.0)
        } else {
            let least = (0..shards).min_by_key(|&i| load(i)).unwrap_or(here.0);
            let slack = SLACK.max(load(least) / 32);
            if load(here.0) > load(least) + slack {
                least
            } else {
                here.0
            }
        };
        if let Some(n) = self.live.get(chosen) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        ShardId(chosen)
    }

    /// Whether `owner` may take from `from` a connection for the thing it owns (client id =
    /// thing name, see `connection::affinity`); counted for `owner` if so (and still for
    /// `from` until that shard lets it go).
    ///
    /// Taken if, once moved, the owner stays within `place`'s slack of the least loaded
    /// shard, or within half above its fair share of all connections. The slack alone
    /// refused up to half of 100 devices connecting 64 at a time (the counts swing while
    /// they connect), a fifth over the share a quarter of them, a third still 2–10% in
    /// some runs (15–104k mesh messages per run at 50k updates/s; with half, ~600). Only
    /// devices whose things have shadows move, and their owner does their shadow work
    /// anyway; names that collide get at most three quarters of 2 shards.
    pub fn claim_for_owner(&self, from: ShardId, owner: ShardId) -> bool {
        let mut loads: Vec<usize> = self
            .live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        if let Some(n) = loads.get_mut(from.0) {
            *n = n.saturating_sub(1);
        }
        let total: usize = loads.iter().sum::<usize>() + 1;
        let Some(count) = self.live.get(owner.0) else {
            return false;
        };
        let shards = loads.len();
        // `n` is the owner's count before the move, `n + 1` after it.
        let mut fits = |n: usize| {
            if let Some(l) = loads.get_mut(owner.0) {
                *l = n + 1;
            }
            let least = loads.iter().copied().min().unwrap_or(0);
            n < least + SLACK.max(least / 32) || (n + 1) * shards * 2 <= total * 3
        };
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                fits(n).then_some(n + 1)
            })
            .is_ok()
    }

    /// A connection of `shard` ended.
    pub fn leave(&self, shard: ShardId) {
        if let Some(n) = self.live.get(shard.0) {
            // Never below zero, even if a caller miscounts.
            let _ = n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    #[cfg(test)]
    fn loads(&self) -> Vec<usize> {
        self.live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_connections_stay_where_the_kernel_put_them() {
        let p = Placement::new(2);
        assert_eq!(p.place(ShardId(0)), ShardId(0));
        assert_eq!(p.place(ShardId(0)), ShardId(0));
        assert_eq!(p.place(ShardId(0)), ShardId(0));
        assert_eq!(p.loads(), vec![3, 0]);
    }

    #[test]
    fn fewer_connections_than_shards_share_one() {
        let p = Placement::new(3);
        assert_eq!(p.place(ShardId(2)), ShardId(2));
        assert_eq!(p.place(ShardId(0)), ShardId(2));
        assert_eq!(p.place(ShardId(1)), ShardId(2));
        // Three connections on three shards: placed by the slack from here on.
        assert_eq!(p.place(ShardId(1)), ShardId(1));
        assert_eq!(p.loads(), vec![0, 1, 3]);
        p.leave(ShardId(2));
        p.leave(ShardId(2));
        p.leave(ShardId(1));
        // One left, on shard 2: the next one joins it.
        assert_eq!(p.place(ShardId(0)), ShardId(2));
    }

    #[test]
    fn a_shard_past_the_slack_hands_over_to_the_least_loaded() {
        let p = Placement::new(3);
        for _ in 0..100 {
            p.place(ShardId(1));
        }
        let loads = p.loads();
        let max = loads.iter().copied().max().unwrap_or(0);
        let min = loads.iter().copied().min().unwrap_or(0);
        assert!(max - min <= SLACK + 1, "{loads:?}");
        assert_eq!(loads.iter().sum::<usize>(), 100);
    }

    #[test]
    fn many_connections_get_a_relative_slack() {
        let p = Placement::new(2);
        p.live[0].store(3200, Ordering::Relaxed);
        p.live[1].store(3200, Ordering::Relaxed);
        // 3,200 each: shard 1 takes connections until it is more than 100 above shard 0.
        for _ in 0..101 {
            assert_eq!(p.place(ShardId(1)), ShardId(1));
        }
        assert_eq!(p.place(ShardId(1)), ShardId(0));
    }

    #[test]
    fn a_thing_owner_takes_connections_within_the_slack() {
        // New connections accepted by shard 0, all named for shard 1.
        let p = Placement::new(2);
        let mut moved = 0;
        loop {
            p.live[0].fetch_add(1, Ordering::Relaxed); // accepted
            if !p.claim_for_owner(ShardId(0), ShardId(1)) {
                break;
            }
            p.leave(ShardId(0));
            moved += 1;
        }
        // 1 and 2 against 0 fit the slack; 3 against 0 does not, nor is it within half over
        // a fair share of 3.
        assert_eq!(moved, 2, "{:?}", p.loads());
        assert!(!p.claim_for_owner(ShardId(0), ShardId(7)), "no such shard");
    }

    #[test]
    fn a_few_clients_whose_names_collide_do_not_crowd_one_shard() {
        // 8 devices accepted 4 and 4, all named for shard 1: at most 6 of 8 there.
        let p = Placement::new(2);
        p.live[0].store(4, Ordering::Relaxed);
        p.live[1].store(4, Ordering::Relaxed);
        let mut moved = 0;
        while p.claim_for_owner(ShardId(0), ShardId(1)) {
            p.leave(ShardId(0));
            moved += 1;
        }
        assert_eq!(p.loads(), vec![2, 6], "moved {moved}");
    }

    #[test]
    fn an_owner_may_grow_to_half_over_its_fair_share() {
        // 100 connections accepted by shard 0, all named for shard 1: shard 1 may take them
        // until it holds 75 of the 100 (half over its share of 50), not 76.
        let p = Placement::new(2);
        p.live[0].store(100, Ordering::Relaxed);
        while p.claim_for_owner(ShardId(0), ShardId(1)) {
            p.leave(ShardId(0));
        }
        assert_eq!(p.loads(), vec![25, 75]);
    }

    #[test]
    fn things_with_shadows_are_remembered() {
        let p = Placement::new(2);
        assert!(!p.is_shadowed("sensor-1"));
        p.mark_shadowed("sensor-1");
        p.mark_shadowed("sensor-1");
        assert!(p.is_shadowed("sensor-1"));
        let others = (0..1000)
            .filter(|i| p.is_shadowed(&format!("sensor-{i}-x")))
            .count();
        assert_eq!(
            others, 0,
            "one bit in 2^20 set: no false positives among 1,000"
        );
    }

    #[test]
    fn leaving_frees_room_and_never_goes_below_zero() {
        let p = Placement::new(2);
        for _ in 0..4 {
            p.place(ShardId(0));
        }
        assert_eq!(p.loads(), vec![3, 1]);
        p.leave(ShardId(1));
        p.leave(ShardId(1));
        assert_eq!(p.loads(), vec![3, 0]);
        // Shard 1 is empty again: shard 0 (3 > 0 + 2) hands the next one over.
        assert_eq!(p.place(ShardId(0)), ShardId(1));
    }
}
