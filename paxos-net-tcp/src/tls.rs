//! Mutual TLS on the transport's connections (feature `tls`): the handshakes, and why a
//! connection was refused.
//!
//! A TLS connection is just another [`BoxConn`]: the framing, the [`Hello`](crate::Hello)
//! and the message path above it are the same code as for plain TCP.

use std::io;
use std::sync::Arc;

use futures_rustls::{TlsAcceptor, TlsConnector};
use paxos_core::NodeId;
use paxos_runtime::BoxConn;
use paxos_tls::rustls;
use paxos_tls::rustls::pki_types::CertificateDer;
use paxos_tls::{TlsError, TlsIdentity};

use crate::transport::StartError;

/// The ALPN protocol name both sides offer: a TLS client of another protocol (or another
/// version of this one) fails the handshake rather than reaching the framing.
pub const TLS_ALPN: &[u8] = b"pxtc/1";

/// The rustls state of one transport, built at start from its identity.
pub(crate) struct Tls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

/// Why TLS refused a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsRefusal {
    #[error("the peer presented no client certificate")]
    NoClientCert,
    #[error("the peer's certificate is not from this cluster's CA: {0:?}")]
    UnknownCa(rustls::CertificateError),
    #[error("the peer's certificate is refused: {0}")]
    BadCertificate(rustls::CertificateError),
    #[error("the peer does not speak TLS (a plain-TCP node?): {0}")]
    NotTls(rustls::Error),
    #[error(
        "the peer aborted the handshake with alert {0:?} (it refused this node's certificate?)"
    )]
    PeerRefused(rustls::AlertDescription),
    #[error("the certificate does not match the node id the peer claims: {0}")]
    WrongNode(TlsError),
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
}

impl Tls {
    /// Checks that `identity` names `node`, and builds the client and server configs.
    pub(crate) fn new(identity: &TlsIdentity, node: NodeId) -> Result<Self, StartError> {
        let fail = |e: TlsError| StartError::tls(node, e);
        identity.check_names(node).map_err(fail)?;
        let client = identity.client_config(&[TLS_ALPN]).map_err(fail)?;
        let server = identity.server_config(&[TLS_ALPN]).map_err(fail)?;
        Ok(Self {
            connector: TlsConnector::from(client),
            acceptor: TlsAcceptor::from(server),
        })
    }

    /// The client handshake to `peer`: fails unless the acceptor's certificate chains to
    /// the CA and names `peer`.
    pub(crate) async fn connect(&self, peer: NodeId, conn: BoxConn) -> Result<BoxConn, TlsRefusal> {
        let server = paxos_tls::server_name(peer);
        match self.connector.connect(server, conn).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(classify(e)),
        }
    }

    /// The server handshake: fails unless the dialer presents a certificate chaining to
    /// the CA. Returns the stream and the dialer's certificate chain, to be checked
    /// against the id its `Hello` claims ([`check_peer`]).
    pub(crate) async fn accept(
        &self,
        conn: BoxConn,
    ) -> Result<(BoxConn, Vec<CertificateDer<'static>>), TlsRefusal> {
        let stream = self.acceptor.accept(conn).await.map_err(classify)?;
        let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
        let chain = chain.to_vec();
        Ok((Box::new(stream), chain))
    }
}

/// The binding check: `chain` (already verified against the CA) must name `claimed`.
pub(crate) fn check_peer(chain: &[CertificateDer<'_>], claimed: NodeId) -> Result<(), TlsRefusal> {
    paxos_tls::verify_peer_node(chain, claimed).map_err(TlsRefusal::WrongNode)
}

/// Names the common refusals from the rustls error inside a handshake's `io::Error`.
fn classify(error: io::Error) -> TlsRefusal {
    let Some(inner) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return TlsRefusal::Handshake(error);
    };
    match inner {
        rustls::Error::NoCertificatesPresented => TlsRefusal::NoClientCert,
        rustls::Error::InvalidCertificate(
            e @ (rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature),
        ) => TlsRefusal::UnknownCa(e.clone()),
        rustls::Error::InvalidCertificate(e) => TlsRefusal::BadCertificate(e.clone()),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            TlsRefusal::NotTls(inner.clone())
        }
        rustls::Error::AlertReceived(alert) => TlsRefusal::PeerRefused(*alert),
        _ => TlsRefusal::Handshake(error),
    }
}

impl StartError {
    fn tls(node: NodeId, error: TlsError) -> Self {
        Self::Tls {
            node,
            reason: error.to_string(),
            source: Arc::new(error),
        }
    }
}
