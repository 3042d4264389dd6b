//! [`LockClient`]: acquire, release and look up locks through any node, retrying what the
//! node leaves unknown, within a deadline.

use std::sync::Arc;
use std::time::Duration;

use paxos_node::{Bytes, NodeHandle, ProposeError, ReadError, Runtime, timeout_at};

use crate::machine::{Command, Holder, Query, Response};

/// How long one client call keeps retrying, by default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Back-off after an `Overloaded` answer: the node's queues drain at their own pace.
const OVERLOADED_BACKOFF: Duration = Duration::from_millis(10);

/// Why a client call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No node gave an answer within the deadline. For a write the outcome is unknown.
    #[error("no answer within {0:?}; the outcome is unknown")]
    Timeout(Duration),
    /// Every node the client knows has stopped.
    #[error("every node is stopped")]
    AllStopped,
    /// A node refused the request for good (too large, say). Nothing was proposed.
    #[error("refused: {0}")]
    Refused(String),
    /// The state machine's answer could not be decoded (a node running other code?).
    #[error("an answer that is not a lock service response")]
    BadResponse,
}

/// A client of the lock service, over the [`NodeHandle`]s of a cluster.
///
/// Any node takes requests: a follower forwards writes to the leader, and serves reads
/// through the log. The client sticks to the node that last answered and, when a node
/// reports no leader, a leadership change or a timeout, retries on the leader it names,
/// until its deadline. Retrying is safe because the commands are built for it: an
/// acquire by the current holder returns its token again, and a release that already
/// went through answers [`Response::NotHeld`] (or [`Response::NotOwner`], if someone
/// else took the lock since).
#[derive(Clone, Debug)]
pub struct LockClient {
    runtime: Arc<dyn Runtime>,
    nodes: Vec<NodeHandle>,
    /// The node tried first.
    at: usize,
    deadline: Duration,
}

/// What to do after a failed attempt.
enum Next {
    Retry,
    Backoff,
    /// The node stopped: try another.
    Stopped,
    Fail(ClientError),
}

impl LockClient {
    /// A client that sends to `nodes`, trying `nodes[0]` first.
    pub fn new(runtime: Arc<dyn Runtime>, nodes: Vec<NodeHandle>) -> Self {
        Self {
            runtime,
            nodes,
            at: 0,
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// Tries `nodes[i]` first.
    pub fn prefer(mut self, i: usize) -> Self {
        self.at = i;
        self
    }

    /// How long each call keeps retrying. Default [`DEFAULT_DEADLINE`].
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Takes `lock` for `owner`: [`Response::Acquired`] with the fencing token, or
    /// [`Response::Held`] if someone else has it.
    pub async fn acquire(&mut self, lock: &str, owner: &str) -> Result<Response, ClientError> {
        let command = Command::Acquire {
            lock: lock.into(),
            owner: owner.into(),
        };
        self.propose(command.encode()).await
    }

    /// Gives `lock` back: [`Response::Released`], or [`Response::NotOwner`] /
    /// [`Response::NotHeld`] if `owner` does not hold it under `token`.
    pub async fn release(
        &mut self,
        lock: &str,
        owner: &str,
        token: u64,
    ) -> Result<Response, ClientError> {
        let command = Command::Release {
            lock: lock.into(),
            owner: owner.into(),
            token,
        };
        self.propose(command.encode()).await
    }

    /// Who holds `lock`, linearizably: the answer reflects every acquire and release that
    /// completed before the call.
    pub async fn holder(&mut self, lock: &str) -> Result<Option<Holder>, ClientError> {
        let query = Query::Holder { lock: lock.into() };
        match self.read(query.encode()).await? {
            Response::HolderIs(holder) => Ok(holder),
            _ => Err(ClientError::BadResponse),
        }
    }

    /// Proposes an encoded command until a node applies it, and decodes its response.
    pub async fn propose(&mut self, command: Bytes) -> Result<Response, ClientError> {
        let answer = self
            .retry(|node| {
                let command = command.clone();
                async move {
                    node.propose(command).await.map_err(|e| match e {
                        ProposeError::NoLeader
                        | ProposeError::LeadershipChanged
                        | ProposeError::Timeout => Next::Retry,
                        ProposeError::Overloaded => Next::Backoff,
                        ProposeError::Fatal(_) => Next::Stopped,
                        other => Next::Fail(ClientError::Refused(other.to_string())),
                    })
                }
            })
            .await?;
        Response::decode(&answer).ok_or(ClientError::BadResponse)
    }

    /// Sends an encoded query until a node answers it, and decodes the answer.
    pub async fn read(&mut self, query: Bytes) -> Result<Response, ClientError> {
        let answer = self
            .retry(|node| {
                let query = query.clone();
                async move {
                    node.read(query).await.map_err(|e| match e {
                        ReadError::NoLeader | ReadError::LeadershipChanged | ReadError::Timeout => {
                            Next::Retry
                        }
                        ReadError::Overloaded => Next::Backoff,
                        ReadError::Fatal(_) => Next::Stopped,
                        other => Next::Fail(ClientError::Refused(other.to_string())),
                    })
                }
            })
            .await?;
        Response::decode(&answer).ok_or(ClientError::BadResponse)
    }

    /// Runs `attempt` on one node after another until one answers, or the deadline.
    async fn retry<F, Fut>(&mut self, mut attempt: F) -> Result<Bytes, ClientError>
    where
        F: FnMut(NodeHandle) -> Fut,
        Fut: Future<Output = Result<Bytes, Next>>,
    {
        if self.nodes.is_empty() {
            return Err(ClientError::AllStopped);
        }
        let rt = self.runtime.clone();
        let limit = self.deadline;
        let deadline = rt.now() + limit;
        let attempts = async {
            // Bounded by the deadline around it: every arm either waits or moves on.
            loop {
                let node = self.nodes[self.at % self.nodes.len()].clone();
                let next = match attempt(node.clone()).await {
                    Ok(answer) => return Ok(answer),
                    Err(next) => next,
                };
                match next {
                    Next::Retry => self.follow_leader(&node).await,
                    Next::Backoff => rt.sleep(OVERLOADED_BACKOFF).await,
                    Next::Stopped => {
                        if self.nodes.iter().all(|n| n.status().stopped.is_some()) {
                            return Err(ClientError::AllStopped);
                        }
                        self.at += 1;
                    }
                    Next::Fail(e) => return Err(e),
                }
            }
        };
        timeout_at(&*rt, deadline, attempts)
            .await
            .unwrap_or(Err(ClientError::Timeout(limit)))
    }

    /// After `node` could not tell the outcome: wait until it knows a leader (at most a
    /// second, so that a node cut off from the others is left soon), then aim at that
    /// leader, if the client knows it, or else the next node.
    async fn follow_leader(&mut self, node: &NodeHandle) {
        let status = node
            .wait_for(Duration::from_secs(1), |s| {
                s.leader.is_some() || s.stopped.is_some()
            })
            .await;
        let leader = status.and_then(|s| s.leader);
        match self.nodes.iter().position(|n| Some(n.id()) == leader) {
            Some(i) if self.nodes[i].status().stopped.is_none() => self.at = i,
            _ => self.at += 1,
        }
    }
}
