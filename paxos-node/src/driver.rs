//! The driver: one task that feeds a [`Replica`] its inputs and carries out its `Ready`s.
//!
//! Each cycle drains what is available (client requests, inbound messages, due timers),
//! each input bounded per cycle, then takes **one** `Ready` and handles it by its ordering
//! rule: the early messages, then one `Storage::persist` and, while it runs, one
//! `StateMachine::apply` and the answers to waiters (then, until the persist ends, inbound
//! messages and the values they choose: `Replica::poll_chosen`), then the other messages
//! through `Transport::send`, then `advance`. Proposals that arrive while a persist is
//! under way queue up and go into the next `Ready` together, so under load a batch of
//! proposals costs one persist. When a cycle made no progress, the driver sleeps until a request, a
//! message or the next deadline arrives.
//!
//! With pipelined persists (`NodeOptions::persists_in_flight` above 1, on a store that
//! [pipelines](Storage::pipelines_persists)), a Ready's persist is started and the driver
//! goes on: the next input starts the next Ready's persist behind it, and each Ready's
//! messages are sent and the Ready advanced once its persist and every earlier one are
//! durable, oldest first ([`InFlight`]).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::Poll;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{Either, select};
use paxos_core::{
    Chosen, Committed, Envelope, Inbound, Message, NodeId, PersistFuture, ProposalId,
    ProposeRefused, ReadId, ReadRefused, Ready, Replica, Slot, SnapshotFetch, StateMachine,
    Storage, Transport,
};

use crate::command;
use crate::compaction::Snapshots;
use crate::error::{CompactError, FatalError, ProposeError, ReadError};
use crate::handle::{LeaseGate, PeerContact, Request, Shared};
use crate::metrics::Counters;
use crate::options::NodeOptions;
use crate::runtime::{AsyncTimer, Runtime};
use crate::waiters::{ReadKey, ReadReply, ReadWaiter, Waiters};

/// Busy cycles in a row after which the driver yields to its executor, so that tasks
/// sharing its thread (the transport's, on a one-thread executor) are not starved.
const BUSY_CYCLES_BEFORE_YIELD: u32 = 8;

/// Bound on the sleep when nothing has a deadline (the core always has one in practice).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// Everything the driver task owns. Dropping it stops the node: see [`Drop`].
pub(crate) struct Driver {
    pub(crate) replica: Replica,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) storage: Box<dyn Storage>,
    pub(crate) state_machine: Box<dyn StateMachine>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) options: NodeOptions,
    pub(crate) requests: Receiver<Request>,
    /// Held so that `requests` never reports closed while the driver runs.
    pub(crate) _requests_open: Sender<Request>,
    pub(crate) control: Receiver<()>,
    pub(crate) _control_open: Sender<()>,
    /// The replica's clock origin: core time is nanoseconds since this instant.
    pub(crate) origin: std::time::Instant,
    pub(crate) now: paxos_core::Instant,
    pub(crate) timer: Pin<Box<dyn AsyncTimer>>,
    pub(crate) waiters: Waiters,
    /// A request taken while waiting, handled by the next cycle.
    pub(crate) stashed: Option<Request>,
    /// Reads and read barriers taken this cycle, to share one confirmation.
    pub(crate) new_reads: Vec<ReadWaiter>,
    /// Readys whose persists are under way, oldest first (pipelined persists: at most the
    /// core's `max_outstanding_readys`; always empty with a store that does not pipeline).
    pub(crate) pipeline: VecDeque<InFlight>,
    /// The core's `max_outstanding_readys`: above 1, persists are pipelined.
    pub(crate) persists_in_flight: usize,
    pub(crate) inbound: Vec<Inbound>,
    pub(crate) outputs: Vec<(ProposalId, Bytes)>,
    pub(crate) markers: Vec<ProposalId>,
    /// The leader the replica believed in at the end of the last cycle.
    pub(crate) leader: Option<NodeId>,
    pub(crate) shared: Arc<Shared>,
    /// Snapshots taken, sent and fetched (see `compaction.rs`).
    pub(crate) snapshots: Snapshots,
    /// Declared last: dropped after the transport, storage and state machine.
    pub(crate) _done: DoneSignal,
}

/// A pipelined persist under way, counted as the driver counts persists.
type Persisting = Pin<Box<dyn Future<Output = Result<(), FatalError>> + Send>>;

/// A Ready handed out with its persist started on a store that pipelines persists
/// ([`Storage::start_persist`]): applied and answered already, and what is left of it once
/// the persist (and every earlier one) is durable.
pub(crate) struct InFlight {
    id: u64,
    /// `None` once done (or if there was nothing to persist).
    store: Option<Persisting>,
    messages: Vec<Envelope>,
    aborted_reads: Vec<ReadId>,
    fetch_snapshot: Option<SnapshotFetch>,
}

impl InFlight {
    /// Whether its persist is durable, polling it once.
    fn poll_done(&mut self) -> Result<bool, FatalError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(true);
        };
        match store.as_mut().now_or_never() {
            Some(stored) => {
                stored?;
                self.store = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Marks the node terminated when dropped, after every other part of the driver.
pub(crate) struct DoneSignal(pub(crate) Arc<Shared>);

impl Drop for DoneSignal {
    fn drop(&mut self) {
        self.0.set_terminated();
    }
}

/// Runs `driver` to its end. A panic (a safety assertion of the core, or a panicking state
/// machine) is caught here, so it never unwinds into the executor; the driver records it
/// as [`FatalError::Panicked`] as it is dropped (and fails every waiter with it).
pub(crate) async fn run(driver: Driver) {
    let shared = driver.shared.clone();
    let mut task = Box::pin(AssertUnwindSafe(driver.run()).catch_unwind());
    if (&mut task).await.is_err() {
        shared.set_fatal(FatalError::Panicked);
    }
    drop(task);
}

impl Driver {
    async fn run(mut self) {
        let fatal = self.run_until_stopped().await;
        match &fatal {
            FatalError::Stopped => tracing::debug!(node = %self.replica.id(), "node stopped"),
            e => tracing::error!(node = %self.replica.id(), error = %e, "node stopped"),
        }
        self.shared.set_fatal(fatal);
    }

    async fn run_until_stopped(&mut self) -> FatalError {
        let mut busy_cycles = 0;
        loop {
            if self.shared.shutdown_requested() {
                return FatalError::Stopped;
            }
            if busy_cycles == 0 {
                if let Err(e) = self.wait().await {
                    return self.fail(e);
                }
                if self.shared.shutdown_requested() {
                    return FatalError::Stopped;
                }
            } else if busy_cycles % BUSY_CYCLES_BEFORE_YIELD == 0 {
                yield_now().await;
            }
            match self.cycle().await {
                Ok(true) => busy_cycles += 1,
                Ok(false) => busy_cycles = 0,
                Err(e) => return self.fail(e),
            }
        }
    }

    /// Records `fatal` at once, so that callers whose requests are dropped with the driver
    /// see the real reason.
    fn fail(&self, fatal: FatalError) -> FatalError {
        self.shared.set_fatal(fatal.clone());
        fatal
    }

    /// One cycle: drain inputs, fire due timers, handle at most one `Ready`. Returns
    /// whether another cycle should follow at once.
    async fn cycle(&mut self) -> Result<bool, FatalError> {
        Counters::add(&self.shared.counters.driver_cycles, 1);
        // Closed before the core hears anything: what it learns this cycle (a commit
        // point above what is applied) may leave in a message before it is applied.
        self.shared.set_lease_gate(None);
        // Time is read as each input is handed to the core, never before it arrived: a
        // lease granted from an earlier clock would end too soon, and a read checked
        // against a clock from before a pause (a SIGSTOP between the two) could be stale.
        let mut more = self.take_requests();
        more |= self.take_inbound()?;
        let now = self.tick();
        if self.replica.poll_timeout().is_some_and(|t| t <= now) {
            self.replica.handle_timeout(now);
        }
        self.waiters.expire(self.runtime.now());
        self.start_reads();
        if let Some(ready) = self.replica.poll_ready() {
            self.handle_ready(ready).await?;
            // Advancing may deliver loopback messages that make another Ready.
            more = true;
        } else if !self.pipeline.is_empty() {
            // Nothing new: wait for the oldest persist under way and finish its Ready, or,
            // with room for another persist, for new input too, whichever comes first, so
            // that the next Ready's persist is queued behind the one being synced.
            if self.pipeline.len() >= self.persists_in_flight || self.wait_oldest_or_input().await?
            {
                self.finish_oldest().await?;
            }
            more = true;
        }
        // Between two Readys: the state machine has applied exactly what the core did.
        more |= self.snapshot_work().await?;
        let applied = self.observe().applied;
        self.open_lease_gate(applied);
        Ok(more)
    }

    /// Opens the lease gate ([`NodeHandle::try_read_barrier`](crate::NodeHandle::try_read_barrier))
    /// if reads may be answered at once until the next cycle: the core allows it (leader,
    /// lease, recovered, all chosen handed out) and no Ready is outstanding, so everything
    /// handed out is applied (`applied`, the status the cycle just published).
    fn open_lease_gate(&self, applied: Slot) {
        if !self.pipeline.is_empty() {
            return;
        }
        let Some(until) = self.replica.lease_read_until() else {
            return;
        };
        self.shared.set_lease_gate(Some(LeaseGate {
            until: self.origin + Duration::from_nanos(until.as_nanos()),
            applied,
        }));
    }

    /// Sleeps until a request, an inbound message, a shutdown or the next deadline.
    async fn wait(&mut self) -> Result<(), FatalError> {
        let deadline = self.next_deadline();
        self.timer.as_mut().reset(deadline);
        let Self {
            requests,
            control,
            transport,
            inbound,
            timer,
            stashed,
            options,
            snapshots,
            ..
        } = self;
        let Snapshots {
            taking, next_piece, ..
        } = snapshots;
        // A background snapshot's next piece (none pending: the cycle took them all).
        let want_piece = next_piece.is_none();
        let mut piece = pin!(async {
            match taking {
                Some(t) if want_piece => t.pieces.recv().await.ok(),
                _ => futures::future::pending().await,
            }
        });
        let mut request = pin!(requests.recv());
        let mut shutdown = pin!(control.recv());
        let mut message = transport.recv(inbound, options.max_inbound_per_cycle);
        futures::future::poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            if let Poll::Ready(r) = request.as_mut().poll(cx) {
                // Never closed: the driver holds a sender.
                *stashed = r.ok();
                return Poll::Ready(Ok(()));
            }
            if let Poll::Ready(r) = message.as_mut().poll(cx) {
                return Poll::Ready(r.map_err(FatalError::Transport));
            }
            if let Poll::Ready(p) = piece.as_mut().poll(cx) {
                // A closed channel (the thread died) shows in the cycle's `try_recv`.
                *next_piece = p;
                return Poll::Ready(Ok(()));
            }
            timer.as_mut().poll(cx).map(Ok)
        })
        .await
    }

    /// The replica's time now; never goes backwards.
    pub(crate) fn tick(&mut self) -> paxos_core::Instant {
        tick(&*self.runtime, self.origin, &mut self.now)
    }

    fn next_deadline(&mut self) -> std::time::Instant {
        let core = self
            .replica
            .poll_timeout()
            .map(|t| self.origin + Duration::from_nanos(t.as_nanos()));
        let waiter = self.waiters.next_deadline();
        let snapshot = self.snapshot_deadline();
        let idle = self.runtime.now() + IDLE_WAKE;
        [core, waiter, snapshot]
            .into_iter()
            .flatten()
            .fold(idle, std::time::Instant::min)
    }

    /// Takes queued client requests, up to the per-cycle bound. True if it hit the bound.
    fn take_requests(&mut self) -> bool {
        let max = self.options.max_requests_per_cycle;
        let mut taken = 0;
        if let Some(request) = self.stashed.take() {
            self.take_request(request);
            taken += 1;
        }
        while taken < max {
            let Ok(request) = self.requests.try_recv() else {
                break;
            };
            self.take_request(request);
            taken += 1;
        }
        taken >= max
    }

    fn take_request(&mut self, request: Request) {
        match request {
            Request::Propose {
                command,
                deadline,
                reply,
            } => {
                if reply.is_canceled() {
                    return;
                }
                if !self.waiters.has_room(self.new_reads.len() + 1) {
                    let _ = reply.send(Err(ProposeError::Overloaded));
                    return;
                }
                let now = self.tick();
                match self.replica.propose(now, command) {
                    Ok(id) => {
                        Counters::add(&self.shared.counters.proposals, 1);
                        self.waiters.add_proposal(id, deadline, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(propose_error(e)));
                    }
                }
            }
            Request::Read(read) => {
                if read.is_canceled() {
                    return;
                }
                if !self.waiters.has_room(self.new_reads.len() + 1) {
                    read.fail(ReadError::Overloaded);
                    return;
                }
                self.new_reads.push(read);
            }
            Request::Compact { reply } => self.snapshots.add_waiter(reply),
        }
    }

    /// Starts one read for every read (and read barrier) taken this cycle: a core read on
    /// the leader (under its lease, or with a read-index round), a read marker through the
    /// log elsewhere.
    fn start_reads(&mut self) {
        if self.new_reads.is_empty() {
            return;
        }
        let reads = std::mem::take(&mut self.new_reads);
        // After every read in `reads` arrived: the core checks its lease at this time.
        let now = self.tick();
        let key = match self.replica.read(now) {
            Ok(id) => Ok(ReadKey::Core(id)),
            Err(ReadRefused::NotLeader { .. }) => {
                match self.replica.propose(now, command::read_marker()) {
                    Ok(marker) => {
                        Counters::add(&self.shared.counters.read_markers, 1);
                        Ok(ReadKey::Marker(marker))
                    }
                    Err(ProposeRefused::NoLeader) => Err(ReadError::NoLeader),
                    Err(_) => Err(ReadError::Overloaded),
                }
            }
            // `Overloaded`, and any kind a newer core adds: nothing was started.
            Err(_) => Err(ReadError::Overloaded),
        };
        match key {
            Ok(key) => self.waiters.add_reads(key, reads),
            Err(error) => {
                for r in reads {
                    r.fail(error.clone());
                }
            }
        }
    }

    /// Takes inbound messages, up to the per-cycle bound. True if it hit the bound.
    fn take_inbound(&mut self) -> Result<bool, FatalError> {
        let max = self.options.max_inbound_per_cycle;
        if self.inbound.len() < max {
            let room = max - self.inbound.len();
            // Polled once: `recv` is cancel-safe, so dropping it loses nothing.
            if let Some(Err(e)) = self.transport.recv(&mut self.inbound, room).now_or_never() {
                return Err(FatalError::Transport(e));
            }
        }
        let n = self.inbound.len();
        self.split().0.deliver();
        Ok(n >= max)
    }

    /// Send the early messages; persist, and meanwhile apply and answer; send the rest;
    /// advance: the [`Ready`] ordering rule.
    ///
    /// The apply runs while the persist is under way (the rule allows it: `committed` is
    /// chosen, so it is on a majority's disks already). With file storage the persist waits
    /// for an fdatasync on the I/O thread, and the driver's thread applies and answers in
    /// that time instead of after it, then goes on taking messages and applying what they
    /// choose (see [`Inner::work_during`]).
    async fn handle_ready(&mut self, ready: Ready) -> Result<(), FatalError> {
        let Ready {
            id,
            persist,
            mut messages,
            early_messages,
            mut committed,
            reads,
            aborted_reads,
            fetch_snapshot,
        } = ready;
        if !persist.is_empty() && early_messages > 0 {
            // The leader's Accepts: its followers write while it writes. Usually they are
            // the whole list, which then goes as it is.
            let rest = if early_messages < messages.len() {
                messages.split_off(early_messages)
            } else {
                Vec::new()
            };
            self.send_all(std::mem::replace(&mut messages, rest));
        }
        if self.persists_in_flight > 1 {
            // Pipelined: the persist is queued on the store's thread now; apply and answer
            // meanwhile, and wait only when as many persists are under way as the core
            // hands out Readys (or for those already done).
            let store = (!persist.is_empty()).then(|| {
                if self.pipeline.iter().any(|r| r.store.is_some()) {
                    Counters::add(&self.shared.counters.persists_pipelined, 1);
                }
                start_persist(&mut *self.storage, &persist, &self.shared, &self.runtime)
            });
            self.split()
                .0
                .apply_and_answer(&mut committed, reads)
                .await?;
            self.pipeline.push_back(InFlight {
                id,
                store,
                messages,
                aborted_reads,
                fetch_snapshot,
            });
            loop {
                let full = self.pipeline.len() >= self.persists_in_flight;
                let Some(oldest) = self.pipeline.front_mut() else {
                    break;
                };
                if !full && !oldest.poll_done()? {
                    break;
                }
                self.finish_oldest().await?;
            }
            return Ok(());
        }
        let (mut inner, storage) = self.split();
        let store = persist_ready(storage, &persist, inner.shared, inner.runtime);
        inner.work_during(store, &mut committed, reads).await?;
        self.finish(InFlight {
            id,
            store: None,
            messages,
            aborted_reads,
            fetch_snapshot,
        });
        Ok(())
    }

    /// The end of a Ready whose persist is durable (and every earlier one): sends its
    /// messages, fails its aborted reads, asks for its snapshot fetch, and advances it.
    fn finish(&mut self, ready: InFlight) {
        self.send_all(ready.messages);
        for read in ready.aborted_reads {
            self.abort_reads(read);
        }
        if let Some(fetch) = ready.fetch_snapshot {
            self.want_snapshot(fetch.from, fetch.upto);
        }
        self.replica.advance(ready.id);
    }

    /// Waits for the oldest pipelined persist (taking messages and applying what they
    /// choose meanwhile, as during any persist), then sends its Ready's messages and
    /// advances it: in order, so each Ready's messages leave after its own persist and
    /// every earlier one.
    pub(crate) async fn finish_oldest(&mut self) -> Result<(), FatalError> {
        let Some(mut oldest) = self.pipeline.pop_front() else {
            return Ok(());
        };
        if let Some(store) = oldest.store.take() {
            self.split()
                .0
                .work_during(store, &mut [], Vec::new())
                .await?;
        }
        self.finish(oldest);
        Ok(())
    }

    /// Waits for the oldest pipelined persist or for new input: true if the persist ended
    /// (see [`Inner::wait_persist_or_input`]).
    async fn wait_oldest_or_input(&mut self) -> Result<bool, FatalError> {
        let Some(mut oldest) = self.pipeline.pop_front() else {
            return Ok(true);
        };
        let done = match oldest.store.as_mut() {
            None => true,
            Some(store) => {
                self.split()
                    .0
                    .wait_persist_or_input(store.as_mut(), true)
                    .await?
            }
        };
        if done {
            oldest.store = None;
        }
        self.pipeline.push_front(oldest);
        Ok(done)
    }

    /// Finishes every pipelined Ready: after this none is outstanding.
    pub(crate) async fn drain_pipeline(&mut self) -> Result<(), FatalError> {
        while !self.pipeline.is_empty() {
            self.finish_oldest().await?;
        }
        Ok(())
    }

    /// The driver in parts: everything but the storage ([`Inner`]), and the storage, so
    /// that a persist can run while the driver applies, answers and takes messages.
    fn split(&mut self) -> (Inner<'_>, &mut dyn Storage) {
        (
            Inner {
                replica: &mut self.replica,
                state_machine: &mut *self.state_machine,
                waiters: &mut self.waiters,
                shared: &self.shared,
                snapshots: &mut self.snapshots,
                markers: &mut self.markers,
                outputs: &mut self.outputs,
                transport: &mut *self.transport,
                inbound: &mut self.inbound,
                max_inbound: self.options.max_inbound_per_cycle,
                requests: &self.requests,
                stashed: &mut self.stashed,
                runtime: &*self.runtime,
                origin: self.origin,
                now: &mut self.now,
            },
            &mut *self.storage,
        )
    }

    /// Hands `messages` to the transport, counted by kind.
    fn send_all(&self, messages: Vec<Envelope>) {
        if messages.is_empty() {
            return;
        }
        for m in &messages {
            Counters::add(&self.shared.counters.sent[m.message.kind_index()], 1);
        }
        self.transport.send(messages);
    }

    /// The core can no longer answer `read` here: leadership changed.
    fn abort_reads(&mut self, read: ReadId) {
        for r in self.waiters.take_reads(ReadKey::Core(read)) {
            r.fail(ReadError::LeadershipChanged);
        }
    }

    /// Publishes the replica's view, and fails every waiter if the leader they went
    /// through is no longer the leader (see [`Waiters`]). Returns the view published.
    fn observe(&mut self) -> paxos_core::Status {
        let counters = &self.shared.counters;
        counters
            .peak_pending_proposals
            .fetch_max(self.replica.pending_proposals() as u64, Ordering::Relaxed);
        counters
            .peak_waiters
            .fetch_max(self.waiters.len() as u64, Ordering::Relaxed);
        // Published first, so that a caller failed below already sees the new view.
        let status = self.publish_status();
        if status.leader != self.leader {
            if self.leader.is_some() && !self.waiters.is_empty() {
                tracing::debug!(
                    node = %status.id,
                    old = ?self.leader,
                    new = ?status.leader,
                    "leader changed; failing waiting requests"
                );
                self.waiters.fail_all(None);
            }
            self.leader = status.leader;
        }
        status
    }

    pub(crate) fn publish_status(&self) -> paxos_core::Status {
        publish_status(&self.replica, &self.shared)
    }
}

/// Publishes `replica`'s view and counters in `shared`, and returns the view.
fn publish_status(replica: &Replica, shared: &Shared) -> paxos_core::Status {
    let status = replica.status();
    shared.publish(|s| {
        s.role = status.role;
        s.ballot = status.promised;
        s.leader = status.leader;
        s.commit = status.commit;
        s.applied = status.applied;
        s.lease_held = status.lease_until.is_some();
    });
    *shared
        .core_metrics
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = replica.metrics();
    status
}

/// Makes `batch` durable with one `Storage::persist` call (nothing to do if it is empty),
/// and counts it.
async fn persist_ready(
    storage: &mut dyn Storage,
    batch: &paxos_core::PersistBatch,
    shared: &Shared,
    runtime: &dyn Runtime,
) -> Result<(), FatalError> {
    if batch.is_empty() {
        return Ok(());
    }
    // Never retried: a failed persist may have written part of the batch.
    let started = runtime.now();
    storage.persist(batch).await.map_err(FatalError::Storage)?;
    // As the driver saw it: the end is noticed once the work beside it yields.
    count_persist(shared, runtime, started, batch.entries.len() as u64);
    Ok(())
}

/// Counts a persist of `entries` that started at `started` and just ended.
fn count_persist(
    shared: &Shared,
    runtime: &dyn Runtime,
    started: std::time::Instant,
    entries: u64,
) {
    let counters = &shared.counters;
    counters.observe_persist(runtime.now().saturating_duration_since(started));
    Counters::add(&counters.persists, 1);
    Counters::add(&counters.persisted_entries, entries);
}

/// Starts persisting `batch` on a store that pipelines persists, and returns the future
/// of its end, counted as [`persist_ready`] counts (its time includes the wait behind the
/// persists queued before it).
fn start_persist(
    storage: &mut dyn Storage,
    batch: &paxos_core::PersistBatch,
    shared: &Arc<Shared>,
    runtime: &Arc<dyn Runtime>,
) -> Persisting {
    let started = runtime.now();
    let entries = batch.entries.len() as u64;
    let stored: PersistFuture = storage.start_persist(batch);
    let shared = shared.clone();
    let runtime = runtime.clone();
    Box::pin(async move {
        stored.await.map_err(FatalError::Storage)?;
        count_persist(&shared, &*runtime, started, entries);
        Ok(())
    })
}

/// The replica's time now, from `runtime`'s clock and the replica's `origin`; never goes
/// backwards (`now` holds the last reading).
fn tick(
    runtime: &dyn Runtime,
    origin: std::time::Instant,
    now: &mut paxos_core::Instant,
) -> paxos_core::Instant {
    let elapsed = runtime.now().saturating_duration_since(origin);
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    *now = (*now).max(paxos_core::Instant::from_nanos(nanos));
    *now
}

/// Every part of the driver but the storage (see [`Driver::split`]): what delivering
/// messages to the core, applying and answering touch.
struct Inner<'a> {
    replica: &'a mut Replica,
    state_machine: &'a mut dyn StateMachine,
    waiters: &'a mut Waiters,
    shared: &'a Shared,
    snapshots: &'a mut Snapshots,
    markers: &'a mut Vec<ProposalId>,
    outputs: &'a mut Vec<(ProposalId, Bytes)>,
    transport: &'a mut dyn Transport,
    inbound: &'a mut Vec<Inbound>,
    max_inbound: usize,
    requests: &'a Receiver<Request>,
    /// Where a request taken while waiting goes, for the next cycle.
    stashed: &'a mut Option<Request>,
    runtime: &'a dyn Runtime,
    origin: std::time::Instant,
    now: &'a mut paxos_core::Instant,
}

impl Inner<'_> {
    /// Hands the messages in `inbound` to the core (snapshot transfers to the driver's
    /// own queue), after noting whom we heard from.
    fn deliver(&mut self) {
        if self.inbound.is_empty() {
            return;
        }
        let heard = self.runtime.now();
        let mut contacts = self
            .shared
            .contacts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for Inbound { from, .. } in self.inbound.iter() {
            match contacts.iter_mut().find(|c| c.id == *from) {
                Some(c) => c.last_heard = Some(heard),
                None => contacts.push(PeerContact {
                    id: *from,
                    last_heard: Some(heard),
                }),
            }
        }
        drop(contacts);
        // After every message in `inbound` arrived.
        let now = tick(self.runtime, self.origin, self.now);
        for Inbound { from, message } in self.inbound.drain(..) {
            match message {
                // Snapshot transfer is the driver's; handled after the cycle's Ready.
                Message::SnapshotRequest(_) | Message::SnapshotChunk(_) => {
                    self.snapshots.inbound.push(Inbound { from, message });
                }
                message => self.replica.handle_message(now, from, message),
            }
        }
    }

    /// Runs `store` (a Ready's persist) to its end, and meanwhile applies the Ready's
    /// `committed` and answers its `reads`, then takes inbound messages and applies and
    /// answers what they choose ([`Replica::poll_chosen`]) until the persist is durable.
    ///
    /// Under load that takes a batch's replies off the critical path: a follower's
    /// `Accepted` for the previous batch arrives while this persist runs, and its clients
    /// are answered at once rather than one Ready later. Nothing leaves before the persist
    /// ends but what already left: what the messages make the core send waits for the next
    /// Ready. With storage that persists at once (memory), `store` is done at its first
    /// poll and no message is taken here.
    async fn work_during(
        &mut self,
        store: impl Future<Output = Result<(), FatalError>>,
        committed: &mut [Committed],
        reads: Vec<ReadId>,
    ) -> Result<(), FatalError> {
        // Polled first in every `select`: its first poll hands the batch to the storage.
        let mut store = pin!(store);
        let work = self.apply_and_answer(committed, reads);
        match select(store.as_mut(), pin!(work)).await {
            Either::Left((stored, work)) => {
                work.await?;
                return stored;
            }
            Either::Right((worked, _)) => worked?,
        }
        while !self.wait_persist_or_input(store.as_mut(), false).await? {}
        Ok(())
    }

    /// Applies and answers what the core chose since the last Ready or `Chosen`
    /// ([`Replica::poll_chosen`]): during a persist, as the messages that chose it arrive.
    async fn apply_chosen(&mut self) -> Result<(), FatalError> {
        while let Some(Chosen {
            mut committed,
            reads,
        }) = self.replica.poll_chosen()
        {
            Counters::add(&self.shared.counters.chosen_during_persist, 1);
            self.apply_and_answer(&mut committed, reads).await?;
        }
        Ok(())
    }

    /// Waits until `store` (a persist) ends, or inbound messages arrive, or (with
    /// `requests`) a request: true if the persist ended; false once an input was taken
    /// (the messages delivered, and what they chose applied and answered; a request
    /// stashed for the next cycle, which can then start the next Ready's persist behind
    /// this one).
    async fn wait_persist_or_input<F: Future<Output = Result<(), FatalError>> + ?Sized>(
        &mut self,
        mut store: Pin<&mut F>,
        requests: bool,
    ) -> Result<bool, FatalError> {
        let woken = {
            let Self {
                transport,
                inbound,
                requests: queue,
                stashed,
                max_inbound,
                ..
            } = &mut *self;
            let mut message = transport.recv(inbound, *max_inbound);
            let mut request = pin!(queue.recv());
            futures::future::poll_fn(|cx| {
                if let Poll::Ready(stored) = store.as_mut().poll(cx) {
                    return Poll::Ready(Either::Left(stored));
                }
                if let Poll::Ready(r) = message.as_mut().poll(cx) {
                    return Poll::Ready(Either::Right(r.map_err(FatalError::Transport)));
                }
                // Only into an empty stash: the cycle takes the stashed request first.
                if requests
                    && stashed.is_none()
                    && let Poll::Ready(r) = request.as_mut().poll(cx)
                {
                    // Never closed: the driver holds a sender.
                    **stashed = r.ok();
                    return Poll::Ready(Either::Right(Ok(())));
                }
                Poll::Pending
            })
            .await
        };
        match woken {
            Either::Left(stored) => return stored.map(|()| true),
            Either::Right(woke) => woke?,
        }
        self.deliver();
        self.apply_chosen().await?;
        Ok(false)
    }

    /// Applies `committed`, then answers `reads`: step 3 of the `Ready` ordering rule.
    async fn apply_and_answer(
        &mut self,
        committed: &mut [Committed],
        reads: Vec<ReadId>,
    ) -> Result<(), FatalError> {
        if !committed.is_empty() {
            self.apply(committed).await?;
        }
        // After applying `committed`, as the core requires.
        for read in reads {
            self.answer_reads(ReadKey::Core(read)).await?;
        }
        Ok(())
    }

    /// Answers the reads waiting on `key` from the state machine as it is now, between two
    /// applies, and the read barriers with the applied position (no query).
    async fn answer_reads(&mut self, key: ReadKey) -> Result<(), FatalError> {
        let reads = self.waiters.take_reads(key);
        if reads.is_empty() {
            return Ok(());
        }
        // Handed out for applying, and applied: answers come after `apply` returned.
        let applied = self.replica.status().applied;
        for read in reads {
            if read.is_canceled() {
                continue;
            }
            match read.reply {
                ReadReply::Query { query, reply } => {
                    let answer = match self.state_machine.query(&query).await {
                        Ok(answer) => answer,
                        Err(e) => {
                            let fatal = FatalError::StateMachine(e);
                            self.shared.set_fatal(fatal.clone());
                            return Err(fatal);
                        }
                    };
                    let _ = reply.send(Ok(answer));
                }
                ReadReply::Barrier { reply } => {
                    let _ = reply.send(Ok(applied));
                }
            }
            Counters::add(&self.shared.counters.reads, 1);
        }
        Ok(())
    }

    /// Applies `committed` with one `StateMachine::apply` call, then answers the
    /// proposals applied (each with its output and the slot of the batch that held it)
    /// and the reads whose marker was applied.
    ///
    /// Reads are answered after the whole batch, with state that may include writes
    /// ordered after their marker. That is still linearizable: those writes were chosen
    /// before the read returns, so the read can be ordered after them.
    async fn apply(&mut self, committed: &mut [Committed]) -> Result<(), FatalError> {
        self.markers.clear();
        command::strip(committed, self.markers);
        let counters = &self.shared.counters;
        let mut commands = 0;
        let mut bytes = 0;
        for c in committed.iter() {
            let n = c.value.commands().len() as u64;
            commands += n;
            counters.largest_batch.fetch_max(n, Ordering::Relaxed);
            // So that each output is answered with its command's slot: one lookup per
            // command, kept on the waiter (bounded with it).
            for command in c.value.commands() {
                self.waiters.record_slot(command.id, c.slot);
                bytes += command.payload.len() as u64;
            }
        }
        Counters::add(&counters.committed_slots, committed.len() as u64);
        self.snapshots.entries_since += committed.len() as u64;
        self.snapshots.bytes_since += bytes;
        Counters::add(&counters.committed_commands, commands);
        self.outputs.clear();
        if let Err(e) = self.state_machine.apply(committed, self.outputs).await {
            return Err(FatalError::StateMachine(e));
        }
        // Before answering: a caller that got its answer sees `applied` cover it.
        publish_status(self.replica, self.shared);
        for (id, output) in self.outputs.drain(..) {
            if !self.waiters.resolve_proposal(id, output) {
                tracing::error!(
                    ?id,
                    "the state machine gave an output for a command it was not applying"
                );
            }
        }
        // A command of this node's clients that got no output is still waiting: the state
        // machine broke its contract. Say so now, naming the command, rather than let the
        // caller time out.
        for command in committed.iter().flat_map(|c| c.value.commands()) {
            let id = command.id;
            if self
                .waiters
                .fail_proposal(id, ProposeError::NoOutput { id })
            {
                tracing::error!(
                    ?id,
                    "the state machine gave no output for an applied command"
                );
            }
        }
        for i in 0..self.markers.len() {
            self.answer_reads(ReadKey::Marker(self.markers[i])).await?;
        }
        Ok(())
    }
}

impl Drop for Driver {
    /// Stops the node: records why (a clean shutdown unless a reason is already set),
    /// closes the request queue and fails every request in it or waiting. The transport,
    /// storage and state machine are dropped after this, then [`DoneSignal`].
    fn drop(&mut self) {
        // A panic drops the driver while it unwinds out of its task's poll.
        let reason = if std::thread::panicking() {
            FatalError::Panicked
        } else {
            FatalError::Stopped
        };
        self.shared.set_fatal(reason);
        let fatal = self.shared.fatal();
        self.requests.close();
        let queued = self
            .stashed
            .take()
            .into_iter()
            .chain(std::iter::from_fn(|| self.requests.try_recv().ok()));
        for request in queued.collect::<Vec<_>>() {
            match request {
                Request::Propose { reply, .. } => {
                    let _ = reply.send(Err(ProposeError::Fatal(fatal.clone())));
                }
                Request::Read(read) => read.fail(ReadError::Fatal(fatal.clone())),
                Request::Compact { reply } => {
                    let _ = reply.send(Err(CompactError::Fatal(fatal.clone())));
                }
            }
        }
        self.snapshots.fail_waiters(&fatal);
        for r in self.new_reads.drain(..) {
            r.fail(ReadError::Fatal(fatal.clone()));
        }
        self.waiters.fail_all(Some(&fatal));
    }
}

fn propose_error(e: ProposeRefused) -> ProposeError {
    match e {
        ProposeRefused::NoLeader => ProposeError::NoLeader,
        ProposeRefused::TooLarge { len, max } => ProposeError::TooLarge {
            len: len.saturating_sub(command::TAG_BYTES),
            max: max.saturating_sub(command::TAG_BYTES),
        },
        // `Overloaded`, and any kind a newer core adds: nothing was queued.
        _ => ProposeError::Overloaded,
    }
}

/// Returns `Pending` once, waking itself: lets other tasks on the executor run.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}
