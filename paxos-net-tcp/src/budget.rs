//! [`ByteBudget`]: a bound in bytes on what a queue holds, beside its bound in messages.

use std::sync::Mutex;

use event_listener::Event;

/// Counts the bytes of the messages in one queue against a maximum.
///
/// The rule: a message is admitted if the queue is empty, or if it fits under the maximum.
/// So a single message larger than the maximum still goes through (alone), and progress is
/// always possible; what the queue holds is at most `max(max, one message)` bytes.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    max: usize,
    state: Mutex<State>,
    freed: Event,
}

#[derive(Debug, Default)]
struct State {
    used: usize,
    peak: usize,
}

impl ByteBudget {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            state: Mutex::new(State::default()),
            freed: Event::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover rather than propagate.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `bytes` if the rule admits them now.
    pub(crate) fn try_acquire(&self, bytes: usize) -> bool {
        let mut state = self.lock();
        let admitted = state.used == 0 || state.used.saturating_add(bytes) <= self.max;
        if admitted {
            state.used = state.used.saturating_add(bytes);
            state.peak = state.peak.max(state.used);
        }
        admitted
    }

    /// Waits until the rule admits `bytes`, then takes them. Cancel-safe: nothing is taken
    /// unless it completes.
    pub(crate) async fn acquire(&self, bytes: usize) {
        loop {
            if self.try_acquire(bytes) {
                return;
            }
            let listener = self.freed.listen();
            // A release between the check above and `listen` would be missed otherwise.
            if self.try_acquire(bytes) {
                return;
            }
            listener.await;
        }
    }

    /// Gives back `bytes` taken earlier, and wakes the waiters.
    pub(crate) fn release(&self, bytes: usize) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(bytes);
        drop(state);
        self.freed.notify(usize::MAX);
    }

    /// The most bytes held at once so far.
    pub(crate) fn peak(&self) -> usize {
        self.lock().peak
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn admits_under_the_bound_or_into_an_empty_queue() {
        let budget = ByteBudget::new(100);
        assert!(budget.try_acquire(60));
        assert!(budget.try_acquire(40));
        assert!(!budget.try_acquire(1), "full");
        budget.release(100);
        // Alone, a message larger than the bound is admitted: progress is possible.
        assert!(budget.try_acquire(500));
        assert!(!budget.try_acquire(1));
        budget.release(500);
        assert!(budget.try_acquire(1));
        assert_eq!(budget.peak(), 500);
    }

    #[test]
    fn acquire_waits_for_a_release() {
        let budget = ByteBudget::new(100);
        assert!(budget.try_acquire(80));
        let mut waiting = Box::pin(budget.acquire(30));
        assert!((&mut waiting).now_or_never().is_none());
        budget.release(40);
        assert!((&mut waiting).now_or_never().is_some());
        // 40 + 30 held now.
        assert!(!budget.try_acquire(31));
        assert!(budget.try_acquire(30));
    }

    #[test]
    fn a_cancelled_acquire_takes_nothing() {
        let budget = ByteBudget::new(10);
        assert!(budget.try_acquire(10));
        assert!(Box::pin(budget.acquire(5)).now_or_never().is_none());
        budget.release(10);
        assert!(budget.try_acquire(10));
    }
}
