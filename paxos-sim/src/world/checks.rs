//! The core-mode checks run at phase ends and at the end of a run: liveness after
//! healing, the lease invariant, linearizability; and the metrics total.

use super::*;

impl World {
    pub(super) fn check_phase(&mut self) -> Result<(), String> {
        match self.phase {
            Phase::Workload => {
                let idle = self.clients.iter().all(|c| c.pending.is_none());
                if self.issued >= self.cfg.ops && idle {
                    self.heal()?;
                }
            }
            Phase::Healing { since } => {
                let views: Vec<ReplicaView> = self
                    .nodes
                    .iter()
                    .map(|n| match n.replica.as_ref() {
                        Some(r) => {
                            let s = r.status();
                            ReplicaView {
                                up: true,
                                commit: s.commit,
                                applied: s.applied,
                                idle: n.waiting_persist.is_empty(),
                                role: Some(s.role),
                                promised: s.promised,
                            }
                        }
                        None => ReplicaView {
                            up: false,
                            commit: Default::default(),
                            applied: Default::default(),
                            idle: false,
                            role: None,
                            promised: Default::default(),
                        },
                    })
                    .collect();
                if converged(self.probe_done, self.chosen.max_chosen(), &views) {
                    self.report.heal_ms = (self.now - since) / MS;
                    self.phase = Phase::Done;
                    // Same applied point everywhere, so the same registers: whether a
                    // replica replayed the log or installed a snapshot.
                    let first = self.nodes[0].kv.contents();
                    if let Some(other) = self.nodes.iter().find(|n| n.kv.contents() != first) {
                        return Err(format!(
                            "replicas 1 and {} applied the same log into different states",
                            other.id
                        ));
                    }
                } else if self.now > since + HEAL_BOUND_NS {
                    return Err(format!(
                        "liveness: not converged {} ms after faults healed (probe done: {}, views: {views:?})",
                        HEAL_BOUND_NS / MS,
                        self.probe_done
                    ));
                }
            }
            Phase::Done => {}
        }
        Ok(())
    }

    pub(super) fn check_leases(&self) -> Result<(), String> {
        if !self.cfg.leases {
            return Ok(());
        }
        let views: Vec<LeaseView> = (0..self.nodes.len())
            .filter_map(|n| {
                let r = self.nodes[n].replica.as_ref()?;
                Some(LeaseView {
                    node: n,
                    local_now: self.local_now(n),
                    until: r.status().lease_until,
                })
            })
            .collect();
        at_most_one_holder(&views)
    }

    pub(super) fn check_history(&mut self) -> Result<(), String> {
        let mut total = Metrics::default();
        for node in &self.nodes {
            total = add_metrics(total, node.past_metrics);
            if let Some(r) = node.replica.as_ref() {
                total = add_metrics(total, r.metrics());
            }
        }
        self.report.lease_reads = total.lease_reads;
        self.report.read_index_reads = total.read_index_reads;
        self.report.read_rounds = total.read_rounds;
        self.report.elections = total.elections_started;
        let started = std::time::Instant::now();
        let verdict =
            paxos_lincheck::check(&self.history, &paxos_lincheck::CheckOptions::default());
        self.report.check_us = started.elapsed().as_micros() as u64;
        self.report.leaders = self
            .nodes
            .iter()
            .filter(|n| {
                n.replica
                    .as_ref()
                    .is_some_and(|r| r.status().role == Role::Leader)
            })
            .count();
        match verdict {
            paxos_lincheck::Verdict::Linearizable => Ok(()),
            paxos_lincheck::Verdict::NotLinearizable { key, detail } => {
                Err(format!("history not linearizable on key {key}: {detail}"))
            }
            paxos_lincheck::Verdict::Unknown { key } => {
                // A check that gave up proves nothing: it fails the seed.
                self.report.lincheck_unknown = true;
                Err(format!(
                    "the linearizability check ran out of budget on key {key} (an Unknown \
                     verdict fails the seed)"
                ))
            }
        }
    }
}

pub(super) fn add_metrics(a: Metrics, b: Metrics) -> Metrics {
    a + b
}
