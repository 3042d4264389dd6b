//! Rate-limited warnings and reconnect backoff.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use paxos_core::NodeId;

/// Keys remembered at once. Past this, warnings about new keys are suppressed until old
/// keys expire, so a flood from many addresses cannot grow the table.
const MAX_KEYS: usize = 1024;

/// What a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WarnKey {
    /// A configured peer's connection.
    Peer(NodeId),
    /// A peer's outbound queue overflowing.
    QueueFull(NodeId),
    /// An inbound connection not yet identified, by remote address.
    Addr(IpAddr),
    /// The listener itself (accept errors).
    Listener,
}

/// At most one warning per key per interval; the others are counted.
#[derive(Debug)]
pub struct WarnLimiter {
    interval: Duration,
    seen: Mutex<HashMap<WarnKey, (Instant, u64)>>,
    suppressed: AtomicU64,
}

impl WarnLimiter {
    /// A limiter allowing one warning per key per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` if a warning about `key` may be logged at `now`, with `n` the warnings
    /// about it suppressed since the last one logged; `None` (counted) otherwise.
    pub fn allow(&self, key: WarnKey, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_KEYS && !seen.contains_key(&key) {
            let interval = self.interval;
            seen.retain(|_, (at, _)| now.saturating_duration_since(*at) < interval);
        }
        let room = seen.len() < MAX_KEYS;
        let verdict = match seen.get_mut(&key) {
            Some((at, since)) if now.saturating_duration_since(*at) >= self.interval => {
                *at = now;
                Some(std::mem::take(since))
            }
            Some((_, since)) => {
                *since += 1;
                None
            }
            None if room => {
                seen.insert(key, (now, 0));
                Some(0)
            }
            None => None,
        };
        if verdict.is_none() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// Warnings suppressed so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// Exponential backoff with jitter: the n-th delay is uniform in `[d/2, d]` with
/// `d = min(max, min * 2^n)`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff from `min` doubling up to `max`, jittered by `rng`.
    pub fn new(min: Duration, max: Duration, rng: fastrand::Rng) -> Self {
        Self {
            min,
            max,
            ceiling: min,
            rng,
        }
    }

    /// Back to the shortest delay, after a success.
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }

    /// The delay before the next attempt; each call doubles the ceiling up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let nanos = u64::try_from(self.ceiling.as_nanos()).unwrap_or(u64::MAX);
        self.ceiling = self.ceiling.saturating_mul(2).min(self.max);
        Duration::from_nanos(self.rng.u64(nanos / 2..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_key_and_interval() {
        let limiter = WarnLimiter::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let key = WarnKey::Peer(NodeId(1));
        assert_eq!(limiter.allow(key, t0), Some(0));
        assert_eq!(limiter.allow(key, t0 + Duration::from_secs(1)), None);
        assert_eq!(
            limiter.allow(WarnKey::Addr(std::net::Ipv4Addr::LOCALHOST.into()), t0),
            Some(0)
        );
        assert_eq!(limiter.allow(key, t0 + Duration::from_secs(6)), Some(1));
        assert_eq!(limiter.suppressed(), 1);
    }

    #[test]
    fn the_key_table_is_bounded() {
        let limiter = WarnLimiter::new(Duration::from_secs(5));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS as u64 {
            assert!(limiter.allow(WarnKey::Peer(NodeId(i)), t0).is_some());
        }
        let late = WarnKey::Peer(NodeId(u64::MAX));
        assert_eq!(limiter.allow(late, t0), None);
        assert_eq!(limiter.allow(late, t0 + Duration::from_secs(6)), Some(0));
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(70));
        let mut backoff = Backoff::new(min, max, fastrand::Rng::with_seed(3));
        for ceiling in [10, 20, 40, 70, 70] {
            let ceiling = Duration::from_millis(ceiling);
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }
}
