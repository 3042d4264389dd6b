//! Reading frames off a stream, and the connection-level error type.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::future::{Either, select};
use futures::io::{AsyncRead, AsyncReadExt};
use paxos_core::codec::{CodecError, decode_frame};
use serde::de::DeserializeOwned;

use crate::handshake::HandshakeError;
use paxos_runtime::Runtime;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("peer closed the connection")]
    Eof,
    #[error("bad frame: {0}")]
    Codec(#[from] CodecError),
    #[error("handshake refused: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("peer sent bytes on a send-only connection")]
    UnexpectedData,
    #[error("transport stopped")]
    Stopped,
    #[cfg(feature = "tls")]
    #[error("TLS refused: {0}")]
    Tls(#[from] crate::tls::TlsRefusal),
}

impl ConnError {
    /// Whether the error is the peer's fault (bad bytes), as opposed to the network's.
    pub(crate) fn is_protocol(&self) -> bool {
        match self {
            Self::Codec(_) | Self::Handshake(_) | Self::UnexpectedData => true,
            #[cfg(feature = "tls")]
            Self::Tls(_) => true,
            _ => false,
        }
    }

    /// Whether TLS refused the connection.
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return matches!(self, Self::Tls(_));
        #[cfg(not(feature = "tls"))]
        false
    }

    /// A read error: an end of stream without TLS's `close_notify` (how a TLS peer's
    /// connection ends when it is dropped) is an end of stream like TCP's.
    pub(crate) fn read(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::UnexpectedEof => Self::Eof,
            _ => Self::Io(error),
        }
    }
}

/// Reassembles frames from a byte stream. Holds at most one frame plus one read chunk.
pub(crate) struct FrameReader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Reads the next frame, decoding it as `T`. A declared length above `max` fails as
    /// soon as the four prefix bytes are in, before the body is read.
    pub(crate) async fn next<T: DeserializeOwned>(&mut self, max: usize) -> Result<T, ConnError> {
        self.next_sized(max).await.map(|(value, _)| value)
    }

    /// Like [`next`](Self::next), also returning the frame's size, prefix included.
    pub(crate) async fn next_sized<T: DeserializeOwned>(
        &mut self,
        max: usize,
    ) -> Result<(T, usize), ConnError> {
        loop {
            if let Some((value, used)) = decode_frame(&self.buf, max)? {
                self.buf.advance(used);
                return Ok((value, used));
            }
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK_BYTES, 0);
            let read = self.io.read(&mut self.buf[start..]).await;
            let n = *read.as_ref().unwrap_or(&0);
            self.buf.truncate(start + n);
            if read.map_err(ConnError::read)? == 0 {
                return Err(ConnError::Eof);
            }
        }
    }

    /// Bytes read past the last frame returned.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The stream, for writing.
    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    pub(crate) fn into_inner(self) -> R {
        self.io
    }
}

/// Runs `fut` for at most `duration`; `None` if the time ran out first.
pub(crate) async fn timeout<T>(
    net: &dyn Runtime,
    duration: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    match select(pin!(fut), net.sleep(duration)).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}
