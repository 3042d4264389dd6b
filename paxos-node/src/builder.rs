//! [`NodeBuilder`]: assembles a node from its parts and starts its driver.

use std::sync::Arc;

use paxos_core::{Config, Replica, StateMachine, Storage, Transport};

use crate::command;
use crate::driver::{self, DoneSignal, Driver};
use crate::error::StartError;
use crate::handle::{NodeHandle, NodeStatus, Shared};
use crate::options::NodeOptions;
use crate::runtime::{Runtime, default_runtime};
use crate::waiters::Waiters;

/// Builds a node: the core [`Config`] (which holds the node id and the members), a
/// transport, a storage backend, a state machine, and optionally a runtime and
/// [`NodeOptions`].
///
/// A one-member cluster on tokio, over TCP on loopback, with memory storage and a state
/// machine that counts the bytes it applied (the members of a real cluster are 3 or 5,
/// each built this way with its own id):
///
/// ```
/// # #[cfg(feature = "runtime-tokio")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::collections::BTreeMap;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use bytes::Bytes;
/// use paxos_core::{Committed, Config, NodeId, ProposalId, StateMachine, StateMachineError};
/// use paxos_net_tcp::{TcpConfig, TcpTransport};
/// use paxos_node::{NodeBuilder, Runtime, TokioRuntime};
/// use paxos_storage::MemoryStorage;
///
/// /// Applies each command by adding its length to a total, and answers the total.
/// #[derive(Default)]
/// struct Total(u64);
///
/// #[async_trait::async_trait]
/// impl StateMachine for Total {
///     async fn apply(
///         &mut self,
///         committed: &[Committed],
///         outputs: &mut Vec<(ProposalId, Bytes)>,
///     ) -> Result<(), StateMachineError> {
///         for command in committed.iter().flat_map(|c| c.value.commands()) {
///             self.0 += command.payload.len() as u64;
///             outputs.push((command.id, Bytes::from(self.0.to_string())));
///         }
///         Ok(())
///     }
///     async fn query(&mut self, _query: &[u8]) -> Result<Bytes, StateMachineError> {
///         Ok(Bytes::from(self.0.to_string()))
///     }
///     async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
///         Ok(Bytes::from(self.0.to_string()))
///     }
///     async fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
///         self.0 = std::str::from_utf8(snapshot).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
///         Ok(())
///     }
/// }
///
/// let tokio = tokio::runtime::Runtime::new()?;
/// tokio.block_on(async {
///     let runtime: Arc<dyn Runtime> = Arc::new(TokioRuntime::current().unwrap());
///     let id = NodeId(1);
///     let tcp = TcpConfig::new(7, id, "127.0.0.1:0".parse()?, BTreeMap::new());
///     let transport = TcpTransport::start(tcp, runtime.clone())?;
///     let node = NodeBuilder::new(Config::new(id, vec![id]))
///         .runtime(runtime)
///         .transport(Box::new(transport))
///         .storage(Box::new(MemoryStorage::new()))
///         .state_machine(Box::new(Total::default()))
///         .start()
///         .await?;
///     // A proposal before any leader is known fails at once with `NoLeader`: wait (boundedly)
///     // for the first election.
///     let elected = node.wait_for(Duration::from_secs(10), |s| s.leader.is_some()).await;
///     assert!(elected.is_some(), "no leader within 10 s");
///     let output = node.propose(Bytes::from_static(b"set x 1")).await?;
///     assert_eq!(output, "7");
///     assert_eq!(node.read(Bytes::new()).await?, "7");
///     node.shutdown().await;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })
/// # }
/// # #[cfg(not(feature = "runtime-tokio"))]
/// # fn main() {}
/// ```
#[must_use = "a builder does nothing until `start` is called"]
pub struct NodeBuilder {
    config: Config,
    options: NodeOptions,
    transport: Option<Box<dyn Transport>>,
    storage: Option<Box<dyn Storage>>,
    state_machine: Option<Box<dyn StateMachine>>,
    runtime: Option<Arc<dyn Runtime>>,
}

impl NodeBuilder {
    /// A builder for the replica `config.id` of the cluster `config.members`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            options: NodeOptions::default(),
            transport: None,
            storage: None,
            state_machine: None,
            runtime: None,
        }
    }

    /// The driver's bounds and timeouts.
    pub fn options(mut self, options: NodeOptions) -> Self {
        self.options = options;
        self
    }

    /// How to reach the peers. Required.
    pub fn transport(mut self, transport: Box<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Where to keep promises and accepted values. Required. On start the node loads it and
    /// recovers from what it holds.
    pub fn storage(mut self, storage: Box<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The replicated service. Required. It must start empty: the node replays every
    /// chosen slot into it from slot 0 (there are no snapshots yet).
    pub fn state_machine(mut self, state_machine: Box<dyn StateMachine>) -> Self {
        self.state_machine = Some(state_machine);
        self
    }

    /// The runtime to spawn the driver on and take time from. Defaults to
    /// [`default_runtime`].
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Validates the configs, loads storage, builds the [`Replica`] and spawns the driver
    /// task. The node serves (as acceptor and, once elected, leader) until
    /// [`NodeHandle::shutdown`] or a fatal error.
    pub async fn start(self) -> Result<NodeHandle, StartError> {
        let Self {
            config,
            options,
            transport,
            storage,
            state_machine,
            runtime,
        } = self;
        let transport = transport.ok_or(StartError::Missing("transport"))?;
        let mut storage = storage.ok_or(StartError::Missing("storage"))?;
        let state_machine = state_machine.ok_or(StartError::Missing("state machine"))?;
        let runtime = runtime
            .or_else(default_runtime)
            .ok_or(StartError::NoRuntime)?;
        options.validate().map_err(StartError::Config)?;
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        // Every message the core builds is bounded by `max_message_bytes`; its frame adds
        // the version byte. Checked here, where both sides are known, so that no message
        // is ever too large for the transport (it would be dropped, forever).
        let frame_limit = transport.max_frame_bytes();
        if config.max_message_bytes.saturating_add(1) > frame_limit {
            return Err(StartError::Config(format!(
                "max_message_bytes ({}) does not fit the transport's frame limit ({frame_limit} \
                 bytes, one of them the version byte)",
                config.max_message_bytes
            )));
        }
        if config.max_batch_bytes <= command::TAG_BYTES {
            return Err(StartError::Config(format!(
                "max_batch_bytes must exceed the node's {}-byte command tag",
                command::TAG_BYTES
            )));
        }
        let recovered = storage
            .load()
            .await
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let origin = runtime.now();
        let replica = Replica::new(config.clone(), recovered, paxos_core::Instant::ZERO)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let status = replica.status();
        let shared = Arc::new(Shared::new(NodeStatus {
            id: status.id,
            role: status.role,
            ballot: status.promised,
            leader: status.leader,
            commit: status.commit,
            applied: status.applied,
            lease_held: false,
            stopped: None,
        }));
        let (requests_tx, requests) = async_channel::bounded(options.request_queue);
        let (control_tx, control) = async_channel::bounded(1);
        let handle = NodeHandle {
            id: config.id,
            shared: shared.clone(),
            requests: requests_tx.clone(),
            control: control_tx.clone(),
            runtime: runtime.clone(),
            request_timeout: options.request_timeout,
            max_command_bytes: config.max_batch_bytes - command::TAG_BYTES,
        };
        let cap = options.max_waiters.unwrap_or(config.max_pending_proposals);
        let driver = Driver {
            replica,
            transport,
            storage,
            state_machine,
            timer: runtime.new_timer(origin),
            runtime: runtime.clone(),
            options,
            requests,
            _requests_open: requests_tx,
            control,
            _control_open: control_tx,
            origin,
            now: paxos_core::Instant::ZERO,
            waiters: Waiters::new(cap),
            stashed: None,
            new_reads: Vec::new(),
            inbound: Vec::new(),
            outputs: Vec::new(),
            markers: Vec::new(),
            leader: status.leader,
            shared: shared.clone(),
            _done: DoneSignal(shared),
        };
        runtime.spawn(Box::pin(driver::run(driver)));
        Ok(handle)
    }
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("options", &self.options)
            .field("transport", &self.transport.is_some())
            .field("storage", &self.storage.is_some())
            .field("state_machine", &self.state_machine.is_some())
            .field("runtime", &self.runtime)
            .finish()
    }
}
