//! Leader-lease arithmetic, kept pure and in one place. The rules it implements, and why,
//! are in [`lease_docs`](crate::lease_docs).

use std::time::Duration;

use crate::types::Instant;

/// Parts per million.
const PPM: u128 = 1_000_000;

/// How long an acceptor's grant lasts: from the Accept's arrival, on its own clock.
pub(crate) fn grant_end(received: Instant, lease: Duration) -> Instant {
    received + lease
}

/// Until when a leader may rely on a lease counted from an Accept it sent at `sent`.
pub(crate) fn leader_lease_end(sent: Instant, lease: Duration, drift_ppm: u32) -> Instant {
    let rho = u128::from(drift_ppm);
    let nanos = lease.as_nanos() * (PPM - rho) / (PPM + rho);
    sent + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The quorum-th largest stamp: the latest send time that a quorum has acknowledged.
pub(crate) fn quorum_stamp(acks: &[Option<Instant>], quorum: usize) -> Option<Instant> {
    let mut stamps: Vec<Instant> = acks.iter().flatten().copied().collect();
    if stamps.len() < quorum || quorum == 0 {
        return None;
    }
    stamps.sort_unstable_by(|a, b| b.cmp(a));
    Some(stamps[quorum - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_nanos(n * 1_000_000)
    }

    #[test]
    fn leader_lease_is_shortened_by_drift_from_the_send_time() {
        let lease = Duration::from_millis(100);
        assert_eq!(leader_lease_end(ms(10), lease, 0), ms(110));
        // 1% drift: 100 * 0.99 / 1.01 = 98.0198... ms
        let end = leader_lease_end(ms(10), lease, 10_000);
        assert_eq!(end.as_nanos(), 10_000_000 + 98_019_801);
        assert_eq!(grant_end(ms(10), lease), ms(110));
    }

    #[test]
    fn leader_never_outlives_a_grant_under_bounded_drift() {
        // Table: (drift ppm, acceptor clock rate ppm offset, leader clock rate ppm offset).
        let lease = Duration::from_millis(100);
        for (drift, acc, lead) in [
            (10_000i64, 10_000i64, -10_000i64),
            (50_000, 50_000, -50_000),
            (0, 0, 0),
        ] {
            // Real time (ns) at which the grant ends, for a message sent at real time 0
            // and received at once: lease measured on a clock running at 1 + acc.
            let grant_real = lease.as_nanos() as f64 / (1.0 + acc as f64 / 1e6);
            // Leader's lease in its own clock, converted to real time.
            let own = leader_lease_end(Instant::ZERO, lease, drift as u32).as_nanos() as f64;
            let lease_real = own / (1.0 + lead as f64 / 1e6);
            assert!(
                lease_real <= grant_real + 1.0,
                "drift {drift}: {lease_real} > {grant_real}"
            );
        }
    }

    #[test]
    fn quorum_stamp_table() {
        let s = |n| Some(ms(n));
        assert_eq!(quorum_stamp(&[s(5), s(9), s(7)], 2), Some(ms(7)));
        assert_eq!(quorum_stamp(&[s(5), None, s(7)], 2), Some(ms(5)));
        assert_eq!(quorum_stamp(&[s(5), None, None], 2), None);
        assert_eq!(
            quorum_stamp(&[s(1), s(2), s(3), s(4), s(5)], 3),
            Some(ms(3))
        );
    }
}
