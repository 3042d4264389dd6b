//! Rate-limited warnings and reconnect backoff.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use paxos_core::NodeId;

/// Keys tracked at once; past this, new keys are suppressed until old ones expire. Bounds
/// the memory a flood of connections from many addresses can take.
const MAX_KEYS: usize = 1024;

/// What a warning is about: a configured peer, or a remote address not yet identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WarnKey {
    Peer(NodeId),
    QueueFull(NodeId),
    Addr(IpAddr),
    Listener,
}

/// At most one warning per key per interval; the rest are counted.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    interval: Duration,
    last: Mutex<HashMap<WarnKey, (Instant, u64)>>,
    suppressed: AtomicU64,
}

impl WarnLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` if a warning about `key` may be logged now, `n` being how many were
    /// suppressed since the last one; `None` (and counted) otherwise.
    pub(crate) fn allow(&self, key: WarnKey, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() >= MAX_KEYS && !last.contains_key(&key) {
            let interval = self.interval;
            last.retain(|_, (at, _)| now.saturating_duration_since(*at) < interval);
        }
        let full = last.len() >= MAX_KEYS;
        let verdict = match last.get_mut(&key) {
            Some((at, _)) if now.saturating_duration_since(*at) < self.interval => None,
            Some((at, count)) => {
                *at = now;
                Some(std::mem::take(count))
            }
            None if !full => {
                last.insert(key, (now, 0));
                Some(0)
            }
            None => None,
        };
        if verdict.is_none() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            if let Some((_, count)) = last.get_mut(&key) {
                *count += 1;
            }
        }
        verdict
    }

    /// Warnings suppressed so far.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// Exponential backoff with jitter: the n-th delay is drawn from
/// `[d/2, d]` with `d = min(max, min * 2^n)`.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, rng: fastrand::Rng) -> Self {
        Self {
            min,
            max,
            next: min,
            rng,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.u64(nanos / 2..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_and_the_rest_counted() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let key = WarnKey::Peer(NodeId(3));
        assert_eq!(limiter.allow(key, t0), Some(0));
        assert_eq!(limiter.allow(key, t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.allow(key, t0 + Duration::from_secs(2)), None);
        // Other keys are independent.
        assert_eq!(limiter.allow(WarnKey::Listener, t0), Some(0));
        assert_eq!(limiter.allow(key, t0 + Duration::from_secs(11)), Some(2));
        assert_eq!(limiter.suppressed(), 2);
    }

    #[test]
    fn key_table_is_bounded() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS as u64 {
            assert!(limiter.allow(WarnKey::Peer(NodeId(i)), t0).is_some());
        }
        let extra = WarnKey::Peer(NodeId(u64::MAX));
        assert_eq!(limiter.allow(extra, t0), None);
        // Once the old keys expire, room is made again.
        assert_eq!(limiter.allow(extra, t0 + Duration::from_secs(11)), Some(0));
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(75);
        let mut b = Backoff::new(min, max, fastrand::Rng::with_seed(1));
        let ceilings = [10, 20, 40, 75, 75];
        for ceiling in ceilings {
            let d = b.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
