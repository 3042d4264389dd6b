//! Node lifecycle in the core-mode world: start, crash, and carrying out each replica's
//! Ready (persist, send, apply).

use super::*;

impl World {
    pub(super) fn start_node(&mut self, n: usize) -> Result<(), String> {
        let cfg = self.config_for(n);
        let node = &mut self.nodes[n];
        node.storage = match self.cfg.bug {
            Some(Bug::ForgetPromiseOnRestart) => Box::new(ForgetfulStorage::new(node.disk.clone())),
            _ => Box::new(node.disk.clone()),
        };
        let mut recovered =
            block_on(node.storage.load()).map_err(|e| format!("load failed: {e}"))?;
        node.kv = Kv::default();
        node.paused_until = 0;
        self.restore_snapshot(n, &mut recovered)?;
        let now = self.local_now(n);
        let replica = Replica::new(cfg, recovered, now).map_err(|e| e.to_string())?;
        self.nodes[n].replica = Some(replica);
        self.drive(n)
    }

    pub(super) fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.replica.is_none() {
            return;
        }
        if let Some(r) = node.replica.take() {
            node.past_metrics = add_metrics(node.past_metrics, r.metrics());
        }
        node.waiting_persist.clear(); // not yet durable: lost
        node.incarnation += 1;
        node.timer_generation += 1;
        self.report.crashes += 1;
        let clients: Vec<usize> = (0..self.clients.len())
            .filter(|&c| {
                self.clients[c]
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.node == n)
            })
            .collect();
        for c in clients {
            self.client_unknown(c);
        }
    }

    /// Takes Readies from replica `n` until it has none or as many wait on persists as it
    /// hands out.
    pub(super) fn drive(&mut self, n: usize) -> Result<(), String> {
        for _ in 0..1000 {
            if !self.nodes[n].waiting_persist.is_empty() {
                // What was chosen meanwhile is applied and answered at once, before the
                // persists end, as the node's driver does (`Replica::poll_chosen`), when
                // the waiting Readys' own values were.
                while self.nodes[n].apply_early {
                    let Some(chosen) = self.nodes[n].replica.as_mut().and_then(|r| r.poll_chosen())
                    else {
                        break;
                    };
                    self.apply(n, &chosen.committed)?;
                    self.answer_reads(n, chosen.reads);
                }
            }
            let Some(r) = self.nodes[n].replica.as_mut() else {
                return Ok(());
            };
            // The replica hands out at most its `max_outstanding_readys`.
            let Some(mut ready) = r.poll_ready() else {
                break;
            };
            if ready.persist.is_empty() && self.nodes[n].waiting_persist.is_empty() {
                self.finish_ready(n, ready)?;
                continue;
            }
            // What may leave before the persist leaves now: a crash while it is under
            // way then loses the persist after those messages went out.
            let early: Vec<_> = ready.messages.drain(..ready.early_messages).collect();
            ready.early_messages = 0;
            for envelope in early {
                self.promises.on_send(n, &envelope.message)?;
                self.transmit(n, envelope.to, envelope.message);
            }
            // Applied and answered now, while the persist runs, as the node's driver does
            // (the values are chosen, so on a majority's disks already), or after the
            // persist (see `SimNode::apply_early`). Readys behind another follow its way,
            // so that values are applied in the order they were handed out.
            if self.nodes[n].waiting_persist.is_empty() {
                let early = chance(&mut self.rng, 0.5);
                self.nodes[n].apply_early = early;
            }
            if self.nodes[n].apply_early {
                let committed = std::mem::take(&mut ready.committed);
                self.apply(n, &committed)?;
                self.answer_reads(n, std::mem::take(&mut ready.reads));
            }
            if !ready.persist.is_empty() {
                let latency = if chance(&mut self.rng, 0.02) {
                    between(&mut self.rng, MS, 20 * MS)
                } else {
                    between(&mut self.rng, 50_000, 400_000)
                };
                // In order: a later persist never ends before an earlier one.
                let at = (self.now + latency).max(self.nodes[n].persist_done_at);
                self.nodes[n].persist_done_at = at;
                let incarnation = self.nodes[n].incarnation;
                self.schedule(
                    at - self.now,
                    Event::PersistDone {
                        node: n,
                        incarnation,
                    },
                );
            }
            // One with nothing to persist waits for the persists before it.
            self.nodes[n].waiting_persist.push_back(ready);
        }
        self.schedule_timer(n);
        Ok(())
    }

    pub(super) fn schedule_timer(&mut self, n: usize) {
        let Some(r) = self.nodes[n].replica.as_ref() else {
            return;
        };
        let Some(at) = r.poll_timeout() else { return };
        let delay = self.global_time(n, at).saturating_sub(self.now);
        self.nodes[n].timer_generation += 1;
        let generation = self.nodes[n].timer_generation;
        self.schedule(
            delay,
            Event::Timer {
                node: n,
                generation,
            },
        );
    }

    /// Persist (durable now), then send, then apply, then advance.
    pub(super) fn finish_ready(&mut self, n: usize, ready: Ready) -> Result<(), String> {
        if !ready.persist.is_empty() {
            block_on(self.nodes[n].storage.persist(&ready.persist))
                .map_err(|e| format!("persist failed: {e}"))?;
            for e in &ready.persist.entries {
                self.chosen.record(n, e)?;
            }
            // Fault point: crash soon after making a promise durable, the moment where a
            // replica that loses state does the most harm.
            let promised = ready.persist.hard_state.is_some() && ready.persist.entries.is_empty();
            if promised && chance(&mut self.rng, 0.05) {
                let d = between(&mut self.rng, 0, 3 * MS);
                self.schedule(d, Event::Crash { node: n });
            }
        }
        for envelope in ready.messages {
            self.promises.on_send(n, &envelope.message)?;
            self.transmit(n, envelope.to, envelope.message);
        }
        self.apply(n, &ready.committed)?;
        if let Some(fetch) = ready.fetch_snapshot {
            self.fetch_snapshot(n, fetch);
        }
        self.answer_reads(n, ready.reads);
        for id in ready.aborted_reads {
            if let Some(client) = self.waiting_reads.remove(&(n, id)) {
                // Leadership changed: the read was refused, nothing was read.
                self.report.reads_aborted += 1;
                self.client_refused(client);
            }
        }
        if let Some(r) = self.nodes[n].replica.as_mut() {
            r.advance(ready.id);
        }
        self.maybe_compact(n)
    }

    pub(super) fn transmit(&mut self, from: usize, to: NodeId, mut message: Message) {
        self.report.messages += 1;
        if let Message::Prepare(_) = message {
            self.report.prepares += 1;
        }
        let Some(to) = self.nodes.iter().position(|n| n.id == to) else {
            return;
        };
        if self.partition.blocks(from, to) {
            return;
        }
        if self.cfg.bug == Some(Bug::StripPromiseValues) {
            if let Message::Promise(p) = &mut message {
                p.accepted.clear();
                p.next = None;
            }
        }
        let mut copies = fate(&self.net, &mut self.rng);
        let Some(last) = copies.pop() else { return };
        for delay in copies {
            self.schedule(
                delay,
                Event::Deliver {
                    to,
                    from,
                    message: message.clone(),
                },
            );
        }
        self.schedule(last, Event::Deliver { to, from, message });
    }

    /// Answers the reads `reads` of replica `n` from its state machine as it is now.
    fn answer_reads(&mut self, n: usize, reads: Vec<ReadId>) {
        for id in reads {
            if let Some(client) = self.waiting_reads.remove(&(n, id)) {
                let key = self.clients[client]
                    .pending
                    .as_ref()
                    .map_or(0, |p| p.op.key());
                let output = self.nodes[n].kv.apply(KvOp::Read { key });
                self.client_done(client, output);
            }
        }
    }

    pub(super) fn apply(&mut self, n: usize, committed: &[Committed]) -> Result<(), String> {
        for c in committed {
            self.proposals.check(&c.value)?;
            self.applied.record(c, &self.chosen)?;
            for cmd in c.value.commands() {
                let op = KvOp::decode(&cmd.payload).ok_or("undecodable command applied")?;
                let output = self.nodes[n].kv.apply(op);
                if cmd.id.origin == self.nodes[n].id {
                    if let Some(client) = self.waiting.remove(&cmd.id) {
                        self.client_done(client, output);
                    }
                }
            }
        }
        Ok(())
    }
}
