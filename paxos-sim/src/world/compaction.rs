//! Log compaction in the core-mode world: snapshots by policy, their transfer to a
//! replica that fell behind the compaction point, and restarts from a snapshot.
//!
//! A snapshot is the KV registers plus the core's part ([`CoreSnapshot`]), saved through
//! the node's [`Storage`] like a real driver's. Every replica's snapshot at one `upto`
//! must be the same bytes (both halves are functions of the chosen log): that is checked
//! as each is taken. A transfer takes 1 to 30 ms of simulated time and fails if either
//! end crashes or a partition separates them meanwhile; the lagging core then asks again.

use std::collections::BTreeMap;

use paxos_core::{CoreSnapshot, RecoveredState, Slot, SnapshotFetch, Storage};
use serde::{Deserialize, Serialize};

use super::*;

/// What a simulated snapshot's data holds.
#[derive(Serialize, Deserialize)]
struct SimSnapshot {
    core: Vec<u8>,
    kv: BTreeMap<u64, u64>,
}

impl World {
    /// After a Ready is applied (so the registers are at the core's applied point): takes
    /// a snapshot and compacts, if the policy says so.
    pub(super) fn maybe_compact(&mut self, n: usize) -> Result<(), String> {
        let every = self.cfg.compact_every;
        let node = &mut self.nodes[n];
        // Only between Readys: one still waiting may have handed out values (the core's
        // `applied` counts them) that are not applied yet.
        if !node.waiting_persist.is_empty() {
            return Ok(());
        }
        let Some(r) = node.replica.as_mut() else {
            return Ok(());
        };
        let status = r.status();
        if every == 0 || status.applied.0 < status.log_start.0 + every {
            return Ok(());
        }
        let core = r.core_snapshot();
        let upto = core.upto();
        let data = postcard::to_allocvec(&SimSnapshot {
            core: core.encode(),
            kv: node.kv.contents().clone(),
        })
        .map_err(|e| e.to_string())?;
        match self.snapshots.get(&upto) {
            Some(first) if *first != data => {
                return Err(format!(
                    "replica {} took a snapshot at {upto} that differs from another's",
                    node.id
                ));
            }
            Some(_) => {}
            None => {
                self.snapshots.insert(upto, data.clone());
            }
        }
        save(&mut *node.storage, upto, &data)?;
        r.compact(upto);
        block_on(node.storage.compact(upto)).map_err(|e| format!("compact: {e}"))?;
        self.report.snapshots += 1;
        Ok(())
    }

    /// The core asked for a snapshot: start a transfer unless one is under way.
    pub(super) fn fetch_snapshot(&mut self, n: usize, fetch: SnapshotFetch) {
        let Some(from) = self.nodes.iter().position(|x| x.id == fetch.from) else {
            return;
        };
        if self.nodes[n].fetching {
            return;
        }
        self.nodes[n].fetching = true;
        let event = Event::SnapshotArrive {
            to: n,
            from,
            to_incarnation: self.nodes[n].incarnation,
            from_incarnation: self.nodes[from].incarnation,
        };
        let d = between(&mut self.rng, MS, 30 * MS);
        self.schedule(d, event);
    }

    /// A transfer ends: installed, or cut off.
    pub(super) fn snapshot_arrive(
        &mut self,
        to: usize,
        from: usize,
        to_incarnation: u64,
        from_incarnation: u64,
    ) -> Result<(), String> {
        if self.nodes[to].incarnation != to_incarnation {
            // The receiver crashed meanwhile: a new incarnation asks again itself.
            self.report.transfers_cut += 1;
            return Ok(());
        }
        if !self.nodes[to].waiting_persist.is_empty() {
            // A Ready is outstanding: its committed values lie below the snapshot, and a
            // driver installs only between Readies. Arrive again once it is done.
            let d = between(&mut self.rng, 100_000, MS);
            self.schedule(
                d,
                Event::SnapshotArrive {
                    to,
                    from,
                    to_incarnation,
                    from_incarnation,
                },
            );
            return Ok(());
        }
        self.nodes[to].fetching = false;
        let cut = self.nodes[from].incarnation != from_incarnation
            || self.nodes[from].replica.is_none()
            || self.partition.blocks(from, to)
            || self.partition.blocks(to, from);
        if cut {
            self.report.transfers_cut += 1;
            return Ok(());
        }
        let Some(snapshot) = load(&mut *self.nodes[from].storage)? else {
            return Err(format!(
                "replica {} offered a snapshot it does not have",
                from + 1
            ));
        };
        let (core, kv) = decode(&snapshot)?;
        let now = self.local_now(to);
        let node = &mut self.nodes[to];
        let Some(r) = node.replica.as_mut() else {
            return Ok(());
        };
        if core.upto() <= r.status().applied {
            return Ok(());
        }
        // Durable first, then the state machine, then the core: a crash in between
        // restarts from this snapshot.
        save(&mut *node.storage, snapshot.0, &snapshot.1)?;
        if self.cfg.bug != Some(Bug::InstallKeepsStaleState) {
            node.kv = kv;
        }
        let upto = core.upto();
        if !r.install_snapshot(now, core) {
            return Err("install_snapshot refused a snapshot ahead of the applied point".into());
        }
        block_on(node.storage.compact(upto)).map_err(|e| format!("compact: {e}"))?;
        self.report.installs += 1;
        self.drive(to)
    }

    /// At start: the latest durable snapshot, restored into the registers, and the core's
    /// part put where the replica looks for it.
    pub(super) fn restore_snapshot(
        &mut self,
        n: usize,
        recovered: &mut RecoveredState,
    ) -> Result<(), String> {
        let node = &mut self.nodes[n];
        node.fetching = false;
        let Some(snapshot) = load(&mut *node.storage)? else {
            return Ok(());
        };
        let (core, kv) = decode(&snapshot)?;
        node.kv = kv;
        recovered.snapshot = Some(core);
        Ok(())
    }
}

/// Saves `data` as the snapshot at `upto`, streamed in small pieces as a driver does.
fn save(storage: &mut dyn Storage, upto: Slot, data: &[u8]) -> Result<(), String> {
    block_on(async {
        storage.begin_snapshot(upto).await?;
        for piece in data.chunks(64) {
            storage.append_snapshot(piece).await?;
        }
        storage.commit_snapshot().await.map(drop)
    })
    .map_err(|e| format!("save snapshot: {e}"))
}

/// The saved snapshot, read back whole (the sim's are small).
fn load(storage: &mut dyn Storage) -> Result<Option<(Slot, Vec<u8>)>, String> {
    block_on(async {
        let Some(meta) = storage.snapshot().await? else {
            return Ok(None);
        };
        let mut data = vec![0; meta.len as usize];
        let n = storage.read_snapshot(0, &mut data).await?;
        data.truncate(n);
        Ok(Some((meta.upto, data)))
    })
    .map_err(|e: paxos_core::StorageError| format!("load snapshot: {e}"))
}

fn decode((upto, data): &(Slot, Vec<u8>)) -> Result<(CoreSnapshot, Kv), String> {
    let sim: SimSnapshot = postcard::from_bytes(data).map_err(|e| format!("snapshot data: {e}"))?;
    let core = CoreSnapshot::decode(&sim.core).map_err(|e| e.to_string())?;
    if core.upto() != *upto {
        return Err(format!(
            "snapshot saved at {} holds a core snapshot at {}",
            upto,
            core.upto()
        ));
    }
    Ok((core, Kv::from_contents(sim.kv)))
}
