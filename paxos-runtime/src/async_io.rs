//! [`Runtime`] on async-io, for smol and async-std.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::{Async, Timer};
use futures::future::BoxFuture;

use super::{AsyncTimer, BoxConn, Listener, Runtime};

/// [`Runtime`] for the async-io family (smol, async-std): async-io timers and sockets,
/// tasks on smol's global executor, `std::time::Instant` as the clock.
///
/// async-io's reactor and smol's global executor run on their own threads, so this works
/// whichever of smol or async-std (or neither) the caller blocks on: spawned tasks never
/// depend on the caller's executor making progress.
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
        // Detached: every task stops through its owner's own signal.
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

    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxConn>> {
        Box::pin(async move {
            let stream = Async::<TcpStream>::connect(addr).await?;
            stream.get_ref().set_nodelay(true)?;
            Ok(conn(stream))
        })
    }

    fn listen_tcp(&self, listener: TcpListener) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(AsyncIoListener(Async::new(listener)?)))
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

/// A connected stream as a [`BoxConn`]. Through async-net's `TcpStream`, whose `close`
/// shuts down the write side as the contract asks: a bare `Async<TcpStream>` only flushes.
fn conn(stream: Async<TcpStream>) -> BoxConn {
    Box::new(smol::net::TcpStream::from(stream))
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
            Ok((conn(stream), from))
        })
    }
}
