//! Which shard serves an accepted connection.
//!
//! Every shard listens on the same port (SO_REUSEPORT) and the kernel picks a listener by a
//! hash of the connection's addresses, which spreads connections unevenly: with 100 devices
//! on 2 shards, 57/43 was common, and the fuller shard's core then set the latency of the
//! whole run (bench/results, session 3). A shard that holds more than `SLACK` connections
//! above the least loaded one hands a new connection to that shard instead of serving it.
//!
//! The slack keeps small setups as the kernel placed them: two or three connections are
//! never moved (a publisher and its subscriber on one shard need no hop between shards).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ids::ShardId;

/// How far above the least loaded shard a shard may go before it hands connections over:
/// this many, or a 32nd of the least loaded shard's connections if more. The relative part:
/// with 10,000 clients connecting, a slack of 2 handed 30% of them over (the kernel's hash
/// is a random walk), each a cross-shard hop before its CONNACK; with this, 3%. (Connects/s
/// did not change; the broker's CPU per connect fell a little.) 3% of imbalance costs
/// nothing at that scale.
pub const SLACK: usize = 2;

/// How far above the least loaded shard a thing's owner may go and still take its device's
/// connection: this many, or a quarter of the least loaded shard's connections if more.
/// Larger than `SLACK`: a connection on its thing's shard saves two hops between shards per
/// shadow request, thing names hash evenly, and while clients connect the counts include
/// handshakes in flight on both sides of a handover. With 8 and an 8th, a third of 100
/// devices connecting 64 at a time were refused their owner now and then.
pub const AFFINITY_SLACK: usize = 16;

/// Live connections per shard, shared by all shards.
pub struct Placement {
    live: Box<[AtomicUsize]>,
}

impl Placement {
    pub fn new(shards: usize) -> Placement {
        Placement {
            live: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// The shard to serve a connection `here` accepted, counted for it already (the
    /// count is taken before the hand-over, so a burst of accepts does not all go to the
    /// same shard before it has counted them).
    pub fn place(&self, here: ShardId) -> ShardId {
        let least = self
            .live
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| n.load(Ordering::Relaxed))
            .map_or(here.0, |(i, _)| i);
        let load = |i: usize| self.live.get(i).map_or(0, |n| n.load(Ordering::Relaxed));
        let slack = SLACK.max(load(least) / 32);
        let chosen = if load(here.0) > load(least) + slack {
            least
        } else {
            here.0
        };
        if let Some(n) = self.live.get(chosen) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        ShardId(chosen)
    }

    /// Whether `owner` may take a connection for the thing it owns (client id = thing name,
    /// see `connection::affinity`); counted for it if so. Refused when `owner` holds more
    /// than `AFFINITY_SLACK` (or a quarter) above the least loaded shard: many clients whose
    /// names hash to one shard must not pile onto it.
    pub fn claim_for_owner(&self, owner: ShardId) -> bool {
        let least = self
            .live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let Some(count) = self.live.get(owner.0) else {
            return false;
        };
        let slack = AFFINITY_SLACK.max(least / 4);
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n <= least + slack).then_some(n + 1)
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
        for _ in 0..3200 {
            p.place(ShardId(0));
            p.place(ShardId(1));
        }
        assert_eq!(p.loads(), vec![3200, 3200]);
        // 3,200 each: shard 1 takes connections until it is more than 100 above shard 0.
        for _ in 0..101 {
            assert_eq!(p.place(ShardId(1)), ShardId(1));
        }
        assert_eq!(p.place(ShardId(1)), ShardId(0));
    }

    #[test]
    fn a_thing_owner_takes_connections_up_to_its_slack() {
        let p = Placement::new(2);
        for _ in 0..AFFINITY_SLACK {
            assert!(p.claim_for_owner(ShardId(1)));
        }
        assert!(p.claim_for_owner(ShardId(1)), "at the slack: still taken");
        assert!(!p.claim_for_owner(ShardId(1)), "past it: refused");
        assert_eq!(p.loads(), vec![0, AFFINITY_SLACK + 1]);
        assert!(p.claim_for_owner(ShardId(0)));
        assert!(!p.claim_for_owner(ShardId(7)), "no such shard");
        // Relative at scale: 800 on the least loaded allows 200 above it (1,000 taken
        // while at most 1,000, so 1,001 in all).
        let p = Placement::new(2);
        p.live[0].store(800, Ordering::Relaxed);
        for _ in 0..1001 {
            assert!(p.claim_for_owner(ShardId(1)));
        }
        assert!(!p.claim_for_owner(ShardId(1)));
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
