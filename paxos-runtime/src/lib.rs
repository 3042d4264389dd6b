//! The one runtime seam of the paxos crates.
//!
//! A sans-IO core needs no runtime at all; what drives it needs only a little: spawn a
//! task, a resettable timer, a monotonic clock, and (for the TCP transport) sockets.
//! [`Runtime`] is that, as one small object-safe trait, after quinn's `Runtime`: the node
//! driver, the transports and the simulator all take an `Arc<dyn Runtime>`, and nothing
//! else in them names a runtime. Channels, locks and events come from runtime-neutral
//! crates (`async-channel`, `event-listener`, `futures`).
//!
//! One implementation per runtime feature:
//!
//! * `tokio`: `TokioRuntime` (tasks through a captured handle, tokio timers and
//!   sockets).
//! * `smol` and `async-std`: `AsyncIoRuntime` (async-io timers and
//!   sockets, smol's global executor). smol and async-std both run on async-io, so one
//!   implementation serves both; async-std is discontinued (RUSTSEC-2025-0052) and gets no
//!   code of its own, only the feature name.
//!
//! The simulator (`paxos-sim`) implements the trait with simulated time and a seeded
//! single-threaded executor; its sockets are refused, since it brings its own transport.
//! A runtime of your own needs one more implementation of [`Runtime`], about 100 lines.
//!
//! Code that takes an `Arc<dyn Runtime>` runs on whichever one it is given:
//!
//! ```
//! # #[cfg(feature = "async-io-impl")]
//! # fn main() {
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use paxos_runtime::{AsyncIoRuntime, Runtime, timeout_at};
//!
//! // With `tokio`, inside a tokio runtime: `TokioRuntime::current()` (an Option).
//! let rt: Arc<dyn Runtime> = Arc::new(AsyncIoRuntime::new());
//! futures::executor::block_on(async {
//!     let start = rt.now();
//!     rt.sleep(Duration::from_millis(5)).await;
//!     assert!(rt.now() >= start + Duration::from_millis(5)); // late is fine, early is not
//!
//!     let (tx, rx) = futures::channel::oneshot::channel();
//!     rt.spawn(Box::pin(async move {
//!         let _ = tx.send(7);
//!     }));
//!     let deadline = rt.now() + Duration::from_secs(10);
//!     assert_eq!(timeout_at(&*rt, deadline, rx).await, Some(Ok(7)));
//!
//!     let never = futures::future::pending::<()>();
//!     assert_eq!(timeout_at(&*rt, rt.now() + Duration::from_millis(5), never).await, None);
//! });
//! # }
//! # #[cfg(not(feature = "async-io-impl"))]
//! # fn main() {}
//! ```
//!
//! What it does not do: no channels, no I/O beyond TCP (QUIC's UDP sockets go through
//! quinn's own runtime support), no blocking-task pool.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncWrite};

#[cfg(feature = "async-io-impl")]
mod async_io;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(feature = "async-io-impl")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "smol", feature = "async-std"))))]
pub use self::async_io::AsyncIoRuntime;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use self::tokio::TokioRuntime;

/// What the paxos crates need from an async runtime.
///
/// Object-safe, so a program holds an `Arc<dyn Runtime>` chosen at run time (the binary's
/// `--runtime` flag). Calls happen per driver cycle or per connection, never per message.
///
/// # To ensure correctness
///
/// * [`now`](Self::now) never goes backwards. Lease safety rests on it: the core asserts
///   it, and a clock that jumps back would stop the node.
/// * [`now`](Self::now) keeps counting while the process is stopped (SIGSTOP, a long GC
///   or scheduling pause): a leader must see its lease run out while it was not running.
///   Both adapters use `std::time::Instant` (`CLOCK_MONOTONIC` on Linux), which does. It
///   does **not** count a system suspend, and a paused VM's guest clock may stall too: a
///   clock that stops while others run is drift beyond any bound, and a leader lease is
///   then unsafe (`paxos-sim --mode node --bug clock-stops-when-suspended` finds the
///   stale read it causes, at seed 104). Where machines can be suspended, run with leases off
///   (`Config::lease_duration = None`): reads then take a read-index round.
/// * A timer from [`new_timer`](Self::new_timer) fires no earlier than its deadline, as
///   measured by [`now`](Self::now). Late is fine; early is not.
/// * Spawned tasks run to completion or until every handle to their work is dropped; the
///   crates stop their tasks through their own signals and never rely on cancellation by
///   the runtime.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// Runs `task` to completion in the background, detached.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// A timer that fires at `deadline` (at once if it has passed). It can be moved with
    /// [`AsyncTimer::reset`], which is how the driver reuses one timer for its lifetime.
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>>;

    /// The runtime's monotonic clock.
    fn now(&self) -> Instant;

    /// Opens a TCP connection to `addr`, with `TCP_NODELAY` set.
    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxConn>>;

    /// Binds a listening TCP socket on `addr` (port 0 picks a free port). The default
    /// binds a `std` listener and hands it to [`listen_tcp`](Self::listen_tcp).
    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>> {
        self.listen_tcp(std::net::TcpListener::bind(addr)?)
    }

    /// Takes over a `std` listener that is already bound, so that a program can learn
    /// its address (port 0) before anything starts on it. The default refuses with
    /// [`no_sockets`]: a runtime with sockets overrides it.
    fn listen_tcp(&self, listener: std::net::TcpListener) -> io::Result<Box<dyn Listener>> {
        drop(listener);
        Err(no_sockets())
    }

    /// Runs `job`, which may block for a long time (a snapshot being written out), away
    /// from the tasks. The default starts a thread of its own for it (jobs are rare, so
    /// there is no pool); a simulator runs it as a task at a time it chooses.
    fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send>) -> io::Result<()> {
        std::thread::Builder::new()
            .name("paxos-blocking".into())
            .spawn(job)
            .map(drop)
    }

    /// Completes at `deadline`. A convenience over [`new_timer`](Self::new_timer).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let mut timer = self.new_timer(deadline);
        Box::pin(futures::future::poll_fn(move |cx| timer.as_mut().poll(cx)))
    }

    /// Completes after `duration`, by this runtime's clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.sleep_until(self.now() + duration)
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

/// A connected byte stream, as a transport sees it.
///
/// Blanket-implemented for every `futures::io` stream that is `Send + Unpin + 'static`.
/// The streams of [`Runtime::connect_tcp`] and [`Listener::accept`] shut down their write
/// side on `close` (the peer reads the end of the stream, and can still send), on every
/// runtime.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// A boxed [`Conn`].
pub type BoxConn = Box<dyn Conn>;

/// A bound, listening TCP socket. Dropping it closes the socket.
pub trait Listener: Send + Sync + 'static {
    /// The address the socket is bound to (with the real port when bound to port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Waits for the next inbound connection. The stream has `TCP_NODELAY` set.
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxConn, SocketAddr)>>;
}

/// The runtime to use when the caller names none, or `None` if no enabled runtime is
/// usable here.
///
/// With `tokio`, a tokio runtime is used when called from inside one; otherwise,
/// with `smol` or `async-std`, the async-io runtime (which works under any
/// executor, or none).
pub fn default_runtime() -> Option<Arc<dyn Runtime>> {
    #[cfg(feature = "tokio")]
    if let Some(rt) = TokioRuntime::current() {
        return Some(Arc::new(rt));
    }
    #[cfg(feature = "async-io-impl")]
    {
        Some(Arc::new(AsyncIoRuntime::new()))
    }
    #[cfg(not(feature = "async-io-impl"))]
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

/// The error a runtime without sockets (a simulator's) returns from
/// [`Runtime::connect_tcp`] and [`Runtime::bind_tcp`].
pub fn no_sockets() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this runtime has no TCP sockets (a simulated runtime brings its own transport)",
    )
}
