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
            if origin.epochs.iter().any(|(_, w)| w.ring.len() != WORDS) {
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
                origin.epochs.insert(p, (id.epoch, Window::new(id.seq)));
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

/// The sequence numbers applied in `(max - WINDOW, max]`, as a ring of bits: seq `s` is
/// bit `s % WINDOW`. Recording a new maximum clears only the positions it passes over, so
/// the usual case (the next sequence number) costs O(1), not a shift of the whole window.
///
/// Its serialized form (in core snapshots) is [`WindowWire`], the window as it was first
/// written: bit `i` means `max - i` was applied.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "WindowWire", into = "WindowWire")]
struct Window {
    /// Highest sequence number applied.
    max: u64,
    /// Bit `s % WINDOW` set: `s` was applied, for `s` in `(max - WINDOW, max]`; the other
    /// positions are clear.
    ring: Vec<u64>,
}

/// [`Window`] as snapshots hold it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct WindowWire {
    /// Highest sequence number applied.
    max: u64,
    /// Bit `i` set: `max - i` was applied.
    bits: Vec<u64>,
}

const WORDS: usize = (WINDOW / 64) as usize;

fn bit(words: &[u64], i: u64) -> bool {
    words[(i / 64) as usize] & (1 << (i % 64)) != 0
}

fn set_bit(words: &mut [u64], i: u64) {
    words[(i / 64) as usize] |= 1 << (i % 64);
}

impl From<WindowWire> for Window {
    /// `validate` checks the length afterwards; a wrong one yields an empty window here
    /// rather than a panic.
    fn from(wire: WindowWire) -> Self {
        let mut ring = vec![0; WORDS];
        if wire.bits.len() == WORDS {
            for back in (0..WINDOW).filter(|&b| b <= wire.max && bit(&wire.bits, b)) {
                set_bit(&mut ring, (wire.max - back) % WINDOW);
            }
        } else {
            ring = wire.bits;
        }
        Self {
            max: wire.max,
            ring,
        }
    }
}

impl From<Window> for WindowWire {
    fn from(window: Window) -> Self {
        let mut bits = vec![0; WORDS];
        for back in 0..WINDOW.min(window.max + 1) {
            if window.get(window.max - back) {
                set_bit(&mut bits, back);
            }
        }
        Self {
            max: window.max,
            bits,
        }
    }
}

impl Window {
    fn new(seq: u64) -> Self {
        let mut window = Self {
            max: seq,
            ring: vec![0; WORDS],
        };
        window.set(seq);
        window
    }

    fn set(&mut self, seq: u64) {
        set_bit(&mut self.ring, seq % WINDOW);
    }

    /// For `seq` in `(max - WINDOW, max]`.
    fn get(&self, seq: u64) -> bool {
        bit(&self.ring, seq % WINDOW)
    }

    fn insert(&mut self, seq: u64) -> bool {
        if seq > self.max {
            self.clear_after_max(seq);
            self.max = seq;
            self.set(seq);
            return true;
        }
        if self.max - seq >= WINDOW || self.get(seq) {
            return false;
        }
        self.set(seq);
        true
    }

    /// Clears the positions of `max + 1 ..= upto`: they held sequence numbers that fall
    /// out of the window when `upto` becomes the maximum.
    fn clear_after_max(&mut self, upto: u64) {
        let count = upto - self.max;
        if count >= WINDOW {
            self.ring.iter_mut().for_each(|w| *w = 0);
            return;
        }
        let mut pos = (self.max + 1) % WINDOW;
        let mut left = count;
        while left > 0 {
            let word = (pos / 64) as usize;
            let offset = pos % 64;
            let n = left.min(64 - offset);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << offset
            };
            self.ring[word] &= !mask;
            left -= n;
            pos = (pos + n) % WINDOW;
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

    /// The rule for one incarnation, written the slow way: a sequence number is new if it
    /// was never applied and lies within `WINDOW` of the highest applied.
    #[derive(Default)]
    struct Model {
        applied: std::collections::BTreeSet<u64>,
    }

    impl Model {
        fn first_time(&mut self, seq: u64) -> bool {
            let max = self.applied.last().copied().unwrap_or(seq).max(seq);
            if max - seq >= WINDOW || self.applied.contains(&seq) {
                return false;
            }
            self.applied.insert(seq);
            true
        }

        /// The wire form: bit `i` set when `max - i` was applied.
        fn wire(&self) -> WindowWire {
            let max = *self.applied.last().expect("one applied");
            let mut bits = vec![0; WORDS];
            for &seq in self.applied.range(max.saturating_sub(WINDOW - 1)..) {
                set_bit(&mut bits, max - seq);
            }
            WindowWire { max, bits }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_ring_answers_as_the_rule_and_keeps_the_wire_form(
            start in 0u64..3 * WINDOW,
            steps in proptest::collection::vec((0u8..4, 0u64..2 * WINDOW), 1..200),
        ) {
            let mut window = Window::new(start);
            let mut model = Model::default();
            proptest::prop_assert!(model.first_time(start));
            let mut last = start;
            for (kind, n) in steps {
                // Mostly the next few numbers, sometimes jumps and old ones.
                let seq = match kind {
                    0 => last + 1 + n % 3,
                    1 => last + n,
                    2 => last.saturating_sub(n % 200),
                    _ => last.saturating_sub(n),
                };
                last = last.max(seq);
                proptest::prop_assert_eq!(window.insert(seq), model.first_time(seq), "seq {}", seq);
            }
            let wire = WindowWire::from(window.clone());
            proptest::prop_assert_eq!(&wire, &model.wire());
            proptest::prop_assert_eq!(Window::from(wire), window);
        }
    }
}
