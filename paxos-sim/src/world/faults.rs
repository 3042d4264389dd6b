//! Fault injection and healing in the core-mode world.

use super::*;

impl World {
    pub(super) fn inject_fault(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        let roll = self.rng.next_u64() % 100;
        let down = self.nodes.iter().filter(|x| x.replica.is_none()).count();
        if roll < 25 {
            let victim = (self.rng.next_u64() % n as u64) as usize;
            if down < n / 2 || chance(&mut self.rng, 0.1) {
                self.crash(victim);
                // A third of restarts are quick, like a supervisor restarting a process.
                let d = if chance(&mut self.rng, 0.33) {
                    between(&mut self.rng, MS / 2, 5 * MS)
                } else {
                    between(&mut self.rng, 5 * MS, 150 * MS)
                };
                self.schedule(d, Event::Restart { node: victim });
            }
        } else if roll < 55 && (self.partition.cut.is_empty() || chance(&mut self.rng, 0.25)) {
            // A partition mostly runs its course (up to 200 ms) before another replaces it,
            // long enough to isolate a leader past the election timeout.
            let node = (self.rng.next_u64() % n as u64) as usize;
            let other = (node + 1 + (self.rng.next_u64() % (n as u64 - 1)) as usize) % n;
            self.partition = match self.rng.next_u64() % 5 {
                0 => Partition::isolate(n, node),
                1 => Partition::split(n, &mut self.rng),
                2 => Partition::random_links(n, &mut self.rng),
                3 => Partition::bridge(node, other),
                _ => Partition::one_way(n, node, chance(&mut self.rng, 0.5)),
            };
            self.report.partitions += 1;
            self.partition_generation += 1;
            let generation = self.partition_generation;
            let d = between(&mut self.rng, 10 * MS, 200 * MS);
            self.schedule(d, Event::HealPartition { generation });
        } else if roll < 62 {
            let node = (self.rng.next_u64() % n as u64) as usize;
            self.schedule(0, Event::Pause { node });
        } else if roll < 80 {
            self.net = NetConfig {
                drop: between(&mut self.rng, 0, 20) as f64 / 100.0,
                duplicate: between(&mut self.rng, 0, 10) as f64 / 100.0,
                delay_min_ns: 50_000,
                delay_max_ns: between(&mut self.rng, 500_000, 5 * MS),
                slow: between(&mut self.rng, 0, 5) as f64 / 100.0,
            };
        } else if roll < 85 {
            self.net = NetConfig::quiet();
        }
        Ok(())
    }

    /// Ends the faults: every link heals, the network turns quiet, crashed replicas
    /// restart, and a probe write is proposed.
    pub(super) fn heal(&mut self) -> Result<(), String> {
        self.phase = Phase::Healing { since: self.now };
        self.partition = Partition::default();
        self.partition_generation += 1;
        self.net = NetConfig::quiet();
        for n in 0..self.nodes.len() {
            if self.nodes[n].replica.is_none() {
                self.start_node(n)?;
            }
        }
        self.clients[0].probe = true;
        self.schedule(0, Event::ClientNext { client: 0 });
        Ok(())
    }
}
