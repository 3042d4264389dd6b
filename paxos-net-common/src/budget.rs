//! [`ByteBudget`]: a bound in bytes on a queue, beside its bound in messages.

use std::sync::{Mutex, MutexGuard};

use event_listener::Event;

/// Counts the bytes held by one queue against a maximum.
///
/// Admission rule: a message is admitted if the queue holds nothing, or if it fits under
/// the maximum. A message larger than the maximum therefore still passes, alone, so
/// progress is always possible and the queue holds at most `max(max, one message)`.
#[derive(Debug)]
pub struct ByteBudget {
    max: usize,
    state: Mutex<Usage>,
    freed: Event,
}

#[derive(Debug, Default)]
struct Usage {
    held: usize,
    peak: usize,
}

impl ByteBudget {
    /// A budget of `max` bytes, nothing held.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            state: Mutex::new(Usage::default()),
            freed: Event::new(),
        }
    }

    fn usage(&self) -> MutexGuard<'_, Usage> {
        // No code panics while holding the lock; a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `bytes` if the rule admits them now.
    pub fn try_acquire(&self, bytes: usize) -> bool {
        let mut usage = self.usage();
        let fits = usage.held == 0 || usage.held.saturating_add(bytes) <= self.max;
        if fits {
            usage.held = usage.held.saturating_add(bytes);
            usage.peak = usage.peak.max(usage.held);
        }
        fits
    }

    /// Waits until `bytes` are admitted, and takes them. Cancel-safe: nothing is taken
    /// unless the future completes.
    pub async fn acquire(&self, bytes: usize) {
        loop {
            if self.try_acquire(bytes) {
                return;
            }
            let freed = self.freed.listen();
            // Checked again after registering, or a release in between would be missed.
            if self.try_acquire(bytes) {
                return;
            }
            freed.await;
        }
    }

    /// Returns `bytes` taken earlier and wakes every waiter.
    pub fn release(&self, bytes: usize) {
        let mut usage = self.usage();
        usage.held = usage.held.saturating_sub(bytes);
        drop(usage);
        self.freed.notify(usize::MAX);
    }

    /// The most bytes held at once so far.
    pub fn peak(&self) -> usize {
        self.usage().peak
    }
}

/// Bytes taken from a [`ByteBudget`], returned on drop unless [`kept`](Self::kept).
pub struct Held<'a> {
    budget: &'a ByteBudget,
    bytes: usize,
}

impl<'a> Held<'a> {
    /// Takes charge of `bytes` already acquired from `budget`.
    pub fn new(budget: &'a ByteBudget, bytes: usize) -> Self {
        Self { budget, bytes }
    }

    /// The bytes now belong to whoever will release them later.
    pub fn kept(self) {
        std::mem::forget(self);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn admits_what_fits_or_anything_into_an_empty_queue() {
        let budget = ByteBudget::new(10);
        assert!(budget.try_acquire(6));
        assert!(budget.try_acquire(4));
        assert!(!budget.try_acquire(1));
        budget.release(10);
        assert!(budget.try_acquire(50), "alone, an oversized message passes");
        assert!(!budget.try_acquire(1));
        budget.release(50);
        assert_eq!(budget.peak(), 50);
    }

    #[test]
    fn acquire_waits_for_a_release_and_cancelling_takes_nothing() {
        let budget = ByteBudget::new(10);
        assert!(budget.try_acquire(8));
        let mut waiting = Box::pin(budget.acquire(5));
        assert!((&mut waiting).now_or_never().is_none());
        budget.release(8);
        assert!((&mut waiting).now_or_never().is_some());
        assert!(Box::pin(budget.acquire(6)).now_or_never().is_none());
        assert!(budget.try_acquire(5), "the cancelled acquire took nothing");
    }
}
