//! The simulated network and the [`Transport`] each node gets on it.
//!
//! It behaves as the TCP transport does where the protocol can tell: every message is
//! framed with the core's codec under the same frame limit (a message that cannot be
//! framed is dropped, and counted, as TCP drops it), each directed link queues a bounded
//! number of messages in flight (beyond it, messages are dropped, as TCP's full per-peer
//! queue drops them), and a message to a node that is down is lost. Beyond TCP it also
//! loses, duplicates and reorders, which the protocol must tolerate anyway. Latency grows
//! with the frame's size.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use async_trait::async_trait;
use bytes::BytesMut;
use paxos_core::codec::{decode_frame, encode_frame};
use paxos_core::{Ballot, Envelope, Inbound, Message, NodeId, Transport, TransportError};

use super::executor::{Executor, Owner, SimTime};

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to `send`.
    pub sent: u64,
    /// Messages delivered (duplicates included).
    pub delivered: u64,
    /// Dropped by random loss.
    pub lost: u64,
    /// Dropped by a partition or because the destination was down.
    pub cut: u64,
    /// Dropped because the link's queue was full.
    pub queue_full: u64,
    /// Dropped because the message could not be framed under the limit. The core must
    /// never produce one: a violation.
    pub oversized: u64,
    /// Frames that failed to decode (a codec bug): a violation.
    pub undecodable: u64,
    /// Accepts beyond the sender's pipelining window: a violation.
    pub over_window: u64,
    /// Messages delivered again much later (late echoes).
    pub echoes: u64,
    /// Largest frame sent, in bytes.
    pub largest_frame: u64,
    /// Most messages ever in flight on one link.
    pub deepest_queue: u64,
}

/// Knobs for one run's network.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NetConfig {
    /// The frame limit the transport enforces (length prefix excluded), as TCP's.
    pub(crate) max_frame_bytes: usize,
    /// The limit the transport *reports* through `Transport::max_frame_bytes`. Equal to
    /// `max_frame_bytes`, unless a run lies on purpose (a teeth test).
    pub(crate) reported_frame_bytes: usize,
    /// Messages in flight per directed link, as TCP's per-peer queue.
    pub(crate) max_queue: usize,
    /// Per-million chances per message.
    pub(crate) loss_ppm: u32,
    pub(crate) dup_ppm: u32,
    /// Per-million chance that a message is also delivered again, much later (0.5 s to
    /// 20 s): the late echo an asynchronous network may produce, which the core must
    /// ignore or handle (a late duplicate Forward must not apply twice).
    pub(crate) echo_ppm: u32,
    /// Base latency range, nanoseconds.
    pub(crate) latency_min: u64,
    pub(crate) latency_max: u64,
    /// Nanoseconds per byte (bandwidth).
    pub(crate) ns_per_byte: u64,
    /// The replicas' `election_timeout_min`, for the election check.
    pub(crate) election_min: u64,
    /// The replicas' `max_inflight_slots`, for the pipelining window check.
    pub(crate) window: u64,
}

struct Inbox {
    queue: VecDeque<Inbound>,
    waker: Option<Waker>,
    up: bool,
}

struct State {
    cfg: NetConfig,
    inboxes: Vec<Inbox>,
    /// Deliveries by time: (at, seq) -> (from, to, frame, a late echo).
    flight: BTreeMap<(SimTime, u64), (usize, usize, BytesMut, bool)>,
    /// Messages in flight per directed link.
    depth: BTreeMap<(usize, usize), u64>,
    next_seq: u64,
    /// Directed links that drop everything: (from, to).
    blocked: BTreeSet<(usize, usize)>,
    stats: NetStats,
    /// Recent violations (oversized or undecodable frames, disruptive elections).
    violations: Vec<String>,
    /// Per receiver, its latest Accepts from their ballot's owner: (when, from, ballot).
    accepts: Vec<VecDeque<(SimTime, usize, Ballot)>>,
    /// (sender, ballot) of every Prepare seen, to check only the first of a ballot.
    prepared: BTreeSet<(usize, Ballot)>,
    /// Disruptive elections seen (violations).
    disruptions: u64,
}

/// The network. Clones share it.
#[derive(Clone)]
pub(crate) struct SimNet {
    state: Arc<Mutex<State>>,
    exec: Executor,
    ids: Vec<NodeId>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimNet {
    pub(crate) fn new(exec: Executor, ids: Vec<NodeId>, cfg: NetConfig) -> Self {
        let inboxes = ids
            .iter()
            .map(|_| Inbox {
                queue: VecDeque::new(),
                waker: None,
                up: false,
            })
            .collect();
        Self {
            state: Arc::new(Mutex::new(State {
                cfg,
                inboxes,
                flight: BTreeMap::new(),
                depth: BTreeMap::new(),
                next_seq: 0,
                blocked: BTreeSet::new(),
                stats: NetStats::default(),
                violations: Vec::new(),
                accepts: vec![VecDeque::new(); ids.len()],
                prepared: BTreeSet::new(),
                disruptions: 0,
            })),
            exec,
            ids,
        }
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.ids.iter().position(|&n| n == id)
    }

    /// A transport for node `i`'s new incarnation. Its inbox starts empty.
    pub(crate) fn attach(&self, i: usize) -> SimTransport {
        let mut s = lock(&self.state);
        s.inboxes[i] = Inbox {
            queue: VecDeque::new(),
            waker: None,
            up: true,
        };
        SimTransport {
            net: self.clone(),
            me: i,
        }
    }

    /// Node `i` is down: what it had received and what is sent to it is lost.
    pub(crate) fn detach(&self, i: usize) {
        let mut s = lock(&self.state);
        s.inboxes[i].up = false;
        s.inboxes[i].queue.clear();
        s.inboxes[i].waker = None;
    }

    pub(crate) fn set_blocked(&self, blocked: BTreeSet<(usize, usize)>) {
        lock(&self.state).blocked = blocked;
    }

    pub(crate) fn set_loss(&self, loss_ppm: u32, dup_ppm: u32) {
        let mut s = lock(&self.state);
        s.cfg.loss_ppm = loss_ppm;
        s.cfg.dup_ppm = dup_ppm;
    }

    /// Late echoes on (a storm) or off (a calm). Echoes already on their way still arrive.
    pub(crate) fn set_echo(&self, echo_ppm: u32) {
        lock(&self.state).cfg.echo_ppm = echo_ppm;
    }

    pub(crate) fn stats(&self) -> NetStats {
        lock(&self.state).stats
    }

    pub(crate) fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    /// When the next delivery is due.
    pub(crate) fn next_delivery(&self) -> Option<SimTime> {
        lock(&self.state).flight.keys().next().map(|(t, _)| *t)
    }

    /// Delivers everything due by now.
    pub(crate) fn deliver_due(&self) {
        let now = self.exec.now();
        let mut wake = Vec::new();
        {
            let mut s = lock(&self.state);
            let later = s.flight.split_off(&(now + 1, 0));
            let due = std::mem::replace(&mut s.flight, later);
            for (_, (from, to, frame, echo)) in due {
                if !echo {
                    if let Some(d) = s.depth.get_mut(&(from, to)) {
                        *d = d.saturating_sub(1);
                    }
                }
                let max = s.cfg.max_frame_bytes;
                let message: Message = match decode_frame(&frame, max) {
                    Ok(Some((m, _))) => m,
                    other => {
                        s.stats.undecodable += 1;
                        s.violations
                            .push(format!("undecodable frame {from}->{to}: {other:?}"));
                        continue;
                    }
                };
                if s.blocked.contains(&(from, to)) || !s.inboxes[to].up {
                    s.stats.cut += 1;
                    continue;
                }
                s.stats.delivered += 1;
                if let Message::Accept(a) = &message {
                    if a.ballot.node == self.ids[from] {
                        let seen = &mut s.accepts[to];
                        seen.push_back((now, from, a.ballot));
                        if seen.len() > 32 {
                            seen.pop_front();
                        }
                    }
                }
                let inbox = &mut s.inboxes[to];
                inbox.queue.push_back(Inbound {
                    from: self.ids[from],
                    message,
                });
                wake.extend(inbox.waker.take());
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    /// **Elections**: a replica must not start phase 1 while a leader is in steady contact
    /// with a majority (a node that was cut off must not depose a healthy leader when it
    /// comes back; pre-vote's job). Steady contact: every member of the majority received
    /// the leader's Accept in each half of the last `election_timeout_min`. Skipped for a
    /// candidate that was itself paused, preempted or restarted within that time (its
    /// pre-vote may be that old), and not counting a member of the majority that was
    /// disturbed so within it (a restarted voter forgot the leader, and grants).
    fn check_election(&self, s: &mut State, from: usize, ballot: Ballot) {
        if !s.prepared.insert((from, ballot)) {
            return;
        }
        let now = self.exec.now();
        let e = s.cfg.election_min;
        if now < e
            || self
                .exec
                .last_disturbed(Owner::Node(from))
                .is_some_and(|t| t + e > now)
        {
            return;
        }
        let (early, late) = (now - e, now - e / 2);
        let n = self.ids.len();
        let quorum = n / 2 + 1;
        let mut leaders: BTreeSet<(usize, Ballot)> = BTreeSet::new();
        for r in 0..n {
            for &(_, l, b) in &s.accepts[r] {
                if l != from && b < ballot {
                    leaders.insert((l, b));
                }
            }
        }
        for (l, b) in leaders {
            let steady = |r: usize| {
                // A voter that was itself disturbed in the window (restarted: it forgot
                // the leader; paused: its last contact is a pause old) may grant a
                // pre-vote, as it should.
                if self
                    .exec
                    .last_disturbed(Owner::Node(r))
                    .is_some_and(|t| t + e > now)
                {
                    return false;
                }
                let seen = &s.accepts[r];
                let heard = |lo: SimTime, hi: SimTime| {
                    seen.iter()
                        .any(|&(t, x, y)| x == l && y == b && t >= lo && t < hi)
                };
                heard(early, late) && heard(late, now + 1)
            };
            let contact = 1 + (0..n).filter(|&r| r != from && r != l && steady(r)).count();
            if contact >= quorum {
                s.disruptions += 1;
                if s.violations.len() < 8 {
                    s.violations.push(format!(
                        "elections: n{} started phase 1 at ballot {ballot} while n{}, leading at {b}, \
                         was in steady contact with a majority ({contact} of {n})",
                        self.ids[from].0,
                        self.ids[l].0
                    ));
                }
                return;
            }
        }
    }

    /// **Limits**: a leader proposes only within its pipelining window: every slot of its
    /// Accept lies below the commit point it carries plus `max_inflight_slots` (also for
    /// the re-proposals of a new leader, however long the tail it found).
    fn check_window(&self, s: &mut State, from: usize, a: &paxos_core::message::Accept) {
        let end = a.first.0.saturating_add(a.values.len() as u64);
        let limit = a.commit.0.saturating_add(s.cfg.window);
        if a.values.is_empty() || end <= limit {
            return;
        }
        s.stats.over_window += 1;
        if s.violations.len() < 8 {
            s.violations.push(format!(
                "limits: n{} sent an Accept for slots {}..{end} at ballot {} with its commit \
                 point at {}: beyond its pipelining window of {} slots",
                self.ids[from].0, a.first.0, a.ballot, a.commit.0, s.cfg.window
            ));
        }
    }

    fn send_one(&self, from: usize, to: usize, message: &Message) {
        let mut s = lock(&self.state);
        s.stats.sent += 1;
        match message {
            Message::Prepare(p) => self.check_election(&mut s, from, p.ballot),
            Message::Accept(a) => self.check_window(&mut s, from, a),
            _ => {}
        }
        let mut frame = BytesMut::new();
        if let Err(e) = encode_frame(message, &mut frame, s.cfg.max_frame_bytes) {
            s.stats.oversized += 1;
            if s.violations.len() < 8 {
                s.violations.push(format!(
                    "limits: {} from n{} to n{} cannot be framed: {e}",
                    message.kind(),
                    self.ids[from].0,
                    self.ids[to].0
                ));
            }
            return;
        }
        s.stats.largest_frame = s.stats.largest_frame.max(frame.len() as u64);
        if s.blocked.contains(&(from, to)) || !s.inboxes[to].up {
            s.stats.cut += 1;
            return;
        }
        let depth = s.depth.get(&(from, to)).copied().unwrap_or(0);
        if depth >= s.cfg.max_queue as u64 {
            s.stats.queue_full += 1;
            return;
        }
        let roll = self.exec.random();
        if roll % 1_000_000 < u64::from(s.cfg.loss_ppm) {
            s.stats.lost += 1;
            return;
        }
        let copies = if (roll >> 20) % 1_000_000 < u64::from(s.cfg.dup_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let span = s.cfg.latency_max.saturating_sub(s.cfg.latency_min).max(1);
            let at = self.exec.now()
                + s.cfg.latency_min
                + self.exec.random() % span
                + s.cfg.ns_per_byte * frame.len() as u64;
            let seq = s.next_seq;
            s.next_seq += 1;
            *s.depth.entry((from, to)).or_default() += 1;
            let deepest = s.depth[&(from, to)];
            s.stats.deepest_queue = s.stats.deepest_queue.max(deepest);
            s.flight.insert((at, seq), (from, to, frame.clone(), false));
        }
        // Forwards echo 250 times as often (one in 20): a late duplicate of a client's
        // command is what at-most-once must survive.
        let weight = if matches!(message, Message::Forward(_)) {
            250
        } else {
            1
        };
        if (roll >> 40) % 1_000_000 < weight * u64::from(s.cfg.echo_ppm) {
            let at = self.exec.now() + 500_000_000 + self.exec.random() % 19_500_000_000;
            let seq = s.next_seq;
            s.next_seq += 1;
            s.stats.echoes += 1;
            s.flight.insert((at, seq), (from, to, frame, true));
        }
    }
}

/// One node's end of the network.
pub(crate) struct SimTransport {
    net: SimNet,
    me: usize,
}

#[async_trait]
impl Transport for SimTransport {
    fn send(&self, batch: Vec<Envelope>) {
        for Envelope { to, message } in batch {
            match self.net.index(to) {
                Some(to) => self.net.send_one(self.me, to, &message),
                None => lock(&self.net.state).stats.cut += 1,
            }
        }
    }

    async fn recv(&mut self, out: &mut Vec<Inbound>, max: usize) -> Result<(), TransportError> {
        let (net, me) = (&self.net, self.me);
        futures::future::poll_fn(|cx| {
            let mut s = lock(&net.state);
            let inbox = &mut s.inboxes[me];
            if inbox.queue.is_empty() {
                inbox.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = inbox.queue.len().min(max.max(1));
            out.extend(inbox.queue.drain(..n));
            Poll::Ready(Ok(()))
        })
        .await
    }

    fn max_frame_bytes(&self) -> usize {
        // What the transport claims; it enforces `cfg.max_frame_bytes` (they differ only
        // when a teeth run lies on purpose).
        #[allow(clippy::misnamed_getters)]
        let reported = lock(&self.net.state).cfg.reported_frame_bytes;
        reported
    }
}
