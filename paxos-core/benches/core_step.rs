//! One core step on the leader: handle an Accepted from a follower and produce the Ready
//! that commits the slot (16 commands of 64 B), with no I/O at all.
//!
//! Three replicas are driven by hand as the step tests do (`replica/tests.rs`): replica 1
//! is elected, then each iteration proposes 16 commands on it, hands its Accept to both
//! followers and takes their Accepteds. Only the leader's handling of the first Accepted
//! (the one that makes a quorum) and its `poll_ready`/`advance` are timed.
//!
//! `cargo bench -p paxos-core --bench core_step`

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use paxos_core::{Config, Instant, Message, NodeId, RecoveredState, Replica, Role};

const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

/// Three replicas on a simulated clock, with replica 1 elected and its first slot chosen.
struct Cluster {
    replicas: Vec<Replica>,
    now: Instant,
}

impl Cluster {
    fn new() -> Self {
        let replicas = IDS
            .iter()
            .map(|&id| {
                let mut config = Config::new(id, IDS.to_vec());
                config.rng_seed = Some([id.0 as u8; 32]);
                Replica::new(config, RecoveredState::default(), Instant::ZERO).unwrap()
            })
            .collect();
        let mut cluster = Self {
            replicas,
            now: Instant::ZERO,
        };
        let deadline = cluster.replicas[0]
            .poll_timeout()
            .expect("an election timer");
        cluster.now = deadline;
        cluster.replicas[0].handle_timeout(deadline);
        cluster.pump();
        assert_eq!(cluster.replicas[0].status().role, Role::Leader);
        cluster
    }

    fn tick(&mut self) {
        self.now = self.now + Duration::from_micros(10);
    }

    /// Takes replica `i`'s Readies (as if persisted at once) and returns their messages.
    fn drain(&mut self, i: usize) -> Vec<(NodeId, NodeId, Message)> {
        let mut out = Vec::new();
        while let Some(ready) = self.replicas[i].poll_ready() {
            self.replicas[i].advance(ready.id);
            out.extend(
                ready
                    .messages
                    .into_iter()
                    .map(|e| (IDS[i], e.to, e.message)),
            );
        }
        out
    }

    /// Delivers messages until none is left.
    fn pump(&mut self) {
        let mut queue: Vec<_> = (0..IDS.len()).flat_map(|i| self.drain(i)).collect();
        while !queue.is_empty() {
            self.tick();
            for (from, to, message) in std::mem::take(&mut queue) {
                let i = index(to);
                self.replicas[i].handle_message(self.now, from, message);
                queue.extend(self.drain(i));
            }
        }
    }

    /// Proposes 16 commands of 64 B on the leader and brings both followers' Accepteds
    /// back, without handing them to the leader yet.
    fn round_until_accepted(&mut self, payload: &Bytes) -> Vec<(NodeId, Message)> {
        self.tick();
        for _ in 0..16 {
            self.replicas[0].propose(self.now, payload.clone()).unwrap();
        }
        let accepts = self.drain(0);
        let mut replies = Vec::new();
        for (from, to, message) in accepts {
            let i = index(to);
            self.replicas[i].handle_message(self.now, from, message);
            for (from, _, reply) in self.drain(i) {
                if matches!(reply, Message::Accepted(_)) {
                    replies.push((from, reply));
                }
            }
        }
        replies
    }
}

fn index(id: NodeId) -> usize {
    IDS.iter().position(|&n| n == id).expect("a member")
}

fn core_step(c: &mut Criterion) {
    let mut cluster = Cluster::new();
    let payload = Bytes::from(vec![0xA5; 64]);
    let mut group = c.benchmark_group("core_step");
    group.throughput(Throughput::Elements(16));
    group.bench_function("leader_handles_accepted_16x64B", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let mut replies = cluster.round_until_accepted(&payload);
                assert_eq!(replies.len(), 2, "both followers accept");
                let (from, accepted) = replies.remove(0);
                cluster.tick();
                let now = cluster.now;
                let leader = &mut cluster.replicas[0];
                let start = StdInstant::now();
                leader.handle_message(now, from, accepted);
                let ready = leader.poll_ready().expect("a Ready");
                leader.advance(ready.id);
                spent += start.elapsed();
                assert_eq!(ready.committed.len(), 1, "the slot is chosen");
                // The second Accepted and the followers' Decides, untimed.
                for (from, accepted) in replies {
                    leader.handle_message(now, from, accepted);
                }
                cluster.pump();
            }
            spent
        });
    });
    group.finish();
}

criterion_group!(benches, core_step);
criterion_main!(benches);
