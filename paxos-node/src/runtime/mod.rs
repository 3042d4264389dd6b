//! The runtime seam: spawn, a timer and a monotonic clock, behind one object-safe trait.
//!
//! The driver needs nothing else from an async runtime: channels, locks and events come
//! from runtime-neutral crates (`async-channel`, `event-listener`, `futures`). One small
//! implementation per runtime feature:
//!
//! * `runtime-tokio`: [`TokioRuntime`] (tokio timers, tasks spawned through a captured
//!   runtime handle).
//! * `runtime-async-std` and `runtime-smol`: [`AsyncIoRuntime`] (async-io timers, tasks on
//!   smol's global executor). async-std and smol both run on async-io, so one
//!   implementation serves both; async-std is discontinued (RUSTSEC-2025-0052) and gets no
//!   code of its own.
//!
//! Each implementation also hands out the matching [`Net`] of `paxos-net-tcp`
//! ([`Runtime::tcp_net`]), so a caller that picked a runtime gets the TCP transport's
//! runtime adapter with it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use paxos_net_tcp::Net;

#[cfg(feature = "runtime-async-io")]
mod async_io;
#[cfg(feature = "runtime-tokio")]
mod tokio;

#[cfg(feature = "runtime-async-io")]
pub use self::async_io::AsyncIoRuntime;
#[cfg(feature = "runtime-tokio")]
pub use self::tokio::TokioRuntime;

/// What the node needs from an async runtime: spawn, a resettable timer and `now`.
///
/// Object-safe, so the node holds an `Arc<dyn Runtime>` chosen at run time. Calls happen
/// per driver cycle, never per message.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// Runs `task` to completion in the background, detached.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// A timer that fires at `deadline` (at once if it has passed). It can be moved with
    /// [`AsyncTimer::reset`], which is how the driver reuses one timer for its lifetime.
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>>;

    /// The runtime's monotonic clock. Never goes backwards.
    fn now(&self) -> Instant;

    /// The `paxos-net-tcp` adapter for this runtime, to start a
    /// [`TcpTransport`](paxos_net_tcp::TcpTransport) with.
    fn tcp_net(&self) -> Arc<dyn Net>;

    /// Completes at `deadline`. A convenience over [`new_timer`](Self::new_timer).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let mut timer = self.new_timer(deadline);
        Box::pin(futures::future::poll_fn(move |cx| timer.as_mut().poll(cx)))
    }
}

/// A timer that can be moved to a new deadline without allocating a new one.
pub trait AsyncTimer: Send + fmt::Debug + 'static {
    /// Moves the deadline; the timer fires at the new one (at once if it has passed).
    fn reset(self: Pin<&mut Self>, deadline: Instant);

    /// Ready once the deadline has passed. Keeps returning ready until
    /// [`reset`](Self::reset) moves the deadline into the future.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// The runtime to use when the caller names none, or `None` if no enabled runtime is
/// usable here.
///
/// With `runtime-tokio`, a tokio runtime is used when called from inside one; otherwise,
/// with `runtime-async-std` or `runtime-smol`, the async-io runtime (which works under any
/// executor, or none).
pub fn default_runtime() -> Option<Arc<dyn Runtime>> {
    #[cfg(feature = "runtime-tokio")]
    if let Some(rt) = TokioRuntime::current() {
        return Some(Arc::new(rt));
    }
    #[cfg(feature = "runtime-async-io")]
    {
        Some(Arc::new(AsyncIoRuntime::new()))
    }
    #[cfg(not(feature = "runtime-async-io"))]
    {
        None
    }
}

/// Runs `future` until `deadline`; `None` if the deadline came first.
///
/// Works on any [`Runtime`]; the node uses it for per-request timeouts, and tests for
/// bounded waits.
pub async fn timeout_at<F: Future>(
    rt: &dyn Runtime,
    deadline: Instant,
    future: F,
) -> Option<F::Output> {
    let mut timer = rt.new_timer(deadline);
    let mut future = std::pin::pin!(future);
    futures::future::poll_fn(move |cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}
