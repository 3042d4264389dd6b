//! Client conveniences: [`Applied`] (a write's output with its log position) and
//! [`wait_for_leader`] (a cluster-wide "ready to serve").

use std::time::Duration;

use bytes::Bytes;
use paxos_core::{NodeId, Role, Slot};

use crate::handle::{NodeHandle, NodeStatus};
use crate::runtime::timeout_at;

/// A command applied on this node: what [`NodeHandle::propose_with_slot`] returns.
///
/// `slot` is the position in the replicated log of the batch that held the command. It is
/// the same on every replica, since every replica applies the same chosen log in slot
/// order. Several commands may share a slot: the leader batches the proposals it has
/// queued into one slot, and the commands of a slot are applied in their order in the
/// batch, one after the other, on every replica. So `(slot, order in the batch)` is the
/// command's position in the total order of writes, and a replica whose
/// [`NodeStatus::applied`] is above `slot` has applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// The log slot whose batch held the command.
    pub slot: Slot,
    /// The state machine's output for the command.
    pub output: Bytes,
}

/// Waits until the nodes behind `nodes` agree on a leader that can serve, for at most
/// `timeout`; returns that leader, or `None` on timeout.
///
/// "Leader known" is per node: one node may know the new leader while another still has
/// none (and refuses proposals with [`NoLeader`](crate::ProposeError::NoLeader)). This
/// returns once **every node in `nodes` that has not stopped** names the same leader `L`
/// in its [`status`](NodeHandle::status), and `L` is itself among `nodes`, has not
/// stopped, and reports [`Role::Leader`], which it does only once its phase 1 is complete
/// and it takes proposals. At that moment a proposal on any of those nodes goes to `L`
/// (a follower forwards it) rather than failing with `NoLeader`; of course a later
/// election can still change the leader.
///
/// It sees only the handles given, which all live in this process, and the leader must be
/// one of them: after a leader stops, its followers keep naming it until they notice, so
/// their agreement alone proves nothing. For nodes in separate processes, each process
/// checks its own node (for example with [`NodeHandle::wait_for`]).
///
/// It wakes on the nodes' status changes and never polls. It returns `None` at once if
/// `nodes` is empty or every node in it has stopped, since no view can change then.
///
/// ```no_run
/// # async fn example(nodes: Vec<paxos_node::NodeHandle>) {
/// use std::time::Duration;
///
/// let leader = paxos_node::wait_for_leader(&nodes, Duration::from_secs(10)).await;
/// assert!(leader.is_some(), "no leader within 10 s");
/// for node in &nodes {
///     node.propose(bytes::Bytes::from_static(b"hello")).await.unwrap();
/// }
/// # }
/// ```
pub async fn wait_for_leader(nodes: &[NodeHandle], timeout: Duration) -> Option<NodeId> {
    let runtime = nodes.first()?.runtime.clone();
    let deadline = runtime.now() + timeout;
    let wait = async {
        loop {
            // Listen before reading, so that a change between the two wakes us.
            let changes: Vec<_> = nodes.iter().map(|n| n.shared.listen()).collect();
            let statuses: Vec<NodeStatus> = nodes.iter().map(NodeHandle::status).collect();
            match agreed_leader(&statuses) {
                Agreement::Leader(leader) => return Some(leader),
                Agreement::AllStopped => return None,
                Agreement::Not => {}
            }
            futures::future::select_all(changes).await;
        }
    };
    timeout_at(&*runtime, deadline, wait).await.flatten()
}

/// What a set of statuses says about the leader.
#[derive(Debug, PartialEq, Eq)]
enum Agreement {
    /// Every running node names this leader, and it serves if it is among them.
    Leader(NodeId),
    /// Not (yet) agreed.
    Not,
    /// No node is running: nothing will change.
    AllStopped,
}

/// The condition of [`wait_for_leader`], on one reading of every node's status.
fn agreed_leader(statuses: &[NodeStatus]) -> Agreement {
    let mut running = statuses.iter().filter(|s| s.stopped.is_none()).peekable();
    let Some(leader) = running.peek().map(|s| s.leader) else {
        return Agreement::AllStopped;
    };
    let Some(leader) = leader else {
        return Agreement::Not;
    };
    if running.any(|s| s.leader != Some(leader)) {
        return Agreement::Not;
    }
    // The leader must be among the nodes and say so itself: a stopped one's followers hold
    // a stale view until they notice, and one still in phase 1 is a candidate.
    let serves = statuses
        .iter()
        .any(|s| s.id == leader && s.stopped.is_none() && s.role == Role::Leader);
    if serves {
        Agreement::Leader(leader)
    } else {
        Agreement::Not
    }
}

#[cfg(test)]
mod tests {
    use paxos_core::Ballot;

    use super::*;
    use crate::error::FatalError;

    fn status(id: u64, role: Role, leader: Option<u64>) -> NodeStatus {
        NodeStatus {
            id: NodeId(id),
            role,
            ballot: Ballot::ZERO,
            leader: leader.map(NodeId),
            commit: Slot(0),
            applied: Slot(0),
            lease_held: false,
            stopped: None,
        }
    }

    fn stopped(mut s: NodeStatus) -> NodeStatus {
        s.stopped = Some(FatalError::Stopped);
        s
    }

    #[test]
    fn agreement_needs_every_running_node_and_a_serving_leader() {
        use Role::{Candidate, Follower, Leader};
        let l = Agreement::Leader(NodeId(1));
        let rows = [
            (vec![], Agreement::AllStopped),
            (
                vec![stopped(status(1, Leader, Some(1)))],
                Agreement::AllStopped,
            ),
            (
                vec![status(1, Leader, Some(1))],
                Agreement::Leader(NodeId(1)),
            ),
            (
                vec![status(1, Leader, Some(1)), status(2, Follower, Some(1))],
                Agreement::Leader(NodeId(1)),
            ),
            // One node does not know the leader yet.
            (
                vec![status(1, Leader, Some(1)), status(2, Follower, None)],
                Agreement::Not,
            ),
            // Two leaders named.
            (
                vec![status(2, Follower, Some(1)), status(3, Follower, Some(3))],
                Agreement::Not,
            ),
            // The named leader is among the nodes but still in phase 1.
            (
                vec![status(1, Candidate, Some(1)), status(2, Follower, Some(1))],
                Agreement::Not,
            ),
            // The named leader is among the nodes but stopped: the others' view is stale.
            (
                vec![
                    stopped(status(1, Leader, Some(1))),
                    status(2, Follower, Some(1)),
                ],
                Agreement::Not,
            ),
            // The leader is not among the nodes (its handle was dropped after it stopped, say):
            // the others' agreement may be stale, so it is not enough.
            (
                vec![status(2, Follower, Some(1)), status(3, Follower, Some(1))],
                Agreement::Not,
            ),
            // A stopped follower does not count.
            (
                vec![
                    status(1, Leader, Some(1)),
                    stopped(status(2, Follower, None)),
                ],
                l,
            ),
        ];
        for (i, (statuses, expected)) in rows.into_iter().enumerate() {
            assert_eq!(agreed_leader(&statuses), expected, "row {i}");
        }
    }
}
