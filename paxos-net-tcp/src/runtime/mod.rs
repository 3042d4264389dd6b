//! The runtime seam: spawn, a timer, and TCP sockets, behind one object-safe trait.
//!
//! The transport itself is written once, over the `futures::io` traits
//! ([`AsyncRead`]/[`AsyncWrite`]). Everything runtime-specific sits behind [`Net`], with one
//! small implementation per runtime feature:
//!
//! * `runtime-tokio`: [`TokioNet`] (tokio sockets adapted with `tokio-util`'s compat layer).
//! * `runtime-async-io`: [`AsyncIoNet`] (async-io's `Async<TcpStream>`, smol's global
//!   executor). async-std and smol both run on async-io, so this one serves both.
//!
//! A third runtime needs only a fourth small impl of [`Net`]; the transport is unchanged.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncWrite};

#[cfg(feature = "runtime-async-io")]
mod async_io;
#[cfg(feature = "runtime-tokio")]
mod tokio;

#[cfg(feature = "runtime-async-io")]
pub use self::async_io::AsyncIoNet;
#[cfg(feature = "runtime-tokio")]
pub use self::tokio::TokioNet;

/// A connected byte stream, as the transport sees it.
///
/// Blanket-implemented for every `futures::io` stream that is `Send + Unpin + 'static`.
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

/// What the transport needs from an async runtime: spawn, a timer, and TCP sockets.
///
/// Implementations must be cheap to call and must not block. Futures they return may be
/// polled from tasks spawned through [`spawn`](Self::spawn), and only from there is
/// polling required to work.
pub trait Net: Send + Sync + fmt::Debug + 'static {
    /// Runs `task` to completion in the background, detached.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;

    /// Opens a TCP connection to `addr`, with `TCP_NODELAY` set.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxConn>>;

    /// Binds a listening socket on `addr` (port 0 picks a free port).
    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>>;
}
