//! [`NodeOptions`]: the driver's own bounds and timeouts (the protocol's are in
//! [`paxos_core::Config`]).

use std::time::Duration;

use crate::error::OptionsError;

/// The driver's bounds and timeouts. Build with [`NodeOptions::default`] and adjust.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeOptions {
    /// How long a [`propose`](crate::NodeHandle::propose) or
    /// [`read`](crate::NodeHandle::read) waits for its outcome before returning `Timeout`.
    /// A backstop: leadership changes fail requests sooner.
    pub request_timeout: Duration,
    /// Client requests queued for the driver. A request that does not fit is refused at
    /// once with `Overloaded`.
    pub request_queue: usize,
    /// Requests waiting for their outcome (proposals and reads together). `None` uses the
    /// core's [`max_pending_proposals`](paxos_core::Config::max_pending_proposals). A
    /// request beyond it is refused with `Overloaded`.
    pub max_waiters: Option<usize>,
    /// Client requests taken from the queue in one driver cycle.
    pub max_requests_per_cycle: usize,
    /// Inbound messages taken from the transport in one driver cycle.
    pub max_inbound_per_cycle: usize,
}

impl Default for NodeOptions {
    /// Request timeout 5 s, 1024 queued requests, 1024 requests and 1024 messages per
    /// cycle, waiters bounded by the core's pending-proposal bound.
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            request_queue: 1024,
            max_waiters: None,
            max_requests_per_cycle: 1024,
            max_inbound_per_cycle: 1024,
        }
    }
}

impl NodeOptions {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let zero = |field| {
            Err(OptionsError {
                field,
                reason: "must be at least 1",
            })
        };
        if self.request_timeout.is_zero() {
            return Err(OptionsError {
                field: "request_timeout",
                reason: "must be non-zero",
            });
        }
        if self.request_queue == 0 {
            return zero("request_queue");
        }
        if self.max_waiters == Some(0) {
            return zero("max_waiters");
        }
        if self.max_requests_per_cycle == 0 {
            return zero("max_requests_per_cycle");
        }
        if self.max_inbound_per_cycle == 0 {
            return zero("max_inbound_per_cycle");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_each_zero_bound() {
        assert_eq!(NodeOptions::default().validate(), Ok(()));
        let cases: Vec<fn(&mut NodeOptions)> = vec![
            |o| o.request_timeout = Duration::ZERO,
            |o| o.request_queue = 0,
            |o| o.max_waiters = Some(0),
            |o| o.max_requests_per_cycle = 0,
            |o| o.max_inbound_per_cycle = 0,
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let mut o = NodeOptions::default();
            case(&mut o);
            assert!(o.validate().is_err(), "case {i} accepted");
        }
    }
}
