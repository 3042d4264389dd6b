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

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
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
    /// Per million clock reads by a node: the node is preempted right after the read.
    preempt_ppm: u64,
    preemptions: u64,
    /// When each owner was last paused, resumed, killed or preempted.
    disturbed: BTreeMap<Owner, SimTime>,
    /// The owner of the task being polled.
    current: Option<Owner>,
}

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

    /// Makes a node's task lose the processor, now and then, right after it reads its
    /// clock (`per_million` of the reads): time moves on while it is stopped mid-poll, and
    /// what arrives meanwhile waits in its inbox, as when the OS deschedules a thread.
    pub(crate) fn set_preemption(&self, per_million: u64) {
        lock(&self.state).preempt_ppm = per_million;
    }

    /// Called by a node's clock read: maybe lose the processor for a while.
    pub(crate) fn maybe_preempt(&self) {
        let jump = {
            let mut s = lock(&self.state);
            if s.preempt_ppm == 0 || s.rng.next_u64() % 1_000_000 >= s.preempt_ppm {
                return;
            }
            s.preemptions += 1;
            let (now, owner) = (s.now, s.current);
            if let Some(owner) = owner {
                s.disturbed.insert(owner, now);
            }
            // 0.1 to 30 ms.
            100_000 + s.rng.next_u64() % 30_000_000
        };
        let to = self.now() + jump;
        self.advance_to(to);
    }

    /// When `owner` was last paused, resumed, killed or preempted.
    pub(crate) fn last_disturbed(&self, owner: Owner) -> Option<SimTime> {
        lock(&self.state).disturbed.get(&owner).copied()
    }

    fn disturb(s: &mut State, owner: Owner) {
        let now = s.now;
        s.disturbed.insert(owner, now);
    }

    /// Drops every task (the end of a run), and the hook, so nothing keeps the run alive.
    pub(crate) fn shut_down(&self) {
        let doomed: Vec<BoxFuture<'static, ()>> = {
            let mut s = lock(&self.state);
            s.on_advance = None;
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
                .filter(|id| !s.paused.contains(&s.tasks[id].owner))
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
        let done = Pin::new(&mut future).poll(&mut cx).is_ready();
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
