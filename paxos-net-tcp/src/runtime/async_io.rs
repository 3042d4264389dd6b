//! [`Net`] on async-io, for async-std and smol.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use async_io::{Async, Timer};
use futures::future::BoxFuture;

use super::{BoxConn, Listener, Net};

/// [`Net`] for the async-io family (smol, async-std): sockets and timers from async-io,
/// tasks on smol's global executor.
///
/// async-io's reactor runs on its own thread and smol's global executor on its own threads,
/// so this works whichever of async-std or smol (or neither) the caller runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncIoNet;

impl AsyncIoNet {
    /// The async-io runtime (stateless).
    pub fn new() -> Self {
        Self
    }
}

impl Net for AsyncIoNet {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // Detached: the transport stops its tasks through its own shutdown signal.
        smol::spawn(task).detach();
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            Timer::after(duration).await;
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxConn>> {
        Box::pin(async move {
            let stream = Async::<TcpStream>::connect(addr).await?;
            stream.get_ref().set_nodelay(true)?;
            Ok(Box::new(stream) as BoxConn)
        })
    }

    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(AsyncIoListener(Async::<TcpListener>::bind(addr)?)))
    }
}

struct AsyncIoListener(Async<TcpListener>);

impl Listener for AsyncIoListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxConn, SocketAddr)>> {
        Box::pin(async move {
            let (stream, from) = self.0.accept().await?;
            stream.get_ref().set_nodelay(true)?;
            Ok((Box::new(stream) as BoxConn, from))
        })
    }
}
