//! At-most-once application of proposals.
//!
//! The network may duplicate a Forward, so one proposal can reach the log twice. Every
//! replica filters the chosen log through the same filter as it applies, so each
//! [`ProposalId`] is applied at most once. The filter is a function of the log alone,
//! hence identical on every replica and across restarts (which re-apply from the start).
//!
//! The rule, with its bounds, is documented on [`Committed`](crate::Committed).

use std::collections::{BTreeMap, VecDeque};

use crate::types::{NodeId, ProposalId};

/// Sequence numbers remembered per origin incarnation.
pub(crate) const WINDOW: u64 = 1 << 16;
/// Incarnations remembered per origin.
pub(crate) const EPOCHS_PER_ORIGIN: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Dedup {
    origins: BTreeMap<NodeId, Origin>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Origin {
    /// The remembered incarnations, oldest first (ascending epochs).
    epochs: VecDeque<(u64, Window)>,
    /// Every epoch below this was forgotten: its commands are dropped.
    floor: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Window {
    /// Highest sequence number applied.
    max: u64,
    /// Bit `i` set: `max - i` was applied.
    bits: Vec<u64>,
}

impl Dedup {
    /// Checks what decoding cannot: the shapes the methods index by. For a filter read
    /// from a snapshot's bytes, which may be corrupt.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (node, origin) in &self.origins {
            if origin.epochs.len() > EPOCHS_PER_ORIGIN {
                return Err(format!(
                    "{} epochs remembered for {node}",
                    origin.epochs.len()
                ));
            }
            let mut pairs = origin.epochs.iter().zip(origin.epochs.iter().skip(1));
            if pairs.any(|((a, _), (b, _))| a >= b) {
                return Err(format!("epochs of {node} out of order"));
            }
            if origin
                .epochs
                .iter()
                .any(|(_, w)| w.bits.len() != (WINDOW / 64) as usize)
            {
                return Err(format!("a window of {node} has the wrong size"));
            }
        }
        Ok(())
    }

    /// The highest epoch of `origin` seen in the applied log (forgotten ones included).
    pub(crate) fn max_epoch(&self, origin: NodeId) -> Option<u64> {
        let o = self.origins.get(&origin)?;
        let kept = o.epochs.back().map(|(e, _)| *e);
        let forgotten = o.floor.checked_sub(1);
        kept.max(forgotten)
    }

    /// Records `id` as applied; false if it already was (or is too old to tell).
    pub(crate) fn first_time(&mut self, id: ProposalId) -> bool {
        let origin = self.origins.entry(id.origin).or_default();
        if id.epoch < origin.floor {
            return false;
        }
        let pos = origin.epochs.binary_search_by_key(&id.epoch, |(e, _)| *e);
        match pos {
            Ok(p) => origin.epochs[p].1.insert(id.seq),
            Err(p) => {
                let mut window = Window {
                    max: id.seq,
                    bits: vec![0; (WINDOW / 64) as usize],
                };
                window.set(0);
                origin.epochs.insert(p, (id.epoch, window));
                if origin.epochs.len() > EPOCHS_PER_ORIGIN {
                    // Forget the oldest; everything at or below it counts as applied. If
                    // that was `id` itself (an epoch older than all remembered), it is
                    // dropped.
                    let (oldest, _) = origin.epochs.pop_front().expect("more than one epoch");
                    origin.floor = oldest + 1;
                    return id.epoch > oldest;
                }
                true
            }
        }
    }
}

impl Window {
    fn set(&mut self, back: u64) {
        self.bits[(back / 64) as usize] |= 1 << (back % 64);
    }

    fn get(&self, back: u64) -> bool {
        self.bits[(back / 64) as usize] & (1 << (back % 64)) != 0
    }

    fn insert(&mut self, seq: u64) -> bool {
        if seq > self.max {
            let shift = seq - self.max;
            self.shift(shift);
            self.max = seq;
            self.set(0);
            return true;
        }
        let back = self.max - seq;
        if back >= WINDOW || self.get(back) {
            return false;
        }
        self.set(back);
        true
    }

    /// Ages every remembered bit by `by` positions.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.bits.iter_mut().for_each(|w| *w = 0);
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        let n = self.bits.len();
        for i in (0..n).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.bits[s]);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.bits[s]);
            self.bits[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(origin: u64, epoch: u64, seq: u64) -> ProposalId {
        ProposalId {
            origin: NodeId(origin),
            seq,
            epoch,
        }
    }

    #[test]
    fn duplicates_are_refused_in_any_order() {
        let mut d = Dedup::default();
        for seq in [5, 3, 9, 4, 70, 200] {
            assert!(d.first_time(id(1, 1, seq)), "seq {seq}");
        }
        for seq in [5, 3, 9, 4, 70, 200] {
            assert!(!d.first_time(id(1, 1, seq)), "dup {seq}");
        }
        assert!(d.first_time(id(1, 1, 6)));
        assert!(d.first_time(id(2, 1, 5)), "other origin");
        assert!(d.first_time(id(1, 2, 5)), "other epoch");
    }

    #[test]
    fn window_is_bounded() {
        let mut d = Dedup::default();
        assert!(d.first_time(id(1, 1, 0)));
        assert!(d.first_time(id(1, 1, WINDOW + 10)));
        assert!(!d.first_time(id(1, 1, 5)), "too old counts as duplicate");
        for e in 0..20 {
            d.first_time(id(3, e, 0));
        }
        assert_eq!(d.origins[&NodeId(3)].epochs.len(), EPOCHS_PER_ORIGIN);
    }

    #[test]
    fn a_duplicate_from_a_forgotten_incarnation_is_never_applied_again() {
        // An origin restarts nine times while a duplicate of its first command is in
        // flight: the duplicate must still be refused.
        let mut d = Dedup::default();
        assert!(d.first_time(id(1, 1, 0)));
        for epoch in 2..=(EPOCHS_PER_ORIGIN as u64 + 1) {
            assert!(d.first_time(id(1, epoch, 0)), "epoch {epoch}");
        }
        assert!(!d.first_time(id(1, 1, 0)), "applied twice");
        assert!(
            !d.first_time(id(1, 1, 5)),
            "an unseen command of a forgotten epoch"
        );
        // An epoch never seen, older than every remembered one, once the set is full.
        let mut d = Dedup::default();
        for epoch in 10..(10 + EPOCHS_PER_ORIGIN as u64) {
            assert!(d.first_time(id(1, epoch, 0)));
        }
        assert!(
            !d.first_time(id(1, 3, 0)),
            "older than all remembered: dropped"
        );
        assert!(!d.first_time(id(1, 3, 0)));
        assert!(d.first_time(id(1, 50, 0)), "a newer epoch is new");
        assert!(!d.first_time(id(1, 10, 1)), "the oldest was forgotten");
    }

    #[test]
    fn shifting_keeps_bits_in_place() {
        let mut d = Dedup::default();
        for seq in 0..300 {
            assert!(d.first_time(id(1, 1, seq)));
        }
        for seq in 0..300 {
            assert!(!d.first_time(id(1, 1, seq)), "seq {seq}");
        }
        assert!(d.first_time(id(1, 1, 1000)));
        for seq in (0..300).step_by(7) {
            assert!(!d.first_time(id(1, 1, seq)), "seq {seq} after a big jump");
        }
        assert!(d.first_time(id(1, 1, 500)));
    }
}
