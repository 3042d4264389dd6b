//! [`SimRuntime`]: the one runtime seam ([`paxos_runtime::Runtime`]) over the simulated
//! executor, with a clock per node.
//!
//! Each node's clock runs at its own rate (within the configured drift bound, unless a run
//! breaks it on purpose) from its own offset. Real runtimes read a clock that keeps
//! counting while the process or machine is suspended (see `paxos_runtime`), so a
//! suspended node here is a paused one whose clock keeps running; a run can instead make
//! a node's clock *stop* while it is suspended (`freeze`), to show what leases rely on.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use paxos_runtime::{AsyncTimer, BoxConn, Listener, Runtime, no_sockets};

use super::executor::{Executor, Owner, SimTime, TimerKey};

/// One node's clock: local nanoseconds as a function of simulated time.
#[derive(Debug, Clone)]
pub(crate) struct NodeClock {
    /// Local time at simulated time 0.
    pub(crate) offset: u64,
    /// Rate error in parts per million (positive: runs fast).
    pub(crate) rate_ppm: i64,
    /// Simulated-time intervals during which the clock stood still, in order.
    pub(crate) frozen: Vec<(SimTime, SimTime)>,
}

impl NodeClock {
    pub(crate) fn new(offset: u64, rate_ppm: i64) -> Self {
        Self {
            offset,
            rate_ppm,
            frozen: Vec::new(),
        }
    }

    /// The clock stands still from `from` until `until` (or until thawed).
    pub(crate) fn freeze(&mut self, from: SimTime, until: SimTime) {
        match self.frozen.last_mut() {
            Some((_, b)) if *b >= from => *b = (*b).max(until),
            _ => self.frozen.push((from, until)),
        }
    }

    /// The clock runs again from `at`, whatever its freeze said.
    pub(crate) fn thaw(&mut self, at: SimTime) {
        if let Some((a, b)) = self.frozen.last_mut() {
            if *b > at {
                *b = at.max(*a);
            }
        }
    }

    /// Simulated time during which the clock ran, up to `sim`.
    fn running(&self, sim: SimTime) -> u64 {
        let stood: u64 = self
            .frozen
            .iter()
            .map(|&(a, b)| b.min(sim).saturating_sub(a))
            .sum();
        sim - stood
    }

    fn scale(&self, ns: u64) -> u64 {
        let f = 1_000_000i128 + i128::from(self.rate_ppm);
        (i128::from(ns) * f / 1_000_000) as u64
    }

    /// The local clock at simulated time `sim`.
    pub(crate) fn local(&self, sim: SimTime) -> u64 {
        self.offset + self.scale(self.running(sim))
    }

    /// The earliest simulated time at or after `from` when the local clock reads at least
    /// `target`.
    pub(crate) fn sim_at(&self, target: u64, from: SimTime) -> SimTime {
        if self.local(from) >= target {
            return from;
        }
        let f = 1_000_000i128 + i128::from(self.rate_ppm);
        let want = i128::from(target - self.offset);
        // Running time needed: the smallest r with r * f / 10^6 >= want.
        let mut need = ((want * 1_000_000 + f - 1) / f) as u64;
        // Map running time back to simulated time, skipping the frozen intervals.
        let mut sim = 0u64;
        for &(a, b) in &self.frozen {
            if sim + need <= a {
                break;
            }
            need -= a.saturating_sub(sim);
            sim = b.max(sim);
        }
        (sim + need).max(from)
    }
}

/// The runtime one node sees: tasks it spawns belong to it, time is its own clock.
#[derive(Clone, Debug)]
pub(crate) struct SimRuntime {
    exec: Executor,
    owner: Owner,
    clock: Arc<Mutex<NodeClock>>,
    /// The `std::time::Instant` that local time 0 maps to.
    base: Instant,
}

impl SimRuntime {
    pub(crate) fn new(
        exec: Executor,
        owner: Owner,
        clock: Arc<Mutex<NodeClock>>,
        base: Instant,
    ) -> Self {
        Self {
            exec,
            owner,
            clock,
            base,
        }
    }

    fn local_now(&self) -> u64 {
        self.clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .local(self.exec.now())
    }
}

impl Runtime for SimRuntime {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.exec.spawn_boxed(self.owner, task);
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(SimTimer {
            rt: self.clone(),
            deadline: local_of(self.base, deadline),
            key: None,
        })
    }

    fn now(&self) -> Instant {
        let now = self.base + Duration::from_nanos(self.local_now());
        if self.owner != Owner::World {
            // Descheduled right after reading the clock, now and then (only when the node
            // itself reads it, not a client through its handle).
            self.exec.maybe_preempt(self.owner);
        }
        now
    }

    /// Runs `job` on the executor, as the node's task, after a seeded delay of up to
    /// 50 ms: the node goes on cycling meanwhile (a background snapshot stays under way
    /// across applies, fetches and crashes), and the schedule stays the seed's.
    ///
    /// The job runs inline and must not block: the `Recording` state machine freezes only
    /// snapshots that fit one of the driver's pieces (see `Recording::freeze`).
    fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send>) -> io::Result<()> {
        let delay = Duration::from_micros(self.exec.random() % 50_000);
        let sleep = self.sleep(delay);
        self.spawn(Box::pin(async move {
            sleep.await;
            job();
        }));
        Ok(())
    }

    fn connect_tcp(&self, _addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxConn>> {
        Box::pin(async { Err(no_sockets()) })
    }

    fn bind_tcp(&self, _addr: SocketAddr) -> io::Result<Box<dyn Listener>> {
        Err(no_sockets())
    }
}

fn local_of(base: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// A timer on a node's clock, registered with the executor in simulated time.
#[derive(Debug)]
struct SimTimer {
    rt: SimRuntime,
    /// Local nanoseconds.
    deadline: u64,
    key: Option<TimerKey>,
}

impl AsyncTimer for SimTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = local_of(self.rt.base, deadline);
        if let Some(key) = self.key.take() {
            self.rt.exec.cancel_timer(key);
        }
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let sim_now = self.rt.exec.now();
        let at = self
            .rt
            .clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sim_at(self.deadline, sim_now);
        if at <= sim_now {
            return Poll::Ready(());
        }
        let key = self.rt.exec.set_timer(self.key, at, cx.waker());
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for SimTimer {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.rt.exec.cancel_timer(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_map_both_ways() {
        let mut c = NodeClock::new(500, 20_000);
        assert_eq!(c.local(0), 500);
        assert_eq!(c.local(1_000_000), 500 + 1_020_000);
        for target in [600u64, 10_000, 1_000_000, 7_654_321] {
            let s = c.sim_at(target, 0);
            assert!(c.local(s) >= target, "{target}");
            assert!(s == 0 || c.local(s - 1) < target, "{target}: earliest");
        }
        c.frozen.push((1_000, 5_000));
        assert_eq!(c.local(3_000), c.local(1_000), "frozen");
        let target = c.local(1_000) + 10;
        let s = c.sim_at(target, 0);
        assert!(s >= 5_000 && c.local(s) >= target);
    }
}
