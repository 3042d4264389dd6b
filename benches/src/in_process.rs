//! One replica inside the harness process (`--cluster in-process`): the library's
//! [`Server`], on a runtime of its own.
//!
//! * **tokio**: each replica gets its own runtime, as a `paxos-node serve --runtime tokio
//!   --threads N` process has: for one thread a current-thread runtime, driven by a thread
//!   of its own (a process drives it from `main`), for more a multi-threaded one with N
//!   workers. Its threads are named `node-<id>`.
//! * **smol**: `AsyncIoRuntime` runs on smol's one global executor and async-io's one
//!   reactor, so the three replicas share them (the executor gets one thread per CPU:
//!   `main` sets `SMOL_THREADS`; `--threads` does not apply). Three processes would have
//!   three of each; that is the one combination that differs in more than the address
//!   space.
//!
//! The server is started and shut down by a task on its own runtime (a oneshot brings the
//! result back to the harness's thread), so nothing of it runs on the clients' runtime.
//! The replicas log nothing: the harness installs no `tracing` subscriber (the process mode
//! keeps each node's warnings in its log file). A replica that stops is reported with the
//! node's own reason.

use std::future::Future;
use std::sync::Arc;

use paxos_kv::server::{RuntimeKind, Server, ServerConfig};
use paxos_node::{AsyncIoRuntime, Runtime, TokioRuntime};
use tokio::sync::oneshot;

/// A running replica. Dropping it without [`shutdown`](Self::shutdown) stops its
/// listeners and, on tokio, its whole runtime (its tasks are dropped where they stand).
pub(crate) struct Replica {
    id: u64,
    server: Option<Server>,
    runtime: Arc<dyn Runtime>,
    /// The tokio runtime this replica owns; `None` on smol (the global executor).
    tokio: Option<Owned>,
}

/// A tokio runtime a replica owns.
enum Owned {
    /// Multi-threaded: its workers run the tasks.
    Workers(tokio::runtime::Runtime),
    /// Current-thread, driven by a thread of its own until the sender is dropped.
    Driven(oneshot::Sender<()>),
}

impl Replica {
    /// Starts node `config.id` on a runtime of the kind `config.runtime` names, and
    /// returns once its RESP and admin ports listen.
    pub(crate) async fn start(config: ServerConfig) -> Result<Self, String> {
        let id = config.id;
        let (runtime, tokio): (Arc<dyn Runtime>, _) = match config.runtime {
            RuntimeKind::Tokio if config.threads > 1 => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(config.threads)
                    .enable_all()
                    .thread_name(format!("node-{id}"))
                    .build()
                    .map_err(|e| format!("node {id}: starting tokio: {e}"))?;
                let handle = rt.handle().clone();
                (
                    Arc::new(TokioRuntime::new(handle)),
                    Some(Owned::Workers(rt)),
                )
            }
            RuntimeKind::Tokio => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("node {id}: starting tokio: {e}"))?;
                let handle = rt.handle().clone();
                let (stop, stopped) = oneshot::channel::<()>();
                std::thread::Builder::new()
                    .name(format!("node-{id}"))
                    .spawn(move || {
                        // Until the replica is dropped; then its tasks are dropped where
                        // they stand, as a multi-threaded runtime's are.
                        let _ = rt.block_on(stopped);
                        rt.shutdown_background();
                    })
                    .map_err(|e| format!("node {id}: starting its thread: {e}"))?;
                (
                    Arc::new(TokioRuntime::new(handle)),
                    Some(Owned::Driven(stop)),
                )
            }
            RuntimeKind::Smol => (Arc::new(AsyncIoRuntime::new()), None),
            other => return Err(format!("node {id}: runtime {other:?} is not supported")),
        };
        let mut replica = Self {
            id,
            server: None,
            runtime: runtime.clone(),
            tokio,
        };
        let server = replica
            .on_own_runtime(Server::start(config, runtime))
            .await?
            .map_err(|e| format!("node {id}: {e}"))?;
        replica.server = Some(server);
        Ok(replica)
    }

    /// The server, while it runs.
    pub(crate) fn server(&self) -> Result<&Server, String> {
        self.server
            .as_ref()
            .ok_or_else(|| format!("node {} is shut down", self.id))
    }

    /// Fails if the node has stopped, with the node's reason.
    pub(crate) fn check_alive(&self) -> Result<(), String> {
        match self.server()?.node().status().stopped {
            Some(fatal) => Err(format!("node {} stopped: {fatal}", self.id)),
            None => Ok(()),
        }
    }

    /// Shuts the server down cleanly (its store closed), then its runtime.
    pub(crate) async fn shutdown(mut self) -> Result<(), String> {
        if let Some(server) = self.server.take() {
            self.on_own_runtime(server.shutdown()).await?;
        }
        Ok(())
    }

    /// Runs `work` as a task on this replica's runtime and waits for its output.
    async fn on_own_runtime<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.runtime.spawn(Box::pin(async move {
            let _ = tx.send(work.await);
        }));
        rx.await
            .map_err(|_| format!("node {}: its runtime dropped the task", self.id))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // The server first (its listeners stop), then the runtime under it. A tokio
        // runtime cannot be dropped in place on the harness's runtime thread: it would
        // block there.
        drop(self.server.take());
        match self.tokio.take() {
            Some(Owned::Workers(rt)) => rt.shutdown_background(),
            Some(Owned::Driven(stop)) => drop(stop),
            None => {}
        }
    }
}
