//! [`NodeHandle`]: the client API of a running node, and the state it shares with the
//! driver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_channel::{Sender, TrySendError};
use bytes::Bytes;
use event_listener::{Event, EventListener};
use futures::channel::oneshot;
use paxos_core::{Ballot, Metrics, NodeId, Role, Slot};

use crate::client::Applied;
use crate::command;
use crate::error::{CompactError, FatalError, ProposeError, ReadError};
use crate::metrics::{Counters, NodeMetrics};
use crate::runtime::{Runtime, timeout_at};
use crate::waiters::{ReadReply, ReadWaiter};

/// How long after a request's deadline the handle gives up by itself. The driver answers
/// `Timeout` at the deadline; this backstop only matters if the driver is stuck (in a
/// persist that never returns, say).
const TIMEOUT_GRACE: Duration = Duration::from_millis(100);

/// A node's view, as of the end of its driver's last cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// The highest ballot it promised.
    pub ballot: Ballot,
    /// The leader it believes in (itself when leading).
    pub leader: Option<NodeId>,
    /// Every slot below this is chosen and known here.
    pub commit: Slot,
    /// Every slot below this is applied to the state machine here.
    pub applied: Slot,
    /// This node is the leader and holds the leader lease (reads cost no message).
    pub lease_held: bool,
    /// Why the node stopped, once it has.
    pub stopped: Option<FatalError>,
}

/// When a peer was last heard from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerContact {
    /// The peer.
    pub id: NodeId,
    /// When its last message arrived, if one did since this node started.
    pub last_heard: Option<Instant>,
}

/// A client request, queued for the driver.
#[derive(Debug)]
pub(crate) enum Request {
    Propose {
        /// The tagged command.
        command: Bytes,
        deadline: Instant,
        reply: oneshot::Sender<Result<Applied, ProposeError>>,
    },
    /// A read or a read barrier.
    Read(ReadWaiter),
    /// Take a snapshot now and compact the log.
    Compact {
        reply: oneshot::Sender<Result<Slot, CompactError>>,
    },
}

/// State shared by the handles and the driver.
#[derive(Debug)]
pub(crate) struct Shared {
    status: Mutex<NodeStatus>,
    /// Notified whenever `status` changes and when the driver has terminated.
    changed: Event,
    /// Set once the driver has dropped its transport, storage and state machine.
    terminated: AtomicBool,
    shutdown: AtomicBool,
    pub(crate) counters: Counters,
    /// The core's counters, as of the driver's last cycle.
    pub(crate) core_metrics: Mutex<Metrics>,
    /// Per peer, when it was last heard from.
    pub(crate) contacts: Mutex<Vec<PeerContact>>,
    /// Open (`Some`) only between two driver cycles of a leader that may answer a read
    /// barrier on the caller's task: see [`NodeHandle::try_read_barrier`].
    lease_gate: Mutex<Option<LeaseGate>>,
}

/// What a read barrier answered on the caller's task needs: until when the driver's last
/// cycle left the lease valid, and what was applied then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseGate {
    /// The lease's end on the runtime's clock.
    pub(crate) until: Instant,
    /// Every slot below it is applied.
    pub(crate) applied: Slot,
}

impl Shared {
    pub(crate) fn new(status: NodeStatus) -> Self {
        Self {
            status: Mutex::new(status),
            changed: Event::new(),
            terminated: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            counters: Counters::default(),
            core_metrics: Mutex::new(Metrics::default()),
            contacts: Mutex::new(Vec::new()),
            lease_gate: Mutex::new(None),
        }
    }

    fn gate(&self) -> MutexGuard<'_, Option<LeaseGate>> {
        // Nothing panics while holding the lock.
        self.lease_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the lease gate (`Some`) or closes it (`None`). The driver closes it before it
    /// hands the core any input and opens it, at the end of a cycle, only when the core's
    /// [`lease_read_until`](paxos_core::Replica::lease_read_until) allows and everything
    /// handed out is applied.
    pub(crate) fn set_lease_gate(&self, gate: Option<LeaseGate>) {
        *self.gate() = gate;
    }

    /// A listener that fires at the next status change (or termination). Take it
    /// **before** reading the status, so that a change in between is not missed.
    pub(crate) fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, NodeStatus> {
        // Nothing panics while holding the lock.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a new view, waking whoever waits on a change.
    pub(crate) fn publish(&self, update: impl FnOnce(&mut NodeStatus)) {
        let mut status = self.status();
        let before = status.clone();
        update(&mut status);
        let changed = *status != before;
        drop(status);
        if changed {
            self.changed.notify(usize::MAX);
        }
    }

    /// Records why the node stopped; the first reason wins.
    pub(crate) fn set_fatal(&self, error: FatalError) {
        self.set_lease_gate(None);
        self.publish(|s| {
            s.stopped.get_or_insert(error);
        });
    }

    pub(crate) fn fatal(&self) -> FatalError {
        self.status().stopped.clone().unwrap_or(FatalError::Stopped)
    }

    pub(crate) fn set_terminated(&self) {
        self.terminated.store(true, Ordering::Release);
        self.changed.notify(usize::MAX);
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// A cheap, cloneable handle to a running node: propose, read, status, shutdown.
///
/// Every method is safe to call from any task on any executor. Dropping every handle does
/// **not** stop the node (it keeps serving its peers as an acceptor); call
/// [`shutdown`](Self::shutdown).
///
/// Writes: [`propose`](Self::propose), or [`propose_with_slot`](Self::propose_with_slot)
/// for the log position too. Linearizable reads: [`read`](Self::read) (through
/// [`StateMachine::query`](paxos_core::StateMachine::query) on the driver task), or
/// [`read_barrier`](Self::read_barrier) and then the program's own view of its state,
/// from any task. To wait until a whole (in-process) cluster can take writes on every
/// node, see [`wait_for_leader`](crate::wait_for_leader).
#[derive(Clone, Debug)]
pub struct NodeHandle {
    pub(crate) id: NodeId,
    pub(crate) shared: Arc<Shared>,
    pub(crate) requests: Sender<Request>,
    /// Wakes the driver for a shutdown, whatever the state of the request queue.
    pub(crate) control: Sender<()>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) request_timeout: Duration,
    /// The largest command accepted, tag excluded.
    pub(crate) max_command_bytes: usize,
}

impl NodeHandle {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The largest command [`propose`](Self::propose) accepts, in bytes. A larger one is
    /// refused at once with [`ProposeError::TooLarge`], before anything is queued. It is
    /// the core's [`max_batch_bytes`](paxos_core::Config::max_batch_bytes) less the
    /// driver's one-byte command tag.
    pub fn max_command_bytes(&self) -> usize {
        self.max_command_bytes
    }

    /// Proposes `command` and waits until it is applied **on this node**, returning the
    /// state machine's output for it.
    ///
    /// On a follower the command is forwarded to the leader. Only `Ok` means applied; see
    /// [`ProposeError`] for which errors leave the outcome unknown. The same as
    /// [`propose_with_slot`](Self::propose_with_slot), without the slot.
    pub async fn propose(&self, command: Bytes) -> Result<Bytes, ProposeError> {
        self.propose_with_slot(command).await.map(|a| a.output)
    }

    /// Proposes `command` and waits until it is applied **on this node**, returning the
    /// state machine's output for it together with the log slot that held it.
    ///
    /// The slot is the command's position in the replicated log, the same on every
    /// replica. Commands batched together share a slot and are applied in batch order;
    /// see [`Applied`]. Any node whose [`status`](Self::status) shows `applied` above the
    /// slot has applied the command (to wait for one:
    /// `node.wait_for(timeout, |s| s.applied > slot)`). Errors are those of
    /// [`propose`](Self::propose).
    pub async fn propose_with_slot(&self, command: Bytes) -> Result<Applied, ProposeError> {
        if command.len() > self.max_command_bytes {
            return Err(ProposeError::TooLarge {
                len: command.len(),
                max: self.max_command_bytes,
            });
        }
        let deadline = self.runtime.now() + self.request_timeout;
        let (reply, answer) = oneshot::channel();
        let request = Request::Propose {
            command: command::write(&command),
            deadline,
            reply,
        };
        self.submit(request).map_err(|e| match e {
            Submit::Full => ProposeError::Overloaded,
            Submit::Stopped(fatal) => ProposeError::Fatal(fatal),
        })?;
        match timeout_at(&*self.runtime, deadline + TIMEOUT_GRACE, answer).await {
            Some(Ok(outcome)) => outcome,
            Some(Err(oneshot::Canceled)) => Err(ProposeError::Fatal(self.stopped_reason().await)),
            None => Err(ProposeError::Timeout),
        }
    }

    /// Answers `query` with [`StateMachine::query`](crate::StateMachine::query) on
    /// this node, linearizably: the answer reflects every write acknowledged (on any node)
    /// before the call.
    ///
    /// On the leader the core confirms the read (under its lease, without a message);
    /// elsewhere it goes through the log as a read marker. Reads arriving in the same
    /// driver cycle share one confirmation. See the crate docs.
    ///
    /// # Why `query` runs on the driver task
    ///
    /// The driver calls `query` between two `apply` calls, at the read's confirmation
    /// point: the state then holds every write acknowledged before the read, and the
    /// driver applies nothing further until the query returns. Run anywhere else, the
    /// query would race with the applies that follow, and the driver would have to keep
    /// the state still (stop applying) or copy it for the duration. So keep `query` quick:
    /// the node applies no command and answers no other request while it runs.
    ///
    /// To read the state from your own task instead (a state machine that shares its
    /// state, say through an `Arc<Mutex<_>>` it updates in `apply`), call
    /// [`read_barrier`](Self::read_barrier) and then read the shared state: the same
    /// guarantee, with no `query` call at all.
    pub async fn read(&self, query: Bytes) -> Result<Bytes, ReadError> {
        let (reply, answer) = oneshot::channel();
        self.read_with(ReadReply::Query { query, reply }, answer)
            .await
    }

    /// Waits until this node's state machine has applied every write acknowledged (on any
    /// node) before the call, and returns this node's applied position at that point:
    /// every slot below it is applied here. The program may then read its own view of
    /// the state directly (a state machine that shares its state with the program, for
    /// example through an `Arc<Mutex<_>>` it updates in
    /// [`apply`](paxos_core::StateMachine::apply)), from any task, and see those writes.
    /// The state may have moved on since (later writes applied); it never moves back.
    ///
    /// It takes the same path as [`read`](Self::read), with the same cost and errors: on
    /// the leader the core confirms it (under the lease with no message, otherwise with
    /// one heartbeat round); elsewhere a read marker goes through the log. It shares a
    /// confirmation with the reads and barriers of the same driver cycle. It never calls
    /// [`StateMachine::query`](paxos_core::StateMachine::query).
    ///
    /// Named a *read barrier* for what it is used for: a barrier that orders the program's
    /// next reads after every acknowledged write. It does not fsync anything ("sync") and
    /// does not wait for other nodes to apply.
    ///
    /// ```no_run
    /// # async fn example(node: paxos_node::NodeHandle, shared: std::sync::Arc<std::sync::Mutex<u64>>) {
    /// // `shared` is updated by the node's state machine in `apply`.
    /// let applied = node.read_barrier().await.unwrap();
    /// let total = *shared.lock().unwrap(); // reflects every write acknowledged before
    /// # let _ = (applied, total);
    /// # }
    /// ```
    pub async fn read_barrier(&self) -> Result<Slot, ReadError> {
        let (reply, answer) = oneshot::channel();
        self.read_with(ReadReply::Barrier { reply }, answer).await
    }

    /// A [`read_barrier`](Self::read_barrier) answered at once, on the caller's task, if
    /// this node can confirm it alone: `Some(applied)` on the leader holding its lease
    /// with every chosen slot applied, between two cycles of its driver. The program may
    /// then read its own view of the state (one its state machine updates in
    /// [`apply`](paxos_core::StateMachine::apply) before returning) and see every write
    /// acknowledged, on any node, before the call, as after `read_barrier`.
    ///
    /// `None` means "not at once", not an error: this node is not the leader, holds no
    /// lease, has chosen slots still to apply, or its driver is in the middle of a cycle
    /// (on a multi-threaded runtime). Fall back to [`read_barrier`](Self::read_barrier)
    /// or [`read`](Self::read), which wait for the driver.
    ///
    /// It costs a lock and a clock reading, and no message, no driver wake-up and no
    /// `query` call: what a server answering many reads on the leader wants. The
    /// guarantee rests on the lease and on the driver closing this path before it hands
    /// the core any input, reopening it only once all that is chosen is applied: see
    /// ARCHITECTURE.md, "Reads on the caller's task".
    ///
    /// ```no_run
    /// # async fn example(node: paxos_node::NodeHandle, shared: std::sync::Arc<std::sync::Mutex<u64>>) {
    /// let applied = match node.try_read_barrier() {
    ///     Some(applied) => applied,
    ///     None => node.read_barrier().await.unwrap(),
    /// };
    /// let total = *shared.lock().unwrap(); // reflects every write acknowledged before
    /// # let _ = (applied, total);
    /// # }
    /// ```
    pub fn try_read_barrier(&self) -> Option<Slot> {
        // The gate first, then the clock: the read is ordered when the gate was read, and
        // the lease must still hold at a reading taken after that.
        let gate = (*self.shared.gate())?;
        if self.runtime.now() >= gate.until {
            return None;
        }
        Counters::add(&self.shared.counters.local_read_barriers, 1);
        Some(gate.applied)
    }

    /// Takes a snapshot of the state machine now and drops the log below it (keeping
    /// [`Compaction::keep_entries`](crate::Compaction::keep_entries) slots
    /// behind), as the [compaction policy](crate::NodeOptions::compaction) does on its
    /// own. Returns the snapshot's `upto`: every slot below it is in the snapshot. If
    /// nothing was applied since the last snapshot, returns that one's `upto` at once.
    ///
    /// The driver takes the snapshot between two cycles, so this node serves no request
    /// while the state machine writes it. No timeout: a large state takes as long as
    /// writing it takes.
    pub async fn compact(&self) -> Result<Slot, CompactError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Compact { reply })
            .map_err(|e| match e {
                Submit::Full => CompactError::Overloaded,
                Submit::Stopped(fatal) => CompactError::Fatal(fatal),
            })?;
        match answer.await {
            Ok(outcome) => outcome,
            Err(oneshot::Canceled) => Err(CompactError::Fatal(self.stopped_reason().await)),
        }
    }

    /// Queues a read (or barrier) and waits for its answer on `answer`.
    async fn read_with<T>(
        &self,
        reply: ReadReply,
        answer: oneshot::Receiver<Result<T, ReadError>>,
    ) -> Result<T, ReadError> {
        let deadline = self.runtime.now() + self.request_timeout;
        self.submit(Request::Read(ReadWaiter { deadline, reply }))
            .map_err(|e| match e {
                Submit::Full => ReadError::Overloaded,
                Submit::Stopped(fatal) => ReadError::Fatal(fatal),
            })?;
        match timeout_at(&*self.runtime, deadline + TIMEOUT_GRACE, answer).await {
            Some(Ok(outcome)) => outcome,
            Some(Err(oneshot::Canceled)) => Err(ReadError::Fatal(self.stopped_reason().await)),
            None => Err(ReadError::Timeout),
        }
    }

    /// The node's view as of its driver's last cycle. Does not wait for the driver.
    pub fn status(&self) -> NodeStatus {
        self.shared.status().clone()
    }

    /// Counters since the node started.
    pub fn metrics(&self) -> NodeMetrics {
        let core = *self
            .shared
            .core_metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared.counters.snapshot(core)
    }

    /// When each peer was last heard from.
    pub fn peer_contacts(&self) -> Vec<PeerContact> {
        self.shared
            .contacts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `condition` holds for the node's status, for at most `timeout`.
    /// Returns the status that satisfied it, or `None` on timeout.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&NodeStatus) -> bool,
    ) -> Option<NodeStatus> {
        let deadline = self.runtime.now() + timeout;
        let wait = async {
            loop {
                let listener = self.shared.listen();
                let status = self.status();
                if condition(&status) {
                    return status;
                }
                listener.await;
            }
        };
        timeout_at(&*self.runtime, deadline, wait).await
    }

    /// Stops the node: pending and later requests fail with
    /// [`FatalError::Stopped`]; returns once the driver has dropped its transport, storage
    /// and state machine (so a TCP listener is closed or closing).
    pub async fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        // Full means a wake-up is already queued; closed means the driver is gone.
        let _ = self.control.try_send(());
        self.terminated().await;
    }

    async fn terminated(&self) {
        loop {
            let listener = self.shared.changed.listen();
            if self.shared.terminated.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }

    /// Why the driver stopped, once it has: a request's reply was dropped, which happens
    /// only when the driver stops. Waiting for it to terminate makes the recorded reason
    /// final (a panic is recorded as it unwinds).
    async fn stopped_reason(&self) -> FatalError {
        self.terminated().await;
        self.shared.fatal()
    }

    fn submit(&self, request: Request) -> Result<(), Submit> {
        if let Some(fatal) = self.status().stopped {
            return Err(Submit::Stopped(fatal));
        }
        match self.requests.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Submit::Full),
            Err(TrySendError::Closed(_)) => Err(Submit::Stopped(self.shared.fatal())),
        }
    }
}

enum Submit {
    Full,
    Stopped(FatalError),
}
