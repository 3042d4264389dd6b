//! [`Runtime`] on tokio.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use paxos_net_tcp::{Net, TokioNet};
use tokio::runtime::Handle;
use tokio::time::Sleep;

use super::{AsyncTimer, Runtime};

/// [`Runtime`] for tokio: tasks go to the runtime behind a captured [`Handle`], so the node
/// can spawn from any thread; timers and `now` use tokio's clock.
///
/// The runtime needs its time driver (and, for TCP, its I/O driver): `Builder::enable_all`.
#[derive(Clone, Debug)]
pub struct TokioRuntime {
    handle: Handle,
}

impl TokioRuntime {
    /// Uses the runtime behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }

    /// Uses the runtime this is called from, or `None` outside a tokio runtime.
    pub fn current() -> Option<Self> {
        Handle::try_current().ok().map(Self::new)
    }
}

impl Runtime for TokioRuntime {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // Detached: the driver stops through its own shutdown signal.
        drop(self.handle.spawn(task));
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        // `sleep_until` needs a runtime context when it is created.
        let _guard = self.handle.enter();
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn tcp_net(&self) -> Arc<dyn Net> {
        Arc::new(TokioNet::new(self.handle.clone()))
    }
}

impl AsyncTimer for Sleep {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        Self::reset(self, deadline.into());
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Future::poll(self, cx)
    }
}
