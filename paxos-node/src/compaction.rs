//! The driver's snapshot work, between two cycles: taking snapshots by policy or on
//! demand, answering peers' chunk requests under the rate limit, and fetching and
//! installing a snapshot when the core is behind a peer's compaction point.
//!
//! All of it runs on the driver task, when no `Ready` is outstanding and the state machine
//! has applied exactly up to the core's applied point, so the state machine's snapshot and
//! the core's describe the same prefix of the log.

use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::channel::oneshot;
use paxos_core::message::{SnapshotChunk, SnapshotRequest};
use paxos_core::{Envelope, Inbound, Message, NodeId, Slot, SnapshotMeta};

use crate::driver::Driver;
use crate::error::{CompactError, FatalError};
use crate::metrics::Counters;
use crate::snapshot::{self, ChunkFate, Fetch, Piece, RateLimit, Sending, Sink, SnapshotFailure};

/// Bound on compactions waiting (requests through the handle).
const MAX_COMPACT_WAITERS: usize = 16;

/// The driver's snapshot state.
pub(crate) struct Snapshots {
    /// The saved snapshot (what peers are sent), if any.
    pub(crate) saved: Option<SnapshotMeta>,
    /// Slots and command bytes applied since the last snapshot.
    pub(crate) entries_since: u64,
    pub(crate) bytes_since: u64,
    /// The state machine refused to take a snapshot: never asked again by policy.
    pub(crate) unsupported: bool,
    /// After a failed snapshot, none by policy before another full interval.
    pub(crate) failed_at_entries: Option<u64>,
    /// A fetch under way.
    pub(crate) fetch: Option<Fetch>,
    /// Snapshot messages taken from the transport, handled after the cycle's `Ready`.
    pub(crate) inbound: Vec<Inbound>,
    /// Transfers to peers: at most one per peer (its latest request's window).
    pub(crate) sending: Vec<Sending>,
    /// When the rate limit next allows a chunk, if a request waits on it.
    pub(crate) send_at: Option<Instant>,
    pub(crate) limit: RateLimit,
    pub(crate) chunk_bytes: usize,
    pub(crate) waiters: Vec<oneshot::Sender<Result<Slot, CompactError>>>,
    /// A snapshot being written in the background, from a frozen state.
    pub(crate) taking: Option<Taking>,
    /// The background snapshot's next piece, received while the driver waited.
    pub(crate) next_piece: Option<Piece>,
    /// When the fetch under way staged its first chunk (for the log).
    fetch_began: Option<Instant>,
}

/// A snapshot being written on the snapshot thread (see [`snapshot::spawn_frozen`]).
pub(crate) struct Taking {
    upto: Slot,
    sink: Sink,
    pub(crate) pieces: async_channel::Receiver<Piece>,
    started: Instant,
    /// The policy's counters when it began, restored if it fails.
    entries_before: u64,
    bytes_before: u64,
}

/// Pieces of a background snapshot appended per cycle (each up to `IO_CHUNK`), so that a
/// cycle stays short however fast the snapshot thread writes.
const PIECES_PER_CYCLE: usize = 4;

/// How a snapshot that was asked for went.
enum Took {
    /// Saved, up to this slot.
    Saved(Slot),
    /// Being written in the background; waiters are answered when it ends.
    Started,
    /// The state machine failed (logged and counted); the node goes on.
    Failed(paxos_core::StateMachineError),
}

impl Snapshots {
    /// `now` is the runtime's clock: every time here is read from it, never from the
    /// system clock, so that a simulated runtime decides when transfers time out.
    pub(crate) fn new(
        saved: Option<SnapshotMeta>,
        chunk_bytes: usize,
        rate: u64,
        now: Instant,
    ) -> Self {
        Self {
            saved,
            entries_since: 0,
            bytes_since: 0,
            unsupported: false,
            failed_at_entries: None,
            fetch: None,
            inbound: Vec::new(),
            sending: Vec::new(),
            send_at: None,
            limit: RateLimit::new(rate, chunk_bytes as u64, now),
            chunk_bytes,
            waiters: Vec::new(),
            taking: None,
            next_piece: None,
            fetch_began: None,
        }
    }

    /// Queues a compaction request from the handle.
    pub(crate) fn add_waiter(&mut self, reply: oneshot::Sender<Result<Slot, CompactError>>) {
        if self.waiters.len() >= MAX_COMPACT_WAITERS {
            let _ = reply.send(Err(CompactError::Overloaded));
        } else {
            self.waiters.push(reply);
        }
    }

    /// Fails every waiting compaction (the node is stopping).
    pub(crate) fn fail_waiters(&mut self, fatal: &FatalError) {
        for reply in self.waiters.drain(..) {
            let _ = reply.send(Err(CompactError::Fatal(fatal.clone())));
        }
    }

    fn answer_waiters(&mut self, outcome: &Result<Slot, CompactError>) {
        for reply in self.waiters.drain(..) {
            let _ = reply.send(outcome.clone());
        }
    }
}

impl Driver {
    /// Time since `t` on the runtime's clock (for the logs).
    fn since(&self, t: Instant) -> std::time::Duration {
        self.runtime.now().saturating_duration_since(t)
    }

    /// The cycle's snapshot work. Returns whether it did something (another cycle should
    /// follow at once).
    pub(crate) async fn snapshot_work(&mut self) -> Result<bool, FatalError> {
        let chunk = |m: &Inbound| matches!(m.message, Message::SnapshotChunk(_));
        if self.snapshots.inbound.iter().any(chunk) {
            // A chunk may complete a fetch, and the core installs a snapshot only with no
            // Ready outstanding (their values would land on top of the restored state).
            self.drain_pipeline().await?;
        }
        let mut did = !self.snapshots.inbound.is_empty();
        for Inbound { from, message } in std::mem::take(&mut self.snapshots.inbound) {
            match message {
                Message::SnapshotRequest(request) => self.queue_request(from, request),
                Message::SnapshotChunk(chunk) => self.receive_chunk(from, chunk).await?,
                _ => {}
            }
        }
        did |= self.serve_requests().await?;
        self.drop_needless_fetch();
        if self.snapshots.taking.is_some() {
            // Waiters and the policy wait for the snapshot under way.
            did |= self.continue_taking().await?;
        } else if !self.snapshots.waiters.is_empty() {
            self.compact_on_demand().await?;
            did = true;
        } else if self.compaction_due() {
            self.take_snapshot().await?;
            did = true;
        }
        Ok(did)
    }

    /// When the driver must wake for snapshot work: the rate limit's next chunk.
    pub(crate) fn snapshot_deadline(&self) -> Option<Instant> {
        self.snapshots.send_at
    }

    // --- Taking snapshots -----------------------------------------------------------

    fn compaction_due(&self) -> bool {
        let s = &self.snapshots;
        if s.unsupported || s.fetch.is_some() {
            return false;
        }
        if let Some(at) = s.failed_at_entries {
            // Back off a whole interval after a failure.
            if s.entries_since < at.saturating_mul(2) {
                return false;
            }
        }
        let saved = s.saved.map_or(0, |m| m.len);
        self.options
            .compaction
            .due(s.entries_since, s.bytes_since, saved)
    }

    async fn compact_on_demand(&mut self) -> Result<(), FatalError> {
        let applied = self.replica.status().applied;
        let outcome = if self.snapshots.fetch.is_some() {
            Err(CompactError::Fetching)
        } else if self.snapshots.saved.is_some_and(|s| s.upto == applied) || applied == Slot(0) {
            Ok(self.snapshots.saved.map_or(Slot(0), |s| s.upto))
        } else {
            match self.take_snapshot().await? {
                Took::Saved(upto) => Ok(upto),
                Took::Started => return Ok(()),
                Took::Failed(e) => Err(CompactError::StateMachine(e)),
            }
        };
        self.snapshots.answer_waiters(&outcome);
        Ok(())
    }

    /// Takes a snapshot at the applied point, then compacts the log behind it: in the
    /// background if the state machine can [`freeze`](paxos_core::StateMachine::freeze)
    /// its state, else on this task. A state machine's failure is returned (the node goes
    /// on with its whole log); a storage failure is fatal.
    async fn take_snapshot(&mut self) -> Result<Took, FatalError> {
        let core = self.replica.core_snapshot();
        let upto = core.upto();
        let started = self.runtime.now();
        let s = &mut self.snapshots;
        let (entries_before, bytes_before) = (s.entries_since, s.bytes_since);
        // Counted from this point: what a snapshot taken now covers.
        s.entries_since = 0;
        s.bytes_since = 0;
        let outcome = match self.state_machine.freeze() {
            Some(frozen) => match snapshot::begin(&mut *self.storage, &core).await {
                Ok(sink) => match snapshot::spawn_frozen(&*self.runtime, frozen) {
                    Ok(pieces) => {
                        self.snapshots.taking = Some(Taking {
                            upto,
                            sink,
                            pieces,
                            started,
                            entries_before,
                            bytes_before,
                        });
                        return Ok(Took::Started);
                    }
                    Err(e) => Err(SnapshotFailure::StateMachine(e)),
                },
                Err(e) => Err(e),
            },
            None => snapshot::take(&mut *self.storage, &mut *self.state_machine, &core).await,
        };
        self.snapshot_ended(upto, started, outcome, entries_before, bytes_before)
            .await
    }

    /// Appends the background snapshot's next pieces; finishes it when the state machine
    /// is done. True if it did anything.
    async fn continue_taking(&mut self) -> Result<bool, FatalError> {
        let mut did = false;
        for _ in 0..PIECES_PER_CYCLE {
            let taking = self.snapshots.taking.as_mut().expect("called while taking");
            let piece = match self.snapshots.next_piece.take() {
                Some(piece) => piece,
                None => match taking.pieces.try_recv() {
                    Ok(piece) => piece,
                    Err(async_channel::TryRecvError::Empty) => break,
                    Err(async_channel::TryRecvError::Closed) => {
                        Piece::Done(Err(paxos_core::StateMachineError::new(
                            "the snapshot thread ended without finishing (it panicked)",
                        )))
                    }
                },
            };
            did = true;
            match piece {
                Piece::Bytes(bytes) => {
                    if let Err(e) = taking.sink.write(&mut *self.storage, &bytes).await {
                        return Err(FatalError::Storage(e));
                    }
                }
                Piece::Done(result) => {
                    let t = self.snapshots.taking.take().expect("checked above");
                    let outcome = match result {
                        Ok(()) => snapshot::finish(&mut *self.storage, t.sink).await,
                        Err(e) => Err(SnapshotFailure::StateMachine(e)),
                    };
                    let took = self
                        .snapshot_ended(
                            t.upto,
                            t.started,
                            outcome,
                            t.entries_before,
                            t.bytes_before,
                        )
                        .await?;
                    let outcome = match took {
                        Took::Saved(upto) => {
                            Counters::add(&self.shared.counters.snapshots_background, 1);
                            Ok(upto)
                        }
                        Took::Failed(e) => Err(CompactError::StateMachine(e)),
                        Took::Started => unreachable!("a snapshot that ended"),
                    };
                    self.snapshots.answer_waiters(&outcome);
                    break;
                }
            }
        }
        Ok(did)
    }

    /// Stops the background snapshot, if one is under way: a fetch is about to stage
    /// a newer one. Its waiters learn why.
    fn abandon_taking(&mut self) {
        let s = &mut self.snapshots;
        if let Some(t) = s.taking.take() {
            tracing::info!(node = %self.replica.id(), upto = %t.upto, "snapshot abandoned for a fetch");
            s.next_piece = None;
            s.entries_since += t.entries_before;
            s.bytes_since += t.bytes_before;
            s.answer_waiters(&Err(CompactError::Fetching));
        }
    }

    /// Records how a snapshot up to `upto` ended; compacts the log behind a saved one.
    async fn snapshot_ended(
        &mut self,
        upto: Slot,
        started: Instant,
        outcome: Result<SnapshotMeta, SnapshotFailure>,
        entries_before: u64,
        bytes_before: u64,
    ) -> Result<Took, FatalError> {
        match outcome {
            Ok(meta) => {
                tracing::info!(
                    node = %self.replica.id(),
                    %upto,
                    bytes = meta.len,
                    ms = self.since(started).as_millis() as u64,
                    "took a snapshot"
                );
                Counters::add(&self.shared.counters.snapshots_taken, 1);
                self.saved_snapshot(meta);
                let before = self.compaction_point(upto);
                self.compact_log(before).await?;
                Ok(Took::Saved(upto))
            }
            Err(SnapshotFailure::Storage(e)) => Err(FatalError::Storage(e)),
            Err(SnapshotFailure::StateMachine(e)) => {
                Counters::add(&self.shared.counters.snapshot_failures, 1);
                let s = &mut self.snapshots;
                s.entries_since += entries_before;
                s.bytes_since += bytes_before;
                if e.message().contains("does not take snapshots") {
                    if !s.unsupported {
                        tracing::warn!(
                            node = %self.replica.id(),
                            "the state machine takes no snapshots: the log is never compacted"
                        );
                    }
                    s.unsupported = true;
                } else {
                    tracing::warn!(node = %self.replica.id(), error = %e, "snapshot failed");
                    s.failed_at_entries = Some(s.entries_since.max(1));
                }
                Ok(Took::Failed(e))
            }
        }
    }

    /// Where to cut the log behind a snapshot up to `upto`: `keep_entries` slots behind
    /// it, and fewer if those hold more than `keep_bytes` of commands.
    fn compaction_point(&self, upto: Slot) -> Slot {
        let c = &self.options.compaction;
        let by_count = Slot(upto.0.saturating_sub(c.keep_entries));
        self.replica.log_start_keeping(by_count, upto, c.keep_bytes)
    }

    /// Records `meta` as the saved snapshot.
    fn saved_snapshot(&mut self, meta: SnapshotMeta) {
        let s = &mut self.snapshots;
        s.saved = Some(meta);
        s.failed_at_entries = None;
        let counters = &self.shared.counters;
        counters.snapshot_bytes.store(meta.len, Ordering::Relaxed);
    }

    /// Drops the log below `before` (covered by the saved snapshot), in the core and in
    /// storage.
    async fn compact_log(&mut self, before: Slot) -> Result<(), FatalError> {
        self.replica.compact(before);
        if let Err(e) = self.storage.compact(before).await {
            return Err(FatalError::Storage(e));
        }
        let start = self.replica.status().log_start;
        self.shared
            .counters
            .log_start
            .store(start.0, Ordering::Relaxed);
        Ok(())
    }

    // --- Sending snapshots ----------------------------------------------------------

    fn queue_request(&mut self, from: NodeId, request: SnapshotRequest) {
        let s = &mut self.snapshots;
        let Some(saved) = s.saved else {
            // Nothing to send: only a node that compacted offers snapshots, so this request
            // is stale (from before a restart); the asker asks again elsewhere.
            return;
        };
        let sending = Sending::new(from, &request, saved, s.chunk_bytes as u64);
        match s.sending.iter_mut().find(|t| t.to == from) {
            Some(t) => *t = sending,
            // One entry per peer that asks: bounded by the cluster's size, since the
            // transport only admits members.
            None => s.sending.push(sending),
        }
    }

    /// Sends the windows' chunks while the rate limit allows, taking peers in turn. True
    /// if it sent any.
    async fn serve_requests(&mut self) -> Result<bool, FatalError> {
        self.snapshots.send_at = None;
        let Some(saved) = self.snapshots.saved else {
            self.snapshots.sending.clear();
            return Ok(false);
        };
        let chunk = self.snapshots.chunk_bytes as u64;
        self.snapshots
            .sending
            .retain(|t| t.next_chunk(saved, chunk).is_some());
        let mut sent = false;
        while let Some(t) = self.snapshots.sending.first().copied() {
            let Some((offset, len)) = t.next_chunk(saved, chunk) else {
                self.snapshots.sending.remove(0);
                continue;
            };
            if let Err(at) = self.snapshots.limit.take(len, self.runtime.now()) {
                self.snapshots.send_at = Some(at);
                break;
            }
            let mut bytes = vec![0; len as usize];
            let n = match self.storage.read_snapshot(offset, &mut bytes).await {
                Ok(n) => n,
                Err(e) => return Err(FatalError::Storage(e)),
            };
            bytes.truncate(n);
            // Next chunk from the next peer: the window moves to the back.
            let mut t = self.snapshots.sending.remove(0);
            t.next = offset + n as u64;
            if n > 0 {
                self.snapshots.sending.push(t);
            }
            let chunk = SnapshotChunk {
                upto: saved.upto,
                total: saved.len,
                offset,
                crc: crc32c::crc32c(&bytes),
                bytes: bytes.into(),
            };
            let counters = &self.shared.counters;
            Counters::add(&counters.snapshot_chunks_sent, 1);
            Counters::add(&counters.snapshot_bytes_sent, n as u64);
            self.send(t.to, Message::SnapshotChunk(chunk));
            sent = true;
        }
        Ok(sent)
    }

    fn send(&mut self, to: NodeId, message: Message) {
        Counters::add(&self.shared.counters.sent[message.kind_index()], 1);
        self.transport.send(vec![Envelope { to, message }]);
    }

    // --- Fetching snapshots ---------------------------------------------------------

    /// The core asked (again) for a snapshot from `from` covering at least `upto`.
    pub(crate) fn want_snapshot(&mut self, from: NodeId, upto: Slot) {
        if upto <= self.replica.status().applied {
            return;
        }
        if self.snapshots.fetch.is_none() {
            // Our own snapshot would be older than the one fetched, and both are staged
            // in the one place storage has.
            self.abandon_taking();
        }
        let fetch = self
            .snapshots
            .fetch
            .get_or_insert_with(|| Fetch::new(from, upto));
        if !fetch.progressing(self.runtime.now(), self.options.snapshot_request_timeout) {
            fetch.from = from;
        }
        fetch.min_upto = fetch.min_upto.max(upto);
        self.ask_for_chunk();
    }

    fn ask_for_chunk(&mut self) {
        let patience = self.options.snapshot_request_timeout;
        let Some(fetch) = &mut self.snapshots.fetch else {
            return;
        };
        if let Some(request) = fetch.due_request(self.runtime.now(), patience) {
            let to = fetch.from;
            self.send(to, Message::SnapshotRequest(request));
        }
    }

    /// A fetch is no longer needed once the core caught up past it another way.
    fn drop_needless_fetch(&mut self) {
        let Some(fetch) = &self.snapshots.fetch else {
            // The common case, every cycle: nothing to look up.
            return;
        };
        let applied = self.replica.status().applied;
        let staged_ahead = fetch.staged.is_some_and(|s| s.upto > applied);
        if fetch.min_upto <= applied && !staged_ahead {
            self.snapshots.fetch = None;
        }
    }

    async fn receive_chunk(
        &mut self,
        from: NodeId,
        chunk: SnapshotChunk,
    ) -> Result<(), FatalError> {
        let applied = self.replica.status().applied;
        let Some(fetch) = &self.snapshots.fetch else {
            Counters::add(&self.shared.counters.snapshot_chunks_dropped, 1);
            return Ok(());
        };
        let fate = fetch.judge(&chunk, applied);
        if let ChunkFate::Drop(why) = fate {
            tracing::trace!(node = %self.replica.id(), %from, why, "snapshot chunk dropped");
            Counters::add(&self.shared.counters.snapshot_chunks_dropped, 1);
            return Ok(());
        }
        if fate == ChunkFate::Begin {
            if let Err(e) = self.storage.begin_snapshot(chunk.upto).await {
                return Err(FatalError::Storage(e));
            }
            tracing::info!(
                node = %self.replica.id(),
                %from,
                upto = %chunk.upto,
                bytes = chunk.total,
                "fetching a snapshot"
            );
            self.snapshots.fetch_began = Some(self.runtime.now());
        }
        if let Err(e) = self.storage.append_snapshot(&chunk.bytes).await {
            return Err(FatalError::Storage(e));
        }
        Counters::add(&self.shared.counters.snapshot_chunks_received, 1);
        let fetch = self.snapshots.fetch.as_mut().expect("checked above");
        fetch.staged_chunk(&fate, &chunk);
        fetch.progress_at = Some(self.runtime.now());
        // Whoever sent a chunk we took holds this snapshot: continue with it.
        fetch.from = from;
        match fetch.finished() {
            None => self.ask_for_chunk(),
            Some(Err(staged)) => {
                tracing::warn!(
                    node = %self.replica.id(),
                    upto = %staged.upto,
                    "a fetched snapshot failed its checksum; fetching it again"
                );
                Counters::add(&self.shared.counters.snapshot_chunks_dropped, 1);
                fetch.staged = None;
                self.ask_for_chunk();
            }
            Some(Ok(_)) => self.install().await?,
        }
        Ok(())
    }

    /// Commits the fetched snapshot, restores the state machine from it and moves the
    /// core past it. A crash before the commit leaves the previous snapshot and state; a
    /// crash after it restarts from the new one.
    async fn install(&mut self) -> Result<(), FatalError> {
        self.snapshots.fetch = None;
        let fetch_ms = self
            .snapshots
            .fetch_began
            .take()
            .map_or(0, |at| self.since(at).as_millis() as u64);
        let commit_started = self.runtime.now();
        let meta = match self.storage.commit_snapshot().await {
            Ok(meta) => meta,
            Err(e) => return Err(FatalError::Storage(e)),
        };
        let commit_ms = self.since(commit_started).as_millis() as u64;
        let applied = self.replica.status().applied;
        assert!(
            meta.upto > applied,
            "installing a snapshot at {} that is not ahead of the applied point {applied}",
            meta.upto
        );
        let started = self.runtime.now();
        let core = match snapshot::restore(&mut *self.storage, &mut *self.state_machine, meta).await
        {
            Ok(core) => core,
            Err(SnapshotFailure::Storage(e)) => return Err(FatalError::Storage(e)),
            Err(SnapshotFailure::StateMachine(e)) => return Err(FatalError::StateMachine(e)),
        };
        let now = self.tick();
        // Checked ahead of the restore: nothing moved the applied point since.
        assert!(
            self.replica.install_snapshot(now, core),
            "the core refused a snapshot ahead of its applied point"
        );
        tracing::info!(
            node = %self.replica.id(),
            upto = %meta.upto,
            bytes = meta.len,
            fetch_ms,
            commit_ms,
            ms = self.since(started).as_millis() as u64,
            "installed a snapshot fetched from a peer"
        );
        Counters::add(&self.shared.counters.snapshots_installed, 1);
        self.saved_snapshot(meta);
        self.snapshots.entries_since = 0;
        self.snapshots.bytes_since = 0;
        self.compact_log(meta.upto).await?;
        self.publish_status();
        Ok(())
    }
}
