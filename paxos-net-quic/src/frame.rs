//! Reading core codec frames off a QUIC stream; why a connection ended; the application
//! error codes it is closed with.

use bytes::{Buf, BytesMut};
use paxos_core::codec::{CodecError, decode_frame};
use quinn::{ConnectionError, RecvStream, VarInt};
use serde::de::DeserializeOwned;

use crate::hello::HelloError;

/// Bytes asked of a stream per read: what is buffered beyond one frame.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The QUIC application error codes this transport closes connections with. A peer sees
/// them as `ConnectionError::ApplicationClosed` with this `error_code`; the reason text
/// says more.
pub mod error_code {
    /// The transport is shutting down, or a dialer is done with its connection.
    pub const SHUTDOWN: u32 = 0;
    /// A [`Hello`](crate::Hello) was refused (magic, version, cluster, addressee, unknown
    /// peer, a duplicate class), or none arrived in time.
    pub const REFUSED_HELLO: u32 = 1;
    /// The peer's certificate does not name the id its Hello claims.
    pub const REFUSED_IDENTITY: u32 = 2;
    /// A malformed or oversized frame.
    pub const BAD_FRAME: u32 = 3;
    /// A newer connection from the same peer replaced this one.
    pub const REPLACED: u32 = 4;
    /// The peer was removed from the configuration.
    pub const PEER_REMOVED: u32 = 5;
    /// Too many inbound connections are open.
    pub const TOO_MANY_CONNECTIONS: u32 = 6;
    /// A stream write made no progress for the write timeout.
    pub const WRITE_TIMEOUT: u32 = 7;
    /// The peer used a stream this direction never carries (the acceptor opened one, or
    /// the dialer finished or reset one).
    pub const UNEXPECTED_STREAM: u32 = 8;
}

/// Why a connection (or one of its streams) ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("cannot dial: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection lost: {0}")]
    Connection(#[from] ConnectionError),
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("peer finished or reset a stream")]
    StreamEnded,
    #[error("bad frame: {0}")]
    Codec(#[from] CodecError),
    #[error("hello refused: {0}")]
    Hello(#[from] HelloError),
    #[error("certificate does not match the claimed id: {0}")]
    Identity(String),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("transport stopped or peer removed")]
    Stopped,
}

impl ConnError {
    /// Whether the peer closed the connection refusing this node (its Hello, its
    /// certificate, or its frames): redialling at once would only be refused again.
    pub(crate) fn is_refusal(&self) -> bool {
        let refusals = [
            error_code::REFUSED_HELLO,
            error_code::REFUSED_IDENTITY,
            error_code::BAD_FRAME,
            error_code::UNEXPECTED_STREAM,
        ];
        matches!(self, Self::Connection(ConnectionError::ApplicationClosed(close))
            if refusals.iter().any(|&code| close.error_code == VarInt::from_u32(code)))
    }

    /// The code to close the connection with, and its reason text.
    pub(crate) fn close_code(&self) -> (VarInt, &'static [u8]) {
        let (code, reason): (u32, &'static [u8]) = match self {
            Self::Codec(_) => (error_code::BAD_FRAME, b"bad frame"),
            Self::Hello(_) | Self::Timeout("hello") => (error_code::REFUSED_HELLO, b"hello"),
            Self::Identity(_) => (error_code::REFUSED_IDENTITY, b"identity"),
            Self::Timeout(_) => (error_code::WRITE_TIMEOUT, b"timeout"),
            Self::StreamEnded => (error_code::UNEXPECTED_STREAM, b"stream"),
            _ => (error_code::SHUTDOWN, b""),
        };
        (VarInt::from_u32(code), reason)
    }
}

/// Reassembles frames from one receive stream. Holds at most one frame plus one read chunk.
pub(crate) struct FrameReader {
    stream: RecvStream,
    buf: BytesMut,
}

impl FrameReader {
    pub(crate) fn new(stream: RecvStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// The next frame decoded as `T`, with its size (prefix included). A declared length
    /// above `max` fails as soon as its four bytes are in, before the body is read.
    pub(crate) async fn next<T: DeserializeOwned>(
        &mut self,
        max: usize,
    ) -> Result<(T, usize), ConnError> {
        loop {
            if let Some((value, used)) = decode_frame(&self.buf, max)? {
                self.buf.advance(used);
                return Ok((value, used));
            }
            match self.stream.read_chunk(READ_CHUNK_BYTES, true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                // The dialer never finishes a stream while the connection lives.
                None => return Err(ConnError::StreamEnded),
            }
        }
    }
}
