//! The simulated network: loss, duplication, delay (hence reordering) and partitions,
//! including partial and one-way ones.

use std::collections::BTreeSet;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::RngCore;

use crate::rng::chance;

/// Fault rates of the network, changed by the fault schedule.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Minimum one-way delay, nanoseconds.
    pub delay_min_ns: u64,
    /// Maximum one-way delay, nanoseconds (random in between: messages reorder).
    pub delay_max_ns: u64,
    /// Probability that a message takes a long detour (up to 20x the max delay).
    pub slow: f64,
}

impl NetConfig {
    /// A network with no faults.
    pub fn quiet() -> Self {
        Self {
            drop: 0.0,
            duplicate: 0.0,
            delay_min_ns: 100_000,
            delay_max_ns: 1_000_000,
            slow: 0.0,
        }
    }
}

/// Which directed links are cut.
#[derive(Clone, Debug, Default)]
pub struct Partition {
    /// Cut links `(from, to)`, by node index.
    pub cut: BTreeSet<(usize, usize)>,
}

impl Partition {
    /// True if messages from `from` to `to` are lost.
    pub fn blocks(&self, from: usize, to: usize) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Isolates `node` from everyone, both ways.
    pub fn isolate(n: usize, node: usize) -> Self {
        let mut p = Self::default();
        for other in (0..n).filter(|&o| o != node) {
            p.cut.insert((node, other));
            p.cut.insert((other, node));
        }
        p
    }

    /// Splits the nodes into two random sides, both ways.
    pub fn split(n: usize, rng: &mut ChaCha8Rng) -> Self {
        let side: Vec<bool> = (0..n).map(|_| rng.next_u32() & 1 == 1).collect();
        let mut p = Self::default();
        for a in 0..n {
            for b in 0..n {
                if side[a] != side[b] {
                    p.cut.insert((a, b));
                }
            }
        }
        p
    }

    /// Cuts the link between two nodes, both ways, leaving every other link up: each can
    /// still reach the rest (Jepsen's "bridge").
    pub fn bridge(a: usize, b: usize) -> Self {
        let mut p = Self::default();
        p.cut.insert((a, b));
        p.cut.insert((b, a));
        p
    }

    /// Cuts random links, each direction on its own: partial and one-way partitions.
    pub fn random_links(n: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut p = Self::default();
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                if chance(rng, 0.3) {
                    p.cut.insert((a, b));
                }
            }
        }
        p
    }

    /// One node can send but not receive (or the reverse).
    pub fn one_way(n: usize, node: usize, deaf: bool) -> Self {
        let mut p = Self::default();
        for other in (0..n).filter(|&o| o != node) {
            if deaf {
                p.cut.insert((other, node));
            } else {
                p.cut.insert((node, other));
            }
        }
        p
    }
}

/// Decides the fate of each message: the delivery delays of its copies (none if lost).
pub fn fate(cfg: &NetConfig, rng: &mut ChaCha8Rng) -> Vec<u64> {
    let mut copies = Vec::new();
    if chance(rng, cfg.drop) {
        return copies;
    }
    let n = if chance(rng, cfg.duplicate) { 2 } else { 1 };
    for _ in 0..n {
        let spread = cfg.delay_max_ns.saturating_sub(cfg.delay_min_ns).max(1);
        let mut delay = cfg.delay_min_ns + rng.next_u64() % spread;
        if chance(rng, cfg.slow) {
            delay += rng.next_u64() % (cfg.delay_max_ns * 20).max(1);
        }
        copies.push(delay);
    }
    copies
}
