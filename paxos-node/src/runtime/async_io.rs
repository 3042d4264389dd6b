//! [`Runtime`] on async-io, for async-std and smol.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;
use futures::future::BoxFuture;
use paxos_net_tcp::{AsyncIoNet, Net};

use super::{AsyncTimer, Runtime};

/// [`Runtime`] for the async-io family (smol, async-std): async-io timers, tasks on smol's
/// global executor, `std::time::Instant` as the clock.
///
/// async-io's reactor and smol's global executor run on their own threads, so this works
/// whichever of async-std or smol (or neither) the caller blocks on: the node's driver task
/// never depends on the caller's executor making progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncIoRuntime;

impl AsyncIoRuntime {
    /// The async-io runtime (stateless).
    pub fn new() -> Self {
        Self
    }
}

impl Runtime for AsyncIoRuntime {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // Detached: the driver stops through its own shutdown signal.
        smol::spawn(task).detach();
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(AsyncIoTimer {
            timer: Timer::at(deadline),
            deadline,
        })
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn tcp_net(&self) -> Arc<dyn Net> {
        Arc::new(AsyncIoNet::new())
    }
}

/// An async-io [`Timer`] that, unlike the bare one, stays ready after it fired.
#[derive(Debug)]
struct AsyncIoTimer {
    timer: Timer,
    deadline: Instant,
}

impl AsyncTimer for AsyncIoTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
        self.timer.set_at(deadline);
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        Future::poll(Pin::new(&mut self.timer), cx).map(|_| ())
    }
}
