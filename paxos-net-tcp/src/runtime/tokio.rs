//! [`Net`] on tokio.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::runtime::Handle;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::{BoxConn, Listener, Net};

/// [`Net`] for tokio: tasks go to the runtime behind a captured [`Handle`], so the
/// transport can spawn from any thread (including from `Drop`).
///
/// The runtime needs its I/O and time drivers (`Builder::enable_all`).
#[derive(Clone, Debug)]
pub struct TokioNet {
    handle: Handle,
}

impl TokioNet {
    /// Uses the runtime behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }

    /// Uses the runtime this is called from, or `None` outside a tokio runtime.
    pub fn current() -> Option<Self> {
        Handle::try_current().ok().map(Self::new)
    }
}

impl Net for TokioNet {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // Detached: the transport stops its tasks through its own shutdown signal.
        drop(self.handle.spawn(task));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        // `tokio::time::sleep` needs a runtime context when it is created.
        let _guard = self.handle.enter();
        Box::pin(tokio::time::sleep(duration))
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxConn>> {
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

    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>> {
        let std = std::net::TcpListener::bind(addr)?;
        std.set_nonblocking(true)?;
        let _guard = self.handle.enter();
        Ok(Box::new(TokioListener(tokio::net::TcpListener::from_std(
            std,
        )?)))
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
