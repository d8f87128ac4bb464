//! One process's part of a run measured by several at once (`--shard I/N`).
//! `--concurrency`, `--requests` and `--rate` stay the totals of the whole
//! run: shard I takes its share of the agents and of the requests (the
//! first `total mod N` shards one more), and of an open loop's arrivals
//! exactly those the shard is given out of the one requested process, so
//! that the union of the shards is that process, arrival for arrival:
//! constant rates are interleaved (arrival k goes to shard k mod N), every
//! other process (Poisson, gamma, stages of them, traces) is thinned
//! independently (arrival k goes to the shard a seeded uniform draw names),
//! which leaves each shard a Poisson process of rate R/N when the whole is
//! Poisson at R.

use crate::schedule::Arrival;
use crate::text::mix;

/// Shard `index` (from 0) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `I/N` with 0 ≤ I < N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("--shard '{s}': write I/N, e.g. 0/4"))?;
        let index: u32 = i.trim().parse().map_err(|_| format!("--shard '{s}': '{i}' is not a shard number"))?;
        let count: u32 = n.trim().parse().map_err(|_| format!("--shard '{s}': '{n}' is not a number of shards"))?;
        if count == 0 {
            return Err(format!("--shard '{s}': there must be at least one shard"));
        }
        if index >= count {
            return Err(format!("--shard '{s}': shards are counted from 0, so the last of {count} is {}", count - 1));
        }
        Ok(Shard { index, count })
    }

    /// This shard's part of `total` (agents, requests, warm-up requests).
    pub fn share(&self, total: u64) -> u64 {
        let n = u64::from(self.count);
        total / n + u64::from(u64::from(self.index) < total % n)
    }

    /// Whether arrival `k` of the whole process is this shard's.
    pub fn takes(&self, k: u64, process: Option<Arrival>, seed: u64) -> bool {
        let n = u64::from(self.count);
        let owner = match process {
            Some(Arrival::Constant) => k % n,
            _ => mix(mix(seed, 0x0053_4841_5244), k) % n,
        };
        owner == u64::from(self.index)
    }

    /// How many of the first `total` arrivals are this shard's.
    pub fn count_of(&self, total: u64, process: Option<Arrival>, seed: u64) -> u64 {
        (0..total).filter(|&k| self.takes(k, process, seed)).count() as u64
    }

    /// The index a shard's `local`-th request has in the whole run: shards
    /// interleave, so the indexes of all shards never collide and
    /// `index % count` tells the shard.
    pub fn global_index(&self, local: u64) -> u64 {
        local * u64::from(self.count) + u64::from(self.index)
    }

    /// Whether a request index of the whole run is this shard's.
    pub fn owns(&self, index: u64) -> bool {
        index % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total() {
        for total in [0, 1, 7, 8, 1001] {
            let sum: u64 = (0..4).map(|i| Shard { index: i, count: 4 }.share(total)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(Shard { index: 0, count: 4 }.share(6), 2);
        assert_eq!(Shard { index: 3, count: 4 }.share(6), 1);
    }

    #[test]
    fn every_arrival_has_exactly_one_shard() {
        for process in [Some(Arrival::Constant), Some(Arrival::Poisson), None] {
            for k in 0..2000 {
                let owners = (0..4).filter(|&i| Shard { index: i, count: 4 }.takes(k, process, 7)).count();
                assert_eq!(owners, 1, "arrival {k} of {process:?}");
            }
        }
        assert!((0..8).all(|k| Shard { index: 1, count: 4 }.takes(k, Some(Arrival::Constant), 7) == (k % 4 == 1)));
        // Independent thinning: each shard gets about a quarter, not exactly.
        let n = Shard { index: 2, count: 4 }.count_of(40_000, Some(Arrival::Poisson), 7);
        assert!((9_400..10_600).contains(&n), "{n}");
    }

    #[test]
    fn bad_shards_say_why() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert!(Shard::parse("4/4").unwrap_err().contains("counted from 0"));
        assert!(Shard::parse("1/0").unwrap_err().contains("at least one"));
        assert!(Shard::parse("x").unwrap_err().contains("I/N"));
        let s = Shard { index: 1, count: 3 };
        assert_eq!(s.global_index(5), 16);
        assert!(s.owns(16) && !s.owns(15));
    }
}
