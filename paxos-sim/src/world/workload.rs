//! The core-mode workload: clients, their operations, and the history they record.

use super::*;

impl World {
    pub(super) fn client_next(&mut self, client: usize) -> Result<(), String> {
        if self.clients[client].pending.is_some() {
            return Ok(());
        }
        let probe = self.clients[client].probe;
        if !probe && (self.phase != Phase::Workload || self.issued >= self.cfg.ops) {
            return Ok(());
        }
        let op = if probe {
            KvOp::Write {
                key: PROBE_KEY,
                value: 1,
            }
        } else {
            self.random_op(client)
        };
        let node = self.clients[client].node;
        let now = self.local_now(node);
        let payload = op.encode();
        let direct_read = self.cfg.direct_reads
            && matches!(op, KvOp::Read { .. })
            && self.rng.next_u64() % 4 != 0;
        let result = match self.nodes[node].replica.as_mut() {
            Some(r) if direct_read => r.read(now).map(Err).map_err(|e| e.to_string()),
            Some(r) => r
                .propose(now, payload.clone())
                .map(Ok)
                .map_err(|e| e.to_string()),
            None => Err("node down".into()),
        };
        match result {
            Ok(id) => {
                match id {
                    Ok(pid) => {
                        self.proposals.record(pid, payload);
                        self.waiting.insert(pid, client);
                    }
                    Err(rid) => {
                        self.waiting_reads.insert((node, rid), client);
                    }
                }
                let c = &mut self.clients[client];
                c.ops += 1;
                let seq = c.ops;
                c.pending = Some(PendingOp {
                    op,
                    id,
                    node,
                    call: self.now,
                    seq,
                });
                if !probe {
                    self.issued += 1;
                }
                self.schedule(OP_TIMEOUT_NS, Event::ClientTimeout { client, op: seq });
                self.drive(node)
            }
            Err(_) => {
                // Definitely not proposed: try another replica shortly.
                self.retry_elsewhere(client);
                Ok(())
            }
        }
    }

    pub(super) fn retry_elsewhere(&mut self, client: usize) {
        self.report.refused += 1;
        self.clients[client].node = (self.rng.next_u64() % self.nodes.len() as u64) as usize;
        let d = between(&mut self.rng, MS, 10 * MS);
        self.schedule(d, Event::ClientNext { client });
    }

    /// The pending operation definitely had no effect: forget it and go on.
    pub(super) fn client_refused(&mut self, client: usize) {
        if self.clients[client].pending.take().is_some() {
            self.retry_elsewhere(client);
        }
    }

    pub(super) fn random_op(&mut self, client: usize) -> KvOp {
        let key = self.rng.next_u64() % self.cfg.keys;
        let roll = self.rng.next_u64() % 100;
        let fresh = (client as u64 + 1) * 1_000_000 + self.clients[client].ops + 1;
        if roll < 40 {
            KvOp::Write { key, value: fresh }
        } else if roll < 75 {
            KvOp::Read { key }
        } else {
            let expected = self.last_values.get(&key).copied().unwrap_or(0);
            KvOp::Cas {
                key,
                expected,
                new: fresh,
            }
        }
    }

    pub(super) fn client_done(&mut self, client: usize, output: KvOutput) {
        let Some(p) = self.clients[client].pending.take() else {
            return;
        };
        match (p.op, output) {
            (KvOp::Write { key, value }, _)
            | (
                KvOp::Cas {
                    key, new: value, ..
                },
                KvOutput::Cas(true),
            ) => {
                self.last_values.insert(key, value);
            }
            (KvOp::Read { key }, KvOutput::Read(Some(v))) => {
                self.last_values.insert(key, v);
            }
            _ => {}
        }
        self.report.ok += 1;
        if matches!(p.op, KvOp::Read { .. }) {
            self.report.reads_ok += 1;
        } else {
            self.report.writes_ok += 1;
        }
        if self.clients[client].probe {
            self.probe_done = true;
            self.clients[client].probe = false;
        }
        self.record(client, &p, Some(output));
        let d = between(&mut self.rng, 0, 2 * MS);
        self.schedule(d, Event::ClientNext { client });
    }

    pub(super) fn client_unknown(&mut self, client: usize) {
        let Some(p) = self.clients[client].pending.take() else {
            return;
        };
        match p.id {
            Ok(pid) => {
                self.waiting.remove(&pid);
            }
            Err(rid) => {
                self.waiting_reads.remove(&(p.node, rid));
            }
        }
        self.report.unknown += 1;
        self.record(client, &p, None);
        self.clients[client].node = (self.rng.next_u64() % self.nodes.len() as u64) as usize;
        let d = between(&mut self.rng, 0, 2 * MS);
        self.schedule(d, Event::ClientNext { client });
    }

    pub(super) fn record(&mut self, client: usize, p: &PendingOp, output: Option<KvOutput>) {
        let input = match p.op {
            KvOp::Read { .. } => Input::Read,
            KvOp::Write { value, .. } => Input::Write(value),
            KvOp::Cas { expected, new, .. } => Input::Cas { expected, new },
        };
        let output = output.map(|o| match o {
            KvOutput::Read(v) => Output::Read(v),
            KvOutput::Written => Output::Write,
            KvOutput::Cas(hit) => Output::Cas(hit),
        });
        let ret = output.as_ref().map(|_| self.now);
        self.history.push(Operation {
            client: client as u64,
            key: p.op.key(),
            input,
            output,
            call: p.call,
            ret,
        });
    }
}
