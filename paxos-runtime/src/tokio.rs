//! [`Runtime`] on tokio.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::time::Sleep;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::{AsyncTimer, BoxConn, Listener, Runtime};

/// [`Runtime`] for tokio: tasks go to the runtime behind a captured [`Handle`], so work
/// can be spawned from any thread (a `Drop` included); timers, `now` and sockets are
/// tokio's.
///
/// The runtime needs its time and I/O drivers (`Builder::enable_all`).
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
        // Detached: every task stops through its owner's own signal.
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

    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxConn>> {
        let handle = self.handle.clone();
        Box::pin(async move {
            // Run the connect on the runtime so the socket registers with its reactor even
            // when the caller is polled elsewhere.
            let stream = handle
                .spawn(tokio::net::TcpStream::connect(addr))
                .await
                .map_err(io::Error::other)??;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream.compat()) as BoxConn)
        })
    }

    fn listen_tcp(&self, std: std::net::TcpListener) -> io::Result<Box<dyn Listener>> {
        std.set_nonblocking(true)?;
        let _guard = self.handle.enter();
        Ok(Box::new(TokioListener(tokio::net::TcpListener::from_std(
            std,
        )?)))
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

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxConn, SocketAddr)>> {
        Box::pin(async move {
            let (stream, from) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream.compat()) as BoxConn, from))
        })
    }
}
