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
/// ```no_run
/// # #[cfg(feature = "runtime-tokio")]
/// # async fn example(
/// #     transport: Box<dyn paxos_core::Transport>,
/// #     storage: Box<dyn paxos_core::Storage>,
/// #     state_machine: Box<dyn paxos_core::StateMachine>,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use paxos_core::{Config, NodeId};
/// use paxos_node::NodeBuilder;
///
/// let config = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)]);
/// let node = NodeBuilder::new(config)
///     .transport(transport)
///     .storage(storage)
///     .state_machine(state_machine)
///     .start()
///     .await?;
/// let output = node.propose(Bytes::from_static(b"set x 1")).await?;
/// println!("applied: {output:?}, status: {:?}", node.status());
/// node.shutdown().await;
/// # Ok(()) }
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
