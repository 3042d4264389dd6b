//! A deterministic single-threaded executor with simulated time.
//!
//! Every task belongs to an owner (a node, or the world). The executor polls one ready
//! task at a time, chosen by the seeded RNG among the ready tasks whose owner is not
//! paused, so one seed gives one schedule. When no task is ready, time jumps to the next
//! deadline (a timer, or an event of the world: a delivery, a fault). Nothing here reads
//! a real clock.
//!
//! Crashing a node drops every task it owns, at once: exactly what killing a process does
//! to its futures.
//!
//! A node can also lose the processor **in the middle of a poll**, right after it reads its
//! clock (a thread descheduled, a SIGSTOP or a VM pause landing between two statements).
//! The executor then runs every other owner's tasks, moving time on, from inside that
//! poll, until the node's turn comes back; then the poll goes on with the clock value it
//! read before. One node at a time is descheduled. If the node is crashed meanwhile, the
//! rest of its poll never runs: it unwinds, as a killed process stops mid-statement.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Wake, Waker};

use futures::future::BoxFuture;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Who a task belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Owner {
    /// The simulator's own tasks (clients).
    World,
    /// A node, by index.
    Node(usize),
}

type TaskId = u64;

struct Task {
    owner: Owner,
    future: Option<BoxFuture<'static, ()>>,
}

/// Simulated time, in nanoseconds since the run began.
pub(crate) type SimTime = u64;

struct State {
    now: SimTime,
    next_task: TaskId,
    tasks: BTreeMap<TaskId, Task>,
    next_timer: u64,
    /// Pending timers: (deadline, id) -> the waker to wake then.
    timers: BTreeMap<(SimTime, u64), Waker>,
    paused: BTreeSet<Owner>,
    rng: ChaCha8Rng,
    polls: u64,
    /// Called whenever time moves, after timers are woken (the network's deliveries).
    on_advance: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The next event of the world that is not a timer (the network's next delivery).
    next_event: Option<Arc<dyn Fn() -> Option<SimTime> + Send + Sync>>,
    /// The node descheduled in the middle of a poll, if any.
    descheduled: Option<Descheduled>,
    /// Stops armed by the world (a SIGSTOP that lands mid-poll): the owner's next clock
    /// read deschedules it for this long: (clock reads to let pass first, the stop).
    armed: BTreeMap<Owner, (u64, SimTime)>,
    /// Per million clock reads by a node: the node is preempted right after the read.
    preempt_ppm: u64,
    preemptions: u64,
    /// When each owner was last paused, resumed, killed or preempted.
    disturbed: BTreeMap<Owner, SimTime>,
    /// The owner of the task being polled.
    current: Option<Owner>,
}

/// A node that lost the processor in the middle of a poll.
#[derive(Clone, Copy, Debug)]
struct Descheduled {
    owner: Owner,
    /// When its turn comes back (it waits longer if it is paused by then).
    until: SimTime,
    /// Crashed meanwhile: the rest of its poll must not run.
    killed: bool,
}

/// The payload that unwinds the poll of a node crashed while descheduled.
struct Killed;

/// Shared by every [`Waker`] the executor hands out.
#[derive(Default)]
struct ReadySet(Mutex<BTreeSet<TaskId>>);

struct TaskWaker {
    id: TaskId,
    ready: Arc<ReadySet>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.ready.0).insert(self.id);
    }
}

/// The executor. Clones share it.
#[derive(Clone)]
pub(crate) struct Executor {
    state: Arc<Mutex<State>>,
    ready: Arc<ReadySet>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("now", &self.now())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle on one registered timer, to move or cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey((SimTime, u64));

impl Executor {
    pub(crate) fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8] = 0xe7;
        Self {
            state: Arc::new(Mutex::new(State {
                now: 0,
                next_task: 0,
                tasks: BTreeMap::new(),
                next_timer: 0,
                timers: BTreeMap::new(),
                paused: BTreeSet::new(),
                rng: ChaCha8Rng::from_seed(bytes),
                polls: 0,
                on_advance: None,
                next_event: None,
                descheduled: None,
                armed: BTreeMap::new(),
                preempt_ppm: 0,
                preemptions: 0,
                disturbed: BTreeMap::new(),
                current: None,
            })),
            ready: Arc::default(),
        }
    }

    pub(crate) fn now(&self) -> SimTime {
        lock(&self.state).now
    }

    /// Task polls so far.
    pub(crate) fn polls(&self) -> u64 {
        lock(&self.state).polls
    }

    pub(crate) fn spawn(&self, owner: Owner, future: impl Future<Output = ()> + Send + 'static) {
        self.spawn_boxed(owner, Box::pin(future));
    }

    pub(crate) fn spawn_boxed(&self, owner: Owner, future: BoxFuture<'static, ()>) {
        let id = {
            let mut s = lock(&self.state);
            let id = s.next_task;
            s.next_task += 1;
            s.tasks.insert(
                id,
                Task {
                    owner,
                    future: Some(future),
                },
            );
            id
        };
        lock(&self.ready.0).insert(id);
    }

    /// Drops every task of `owner` (a crash). Their futures are dropped outside the lock,
    /// in task order, since dropping may wake or spawn.
    pub(crate) fn kill(&self, owner: Owner) {
        let doomed: Vec<BoxFuture<'static, ()>> = {
            let mut s = lock(&self.state);
            Self::disturb(&mut s, owner);
            if let Some(d) = s.descheduled.as_mut().filter(|d| d.owner == owner) {
                d.killed = true;
            }
            s.armed.remove(&owner);
            let ids: Vec<TaskId> = s
                .tasks
                .iter()
                .filter(|(_, t)| t.owner == owner)
                .map(|(&id, _)| id)
                .collect();
            ids.into_iter()
                .filter_map(|id| s.tasks.remove(&id).and_then(|t| t.future))
                .collect()
        };
        drop(doomed);
    }

    pub(crate) fn pause(&self, owner: Owner) {
        let mut s = lock(&self.state);
        s.paused.insert(owner);
        Self::disturb(&mut s, owner);
    }

    pub(crate) fn resume(&self, owner: Owner) {
        let mut s = lock(&self.state);
        s.paused.remove(&owner);
        Self::disturb(&mut s, owner);
    }

    /// Registers `waker` to be woken at `deadline`, replacing `previous` if given.
    pub(crate) fn set_timer(
        &self,
        previous: Option<TimerKey>,
        deadline: SimTime,
        waker: &Waker,
    ) -> TimerKey {
        let mut s = lock(&self.state);
        if let Some(TimerKey(k)) = previous {
            s.timers.remove(&k);
        }
        let key = (deadline, s.next_timer);
        s.next_timer += 1;
        s.timers.insert(key, waker.clone());
        TimerKey(key)
    }

    pub(crate) fn cancel_timer(&self, key: TimerKey) {
        lock(&self.state).timers.remove(&key.0);
    }

    /// The earliest pending timer's deadline.
    pub(crate) fn next_timer(&self) -> Option<SimTime> {
        lock(&self.state).timers.keys().next().map(|(t, _)| *t)
    }

    /// Moves time to `to` (never back) and wakes every timer due by then.
    pub(crate) fn advance_to(&self, to: SimTime) {
        let (due, hook): (Vec<Waker>, _) = {
            let mut s = lock(&self.state);
            s.now = s.now.max(to);
            let now = s.now;
            let later = s.timers.split_off(&(now + 1, 0));
            let due = std::mem::replace(&mut s.timers, later);
            (due.into_values().collect(), s.on_advance.clone())
        };
        due.into_iter().for_each(Waker::wake);
        if let Some(hook) = hook {
            hook();
        }
    }

    /// Runs `hook` whenever time moves.
    pub(crate) fn on_advance(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        lock(&self.state).on_advance = Some(hook);
    }

    /// Runs `hook` to learn the world's next event that is not a timer.
    pub(crate) fn on_next_event(&self, hook: Arc<dyn Fn() -> Option<SimTime> + Send + Sync>) {
        lock(&self.state).next_event = Some(hook);
    }

    /// Makes a node's task lose the processor, now and then, right after it reads its
    /// clock (`per_million` of the reads): every other owner runs and time moves on while
    /// it is stopped mid-poll, and what arrives meanwhile waits in its inbox, as when the
    /// OS deschedules a thread. Most stops last up to 30 ms; one in ten lasts up to 2 s (a
    /// SIGSTOP or a VM pause that lands between two statements).
    pub(crate) fn set_preemption(&self, per_million: u64) {
        lock(&self.state).preempt_ppm = per_million;
    }

    /// Arms a stop of `owner` for `stop` nanoseconds at one of its next few clock reads (a
    /// SIGSTOP that lands between two statements, right after the clock was read).
    pub(crate) fn arm_stop(&self, owner: Owner, stop: SimTime) {
        let mut s = lock(&self.state);
        let skip = s.rng.next_u64() % 8;
        s.armed.insert(owner, (skip, stop));
    }

    /// Ends every stop, armed or under way (a calm begins).
    pub(crate) fn end_stops(&self) {
        let mut s = lock(&self.state);
        s.armed.clear();
        let now = s.now;
        if let Some(d) = s.descheduled.as_mut() {
            d.until = d.until.min(now);
        }
    }

    /// Called by `owner`'s clock read: maybe lose the processor for a while. Only in a
    /// poll of `owner`'s own task, and only one node at a time.
    pub(crate) fn maybe_preempt(&self, owner: Owner) {
        {
            let mut s = lock(&self.state);
            if s.current != Some(owner) || s.descheduled.is_some() {
                return;
            }
            let armed = match s.armed.get_mut(&owner) {
                Some((0, stop)) => {
                    let stop = *stop;
                    s.armed.remove(&owner);
                    Some(stop)
                }
                Some((skip, _)) => {
                    *skip -= 1;
                    None
                }
                None => None,
            };
            if armed.is_none()
                && (s.preempt_ppm == 0 || s.rng.next_u64() % 1_000_000 >= s.preempt_ppm)
            {
                return;
            }
            s.preemptions += 1;
            Self::disturb(&mut s, owner);
            let stop = if let Some(stop) = armed {
                stop
            } else if s.rng.next_u64() % 10 == 0 {
                // 30 ms to 2 s.
                30_000_000 + s.rng.next_u64() % 1_970_000_000
            } else {
                // 0.1 to 30 ms.
                100_000 + s.rng.next_u64() % 30_000_000
            };
            let until = s.now + stop;
            s.descheduled = Some(Descheduled {
                owner,
                until,
                killed: false,
            });
        }
        let killed = self.run_others(owner);
        {
            let mut s = lock(&self.state);
            s.descheduled = None;
            s.current = Some(owner);
            Self::disturb(&mut s, owner);
        }
        if killed {
            // Not a panic: no hook runs. The poll that read the clock catches it.
            std::panic::resume_unwind(Box::new(Killed));
        }
    }

    /// Runs everyone but `owner` until its stop ends (later, if `owner` is paused then), or
    /// until `owner` is crashed (returns true) or nothing is left to do.
    fn run_others(&self, owner: Owner) -> bool {
        let mut spins = 0u64;
        loop {
            let (killed, until, paused, now, hook) = {
                let s = lock(&self.state);
                let d = s.descheduled.expect("descheduled while others run");
                let paused = s.paused.contains(&owner);
                (d.killed, d.until, paused, s.now, s.next_event.clone())
            };
            if killed {
                return true;
            }
            if self.poll_one() {
                spins += 1;
                // A livelock: let the node go on, so the outer loop reports it.
                if spins > 1_000_000 {
                    return false;
                }
                continue;
            }
            if now >= until && !paused {
                return false;
            }
            let resume = (!paused).then_some(until);
            let next = [self.next_timer(), hook.and_then(|h| h()), resume]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) => self.advance_to(t.max(now)),
                None => return false,
            }
        }
    }

    /// When `owner` was last paused, resumed, killed or preempted.
    pub(crate) fn last_disturbed(&self, owner: Owner) -> Option<SimTime> {
        lock(&self.state).disturbed.get(&owner).copied()
    }

    fn disturb(s: &mut State, owner: Owner) {
        let now = s.now;
        s.disturbed.insert(owner, now);
    }

    /// Drops every task (the end of a run), and the hooks, so nothing keeps the run alive.
    pub(crate) fn shut_down(&self) {
        let doomed: Vec<BoxFuture<'static, ()>> = {
            let mut s = lock(&self.state);
            s.on_advance = None;
            s.next_event = None;
            std::mem::take(&mut s.tasks)
                .into_values()
                .filter_map(|t| t.future)
                .collect()
        };
        drop(doomed);
    }

    /// Preemptions so far.
    pub(crate) fn preemptions(&self) -> u64 {
        lock(&self.state).preemptions
    }

    /// A seeded random number, for whoever needs one (the world's choices).
    pub(crate) fn random(&self) -> u64 {
        lock(&self.state).rng.next_u64()
    }

    /// Polls one ready task (of an owner that is not paused), chosen by the seeded RNG.
    /// Returns false if none is ready.
    pub(crate) fn poll_one(&self) -> bool {
        let (id, mut future) = {
            let mut ready = lock(&self.ready.0);
            let mut s = lock(&self.state);
            // Forget tasks that are gone; keep paused ones ready for later.
            ready.retain(|id| s.tasks.contains_key(id));
            let runnable: Vec<TaskId> = ready
                .iter()
                .copied()
                .filter(|id| {
                    let owner = s.tasks[id].owner;
                    !s.paused.contains(&owner) && s.descheduled.is_none_or(|d| d.owner != owner)
                })
                .collect();
            if runnable.is_empty() {
                return false;
            }
            let pick = runnable[(s.rng.next_u64() % runnable.len() as u64) as usize];
            ready.remove(&pick);
            s.polls += 1;
            s.current = Some(s.tasks[&pick].owner);
            let Some(future) = s.tasks.get_mut(&pick).and_then(|t| t.future.take()) else {
                return true;
            };
            (pick, future)
        };
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            ready: self.ready.clone(),
        }));
        let mut cx = Context::from_waker(&waker);
        let polled =
            std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut future).poll(&mut cx)));
        let done = match polled {
            Ok(poll) => poll.is_ready(),
            // Crashed while descheduled mid-poll: what is left of it is dropped below.
            Err(payload) if payload.is::<Killed>() => true,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        let mut s = lock(&self.state);
        s.current = None;
        if done {
            s.tasks.remove(&id);
            drop(s);
            drop(future);
        } else if let Some(task) = s.tasks.get_mut(&id) {
            task.future = Some(future);
        } else {
            // Killed while it ran (it crashed its own node): drop it now.
            drop(s);
            drop(future);
        }
        true
    }

    /// The node descheduled mid-poll, if any.
    #[cfg(test)]
    pub(crate) fn descheduled(&self) -> Option<Owner> {
        lock(&self.state).descheduled.map(|d| d.owner)
    }

    /// Tasks alive, per owner.
    #[cfg(test)]
    pub(crate) fn tasks_of(&self, owner: Owner) -> usize {
        lock(&self.state)
            .tasks
            .values()
            .filter(|t| t.owner == owner)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::Poll;

    /// A future that completes at `deadline`, registering a timer with the executor.
    struct Sleep {
        exec: Executor,
        deadline: SimTime,
        key: Option<TimerKey>,
    }

    impl Future for Sleep {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.exec.now() >= self.deadline {
                return Poll::Ready(());
            }
            let key = self.exec.set_timer(self.key, self.deadline, cx.waker());
            self.key = Some(key);
            Poll::Pending
        }
    }

    fn run(exec: &Executor) {
        loop {
            while exec.poll_one() {}
            match exec.next_timer() {
                Some(t) => exec.advance_to(t),
                None => return,
            }
        }
    }

    fn trace(seed: u64) -> Vec<u64> {
        let exec = Executor::new(seed);
        let log = Arc::new(Mutex::new(Vec::new()));
        for i in 0..20u64 {
            let (exec2, log) = (exec.clone(), log.clone());
            exec.spawn(Owner::Node((i % 3) as usize), async move {
                for step in 0..3 {
                    let deadline = exec2.now() + (i % 4) * 1_000;
                    Sleep {
                        exec: exec2.clone(),
                        deadline,
                        key: None,
                    }
                    .await;
                    lock(&log).push(i * 10 + step);
                }
            });
        }
        run(&exec);
        lock(&log).clone()
    }

    #[test]
    fn one_seed_one_schedule() {
        assert_eq!(trace(1), trace(1));
        assert_ne!(trace(1), trace(2), "the seed picks among ready tasks");
        assert_eq!(trace(1).len(), 60);
    }

    /// Polls a node task that "reads its clock" (calls `maybe_preempt`) in a loop, with a
    /// stop armed: the stop lands mid-poll, the world runs meanwhile, and a crash during
    /// the stop unwinds the rest of the poll.
    #[test]
    fn a_stop_mid_poll_lets_others_run_and_a_crash_unwinds_it() {
        for kill in [false, true] {
            let exec = Executor::new(5);
            let world_ticks = Arc::new(AtomicU64::new(0));
            // (time before the clock read, after it, world ticks seen across it)
            let reads = Arc::new(Mutex::new(Vec::<(u64, u64, u64)>::new()));
            {
                let (exec2, ticks, reads) = (exec.clone(), world_ticks.clone(), reads.clone());
                exec.spawn(Owner::Node(0), async move {
                    for _ in 0..20 {
                        let (t0, w0) = (exec2.now(), ticks.load(Ordering::SeqCst));
                        exec2.maybe_preempt(Owner::Node(0));
                        let (t1, w1) = (exec2.now(), ticks.load(Ordering::SeqCst));
                        lock(&reads).push((t0, t1, w1 - w0));
                        let deadline = exec2.now() + 1_000;
                        Sleep {
                            exec: exec2.clone(),
                            deadline,
                            key: None,
                        }
                        .await;
                    }
                });
            }
            let killed = Arc::new(AtomicU64::new(0));
            {
                let (exec2, ticks, killed) = (exec.clone(), world_ticks.clone(), killed.clone());
                exec.spawn(Owner::World, async move {
                    for _ in 0..1_000u64 {
                        let deadline = exec2.now() + 100;
                        Sleep {
                            exec: exec2.clone(),
                            deadline,
                            key: None,
                        }
                        .await;
                        ticks.fetch_add(1, Ordering::SeqCst);
                        if kill
                            && killed.load(Ordering::SeqCst) == 0
                            && exec2.descheduled() == Some(Owner::Node(0))
                        {
                            exec2.kill(Owner::Node(0));
                            killed.store(1, Ordering::SeqCst);
                        }
                    }
                });
            }
            exec.arm_stop(Owner::Node(0), 50_000);
            run(&exec);
            let reads = lock(&reads).clone();
            if kill {
                // Killed during its stop (armed within its first 8 reads): the read that
                // stopped never returned, nor did any after it.
                assert_eq!(killed.load(Ordering::SeqCst), 1, "killed while stopped");
                assert!(
                    reads.len() < 8,
                    "the poll went on after the crash: {reads:?}"
                );
                assert!(reads.iter().all(|r| r.1 - r.0 < 50_000), "{reads:?}");
                assert_eq!(exec.tasks_of(Owner::Node(0)), 0);
            } else {
                assert_eq!(reads.len(), 20);
                let stopped: Vec<_> = reads.iter().filter(|r| r.1 - r.0 >= 50_000).collect();
                assert_eq!(stopped.len(), 1, "one stop: {reads:?}");
                assert!(
                    stopped[0].2 >= 400,
                    "the world ran during the stop: {stopped:?}"
                );
            }
        }
    }

    #[test]
    fn paused_owners_wait_and_killed_ones_vanish() {
        let exec = Executor::new(3);
        let count = Arc::new(AtomicU64::new(0));
        for owner in [Owner::Node(0), Owner::Node(1)] {
            let (exec2, count) = (exec.clone(), count.clone());
            exec.spawn(owner, async move {
                loop {
                    let deadline = exec2.now() + 1_000;
                    Sleep {
                        exec: exec2.clone(),
                        deadline,
                        key: None,
                    }
                    .await;
                    count.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        exec.pause(Owner::Node(0));
        for _ in 0..10 {
            while exec.poll_one() {}
            let t = exec.next_timer().unwrap();
            exec.advance_to(t);
        }
        while exec.poll_one() {}
        assert_eq!(
            count.load(Ordering::SeqCst),
            10,
            "only the running owner ticked"
        );
        exec.kill(Owner::Node(1));
        assert_eq!(exec.tasks_of(Owner::Node(1)), 0);
        exec.resume(Owner::Node(0));
        while exec.poll_one() {}
        assert_eq!(exec.tasks_of(Owner::Node(0)), 1);
    }
}
