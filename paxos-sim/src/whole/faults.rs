//! Faults of the whole-node simulation, injected during storms and undone for calms.
//!
//! A storm injects, at random moments: crashes (some while the node is a candidate paging
//! through phase 1, some of the node furthest behind, in the middle of its catch-up),
//! restarts, crash loops (several short lives in a row), suspensions (the process stops;
//! its clock keeps counting, as the runtime contract requires) between two polls or in the
//! middle of one, right after the node read its clock (the leader half the time, and half
//! of those with its inbound links cut too), partitions (one node cut off, one-way links,
//! a bridge node between two halves, a split) lasting from a millisecond to minutes, bursts
//! of loss and duplication, and late echoes (a message delivered again up to 20 s later;
//! Forwards most often). A node may go down for good, and one may come back with an empty disk
//! (then it never votes): together at most a minority, so a majority can always serve
//! once the storm ends.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use paxos_core::Role;

use super::NodeBug;
use super::executor::{Owner, SimTime};
use super::net::SimNet;
use super::workload::Shared;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters of what was injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Crashes (kill and restart later).
    pub crashes: u64,
    /// Crashes of a node that was running phase 1.
    pub crashes_in_phase1: u64,
    /// Crashes of a node catching up (far behind the leader).
    pub crashes_catching_up: u64,
    /// Suspensions (SIGSTOP-like) between two polls.
    pub pauses: u64,
    /// Suspensions that land in the middle of a poll, right after a clock read.
    pub mid_poll_stops: u64,
    /// Partitions made.
    pub partitions: u64,
    /// Partitions that lasted more than ten seconds.
    pub long_partitions: u64,
    /// Crash loops (a node restarted several times in a row).
    pub crash_loops: u64,
    /// Nodes that went down for good.
    pub down_for_good: u64,
    /// Nodes that came back with an empty disk.
    pub wipes: u64,
}

/// One partition: (the storm's generation, its id, the directed links it blocks).
type Partition = (u64, u64, BTreeSet<(usize, usize)>);

/// The fault state of a run.
pub(crate) struct Faults {
    pub(crate) net: SimNet,
    /// Active partitions: (generation, id, blocked directed links).
    partitions: Vec<Partition>,
    next_id: u64,
    /// Bumped at every calm: undo tasks of an older storm do nothing.
    pub(crate) generation: u64,
    /// Nodes down for good or without a vote: they count against the minority budget.
    pub(crate) impaired_for_good: BTreeSet<usize>,
    pub(crate) stats: FaultStats,
    pub(crate) bug: Option<NodeBug>,
}

impl Faults {
    pub(crate) fn new(net: SimNet, bug: Option<NodeBug>) -> Self {
        Self {
            net,
            partitions: Vec::new(),
            next_id: 0,
            generation: 0,
            impaired_for_good: BTreeSet::new(),
            stats: FaultStats::default(),
            bug,
        }
    }

    fn apply_partitions(&self) {
        let blocked = self
            .partitions
            .iter()
            .flat_map(|(_, _, links)| links.iter().copied())
            .collect();
        self.net.set_blocked(blocked);
    }

    fn add_partition(&mut self, links: BTreeSet<(usize, usize)>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.partitions.push((self.generation, id, links));
        self.apply_partitions();
        self.stats.partitions += 1;
        id
    }

    fn remove_partition(&mut self, id: u64) {
        self.partitions.retain(|(_, p, _)| *p != id);
        self.apply_partitions();
    }

    /// Undoes every temporary fault: the calm begins.
    pub(crate) fn heal(&mut self, shared: &Shared) {
        self.generation += 1;
        self.partitions.clear();
        self.apply_partitions();
        self.net.set_loss(0, 0);
        self.net.set_echo(0);
        shared.exec.end_stops();
        let mut cluster = lock(&shared.cluster);
        cluster.set_fsync_faults(false);
        for i in 0..cluster.len() {
            if cluster.slots[i].paused {
                cluster.resume(i);
            }
            let down_for_good = self.impaired_for_good.contains(&i) && !cluster.slots[i].wiped;
            if !cluster.slots[i].up && !down_for_good {
                cluster.start(i);
            }
        }
    }
}

/// A duration from a millisecond to minutes: mostly short, sometimes long.
fn duration(shared: &Shared, long_ok: bool) -> Duration {
    let r = shared.exec.random() % 100;
    let ms = match r {
        0..=59 => 1 + shared.exec.random() % 300,
        60..=91 => 300 + shared.exec.random() % 4_700,
        _ if long_ok => 10_000 + shared.exec.random() % 110_000,
        _ => 300 + shared.exec.random() % 4_700,
    };
    Duration::from_millis(ms)
}

/// Injects faults until `until` (simulated time). Undo actions are spawned as tasks that
/// do nothing once a calm has begun.
pub(crate) async fn storm(
    shared: Arc<Shared>,
    faults: Arc<Mutex<Faults>>,
    until: SimTime,
    long_ok: bool,
) {
    let n = lock(&shared.cluster).len();
    let minority = (n - 1) / 2;
    lock(&shared.cluster).set_fsync_faults(true);
    // One message in 5,000 comes again, much later.
    lock(&faults).net.set_echo(200);
    while shared.exec.now() < until {
        let gap = Duration::from_millis(1 + shared.exec.random() % 400);
        shared.rt.sleep(gap).await;
        if shared.exec.now() >= until {
            break;
        }
        reap(&shared, &faults);
        let bug = lock(&faults).bug;
        let mut action = shared.exec.random() % 100;
        // A teeth run makes the fault its bug needs common: crashes for a store that acks
        // before it syncs, wipes for empty disks that vote.
        match bug {
            Some(NodeBug::AckBeforeSync) if action >= 40 && action % 2 == 0 => action = 0,
            Some(NodeBug::EmptyDiskVotes) if action >= 40 && action % 3 == 0 => action = 20,
            _ => {}
        }
        let target = (shared.exec.random() % n as u64) as usize;
        let d = duration(&shared, long_ok);
        let generation = lock(&faults).generation;
        match action {
            // Crash and restart later.
            0..=19 => {
                let target = pick_crash_target(&shared, target);
                let crashed = {
                    let mut cluster = lock(&shared.cluster);
                    let ok = cluster.slots[target].up;
                    if ok {
                        let status = cluster.handle(target).map(|h| h.status());
                        let leader_commit = (0..n)
                            .filter_map(|i| cluster.handle(i))
                            .map(|h| h.status())
                            .filter(|s| s.role == Role::Leader)
                            .map(|s| s.commit.0)
                            .max();
                        let mut f = lock(&faults);
                        if status.as_ref().is_some_and(|s| s.role == Role::Candidate) {
                            f.stats.crashes_in_phase1 += 1;
                        }
                        if let (Some(s), Some(lc)) = (status, leader_commit) {
                            if lc > s.commit.0 + 32 {
                                f.stats.crashes_catching_up += 1;
                            }
                        }
                        f.stats.crashes += 1;
                        cluster.crash(target);
                    }
                    ok
                };
                if crashed {
                    let (shared2, faults2) = (shared.clone(), faults.clone());
                    spawn_later(&shared, d, move || {
                        let f = lock(&faults2);
                        if f.generation == generation && !f.impaired_for_good.contains(&target) {
                            let mut cluster = lock(&shared2.cluster);
                            if !cluster.slots[target].up {
                                cluster.start(target);
                            }
                        }
                    });
                }
            }
            // Down for good, or back with an empty disk (no vote): within the minority.
            20..=22 => {
                let mut f = lock(&faults);
                // With its bug, a wiped node votes: it is not impaired, and may be wiped
                // again.
                let votes = bug == Some(NodeBug::EmptyDiskVotes);
                if votes
                    || (f.impaired_for_good.len() < minority
                        && !f.impaired_for_good.contains(&target))
                {
                    if !votes {
                        f.impaired_for_good.insert(target);
                    }
                    let mut cluster = lock(&shared.cluster);
                    if !votes && shared.exec.random() % 2 == 0 {
                        f.stats.down_for_good += 1;
                        if cluster.slots[target].up {
                            cluster.crash(target);
                        }
                    } else {
                        f.stats.wipes += 1;
                        cluster.wipe(target);
                        drop(cluster);
                        let (shared2, faults2) = (shared.clone(), faults.clone());
                        spawn_later(&shared, d, move || {
                            let _f = lock(&faults2);
                            let mut cluster = lock(&shared2.cluster);
                            if !cluster.slots[target].up {
                                cluster.start(target);
                            }
                        });
                    }
                }
            }
            // Suspend (SIGSTOP, VM suspend), the leader half the time: between two polls,
            // or in the middle of one, right after the node reads its clock.
            23..=39 => {
                let leader = leader_of(&shared);
                let target = match leader {
                    Some(l) if shared.exec.random() % 2 == 0 => l,
                    _ => target,
                };
                if shared.exec.random() % 2 == 0 {
                    let up = lock(&shared.cluster).slots[target].up;
                    if up {
                        // Long enough, mostly, for the others to elect a new leader.
                        let d = Duration::from_millis(50 + shared.exec.random() % 3_000);
                        shared
                            .exec
                            .arm_stop(Owner::Node(target), d.as_nanos() as u64);
                        lock(&faults).stats.mid_poll_stops += 1;
                        // Mostly, a stopped leader's inbound links fail as well (a paused
                        // VM's network): it will not hear of a new leader when it wakes.
                        if Some(target) == leader && shared.exec.random() % 3 != 0 {
                            let links = (0..n).filter(|&j| j != target).map(|j| (j, target));
                            let id = lock(&faults).add_partition(links.collect());
                            let faults2 = faults.clone();
                            spawn_later(&shared, d, move || lock(&faults2).remove_partition(id));
                        }
                    }
                    continue;
                }
                let freeze = lock(&faults).bug == Some(NodeBug::ClockStopsWhenSuspended);
                let paused = {
                    let mut cluster = lock(&shared.cluster);
                    let ok = cluster.slots[target].up && !cluster.slots[target].paused;
                    if ok {
                        let until = shared.exec.now() + d.as_nanos() as u64;
                        cluster.pause(target, freeze.then_some(until));
                        lock(&faults).stats.pauses += 1;
                    }
                    ok
                };
                if paused {
                    let (shared2, faults2) = (shared.clone(), faults.clone());
                    spawn_later(&shared, d, move || {
                        let _f = lock(&faults2);
                        let mut cluster = lock(&shared2.cluster);
                        if cluster.slots[target].paused {
                            cluster.resume(target);
                        }
                    });
                }
            }
            // Partitions.
            40..=84 => {
                let links = partition_links(&shared, n, target);
                let id = {
                    let mut f = lock(&faults);
                    if d > Duration::from_secs(10) {
                        f.stats.long_partitions += 1;
                    }
                    f.add_partition(links)
                };
                let faults2 = faults.clone();
                spawn_later(&shared, d, move || lock(&faults2).remove_partition(id));
            }
            // A crash loop (a supervisor restarting a node that keeps dying): a few short
            // lives in a row, each long enough for some of its clients' writes.
            85..=89 => {
                let skip = {
                    let f = lock(&faults);
                    f.impaired_for_good.contains(&target)
                };
                if !skip {
                    lock(&faults).stats.crash_loops += 1;
                    let (shared2, faults2) = (shared.clone(), faults.clone());
                    shared.exec.spawn(Owner::World, async move {
                        crash_loop(shared2, faults2, target, generation).await;
                    });
                }
            }
            // Loss and duplication burst.
            _ => {
                let loss = (shared.exec.random() % 200_000) as u32;
                let dup = (shared.exec.random() % 100_000) as u32;
                let net = lock(&faults).net.clone();
                net.set_loss(loss, dup);
                spawn_later(&shared, d, move || net.set_loss(0, 0));
            }
        }
    }
}

/// Crashes and restarts `target` 6 to 15 times, each life 50 to 450 ms, until a calm
/// begins (then it is left up).
async fn crash_loop(
    shared: Arc<Shared>,
    faults: Arc<Mutex<Faults>>,
    target: usize,
    generation: u64,
) {
    let lives = 6 + shared.exec.random() % 10;
    for _ in 0..lives {
        {
            let f = lock(&faults);
            if f.generation != generation || f.impaired_for_good.contains(&target) {
                return;
            }
            let mut cluster = lock(&shared.cluster);
            if cluster.slots[target].up {
                drop(f);
                lock(&faults).stats.crashes += 1;
                cluster.crash(target);
            }
        }
        let down = Duration::from_millis(5 + shared.exec.random() % 50);
        shared.rt.sleep(down).await;
        {
            let f = lock(&faults);
            if f.generation != generation || f.impaired_for_good.contains(&target) {
                return;
            }
            let mut cluster = lock(&shared.cluster);
            if !cluster.slots[target].up {
                cluster.start(target);
            }
        }
        let life = Duration::from_millis(50 + shared.exec.random() % 400);
        shared.rt.sleep(life).await;
    }
}

/// The node that believes it leads, if any (the first one, if two do).
fn leader_of(shared: &Shared) -> Option<usize> {
    let cluster = lock(&shared.cluster);
    (0..cluster.len()).find(|&i| {
        cluster
            .handle(i)
            .is_some_and(|h| h.status().role == Role::Leader)
    })
}

/// Prefer a candidate (crash during phase 1) or the node furthest behind (crash during
/// catch-up) a quarter of the time each; a quarter, the leader while some node is far
/// behind (the laggard may then run for leader with a stale log).
fn pick_crash_target(shared: &Shared, fallback: usize) -> usize {
    let cluster = lock(&shared.cluster);
    let statuses: Vec<(usize, paxos_node::NodeStatus)> = (0..cluster.len())
        .filter_map(|i| cluster.handle(i).map(|h| (i, h.status())))
        .collect();
    let behind = statuses.iter().min_by_key(|(_, s)| s.commit);
    let leader = statuses.iter().find(|(_, s)| s.role == Role::Leader);
    match shared.exec.random() % 4 {
        0 => {
            if let Some((i, _)) = statuses.iter().find(|(_, s)| s.role == Role::Candidate) {
                return *i;
            }
            if let Some((i, _)) = behind {
                return *i;
            }
        }
        1 => {
            if let Some((i, _)) = behind {
                return *i;
            }
        }
        2 => {
            if let (Some((l, ls)), Some((_, bs))) = (leader, behind) {
                if ls.commit.0 > bs.commit.0 + 16 {
                    return *l;
                }
            }
        }
        _ => {}
    }
    fallback
}

/// The directed links a partition blocks.
fn partition_links(shared: &Shared, n: usize, target: usize) -> BTreeSet<(usize, usize)> {
    let mut links = BTreeSet::new();
    let others = (0..n).filter(|&j| j != target);
    match shared.exec.random() % 4 {
        // Cut off one node.
        0 => {
            for j in others {
                links.insert((target, j));
                links.insert((j, target));
            }
        }
        // One way: it hears nothing (but is heard), or the reverse.
        1 => {
            let inbound = shared.exec.random() % 2 == 0;
            for j in others {
                links.insert(if inbound { (j, target) } else { (target, j) });
            }
        }
        // A bridge: two halves that only `target` connects.
        2 => {
            let rest: Vec<usize> = others.collect();
            let (a, b) = rest.split_at(rest.len() / 2);
            for &x in a {
                for &y in b {
                    links.insert((x, y));
                    links.insert((y, x));
                }
            }
        }
        // A split: a random minority apart.
        _ => {
            let size = 1 + (shared.exec.random() % ((n as u64 - 1) / 2).max(1)) as usize;
            let minority: BTreeSet<usize> = (0..size).map(|k| (target + k) % n).collect();
            for &x in &minority {
                for y in (0..n).filter(|y| !minority.contains(y)) {
                    links.insert((x, y));
                    links.insert((y, x));
                }
            }
        }
    }
    links
}

/// Runs `undo` after `d`, on a world task.
fn spawn_later(shared: &Shared, d: Duration, undo: impl FnOnce() + Send + 'static) {
    let rt = shared.rt.clone();
    shared.exec.spawn(Owner::World, async move {
        rt.sleep(d).await;
        undo();
    });
}

/// Nodes that stopped on an injected fsync error restart after a while (a supervisor).
fn reap(shared: &Arc<Shared>, faults: &Arc<Mutex<Faults>>) {
    let stopped = lock(&shared.cluster).reap_stopped();
    let generation = lock(faults).generation;
    for i in stopped {
        let (shared2, faults2) = (shared.clone(), faults.clone());
        let d = Duration::from_millis(10 + shared.exec.random() % 500);
        spawn_later(shared, d, move || {
            let f = lock(&faults2);
            if f.generation == generation && !f.impaired_for_good.contains(&i) {
                let mut cluster = lock(&shared2.cluster);
                if !cluster.slots[i].up {
                    cluster.start(i);
                }
            }
        });
    }
}

pub(crate) fn reap_now(shared: &Arc<Shared>, faults: &Arc<Mutex<Faults>>) {
    reap(shared, faults);
}
