//! The quinn endpoint configs: mutual TLS from [`paxos_tls`], ALPN, transport parameters.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::config::QuicConfig;
use crate::hello::StreamClass;
use crate::transport::StartError;

/// The ALPN protocol both sides require: `paxos/1`. A peer offering anything else fails
/// the TLS handshake.
pub const ALPN: &[u8] = b"paxos/1";

/// The server config (the acceptor: requires a client certificate from the cluster CA;
/// admits one stream per class, no bidirectional streams) and the client config (the
/// dialer: trusts only the cluster CA, presents this node's chain; admits no stream
/// from the acceptor).
pub(crate) fn quinn_configs(
    config: &QuicConfig,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), StartError> {
    let quic = |e: quinn::crypto::rustls::NoInitialCipherSuite| StartError::Quic(e.to_string());
    let server_tls = config.identity.server_config(&[ALPN])?;
    let server_tls = QuicServerConfig::try_from(server_tls).map_err(quic)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
    let classes = u32::try_from(StreamClass::ALL.len()).unwrap_or(u32::MAX);
    server.transport_config(Arc::new(transport(config, classes)?));
    // Peers are at fixed addresses; a connection that moves is not expected.
    server.migration(false);

    let client_tls = config.identity.client_config(&[ALPN])?;
    let client_tls = QuicClientConfig::try_from(client_tls).map_err(quic)?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_tls));
    client.transport_config(Arc::new(transport(config, 0)?));
    Ok((server, client))
}

/// Transport parameters for one side: `uni_streams` is how many streams the other side
/// may open at once.
fn transport(config: &QuicConfig, uni_streams: u32) -> Result<TransportConfig, StartError> {
    let idle = IdleTimeout::try_from(config.idle_timeout)
        .map_err(|e| StartError::Quic(format!("idle_timeout: {e}")))?;
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_uni_streams(VarInt::from_u32(uni_streams))
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(config.keep_alive_interval))
        .initial_rtt(config.initial_rtt)
        // Messages are never sent as datagrams.
        .datagram_receive_buffer_size(None);
    Ok(transport)
}
