//! [`TlsIdentity`]: a node's trust roots, certificate chain and key; the rustls configs
//! built from it; and [`verify_peer_node`], the acceptor's binding check.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use paxos_core::NodeId;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{TlsError, server_name};

/// What a node presents and trusts: the cluster CA's certificates (the only trust roots),
/// the node's own certificate chain (end-entity first) and its private key.
///
/// Loading checks that every input parses and that the key belongs to the end-entity
/// certificate; it does not check which node the certificate names (that is
/// [`check_names`](Self::check_names), run by a transport before it starts). Cloning is
/// cheap (shared, immutable). `Debug` never prints the key; two identities are equal when
/// they hold the same CA certificates, chain and key.
#[derive(Clone)]
pub struct TlsIdentity {
    provider: Arc<CryptoProvider>,
    ca: Arc<[CertificateDer<'static>]>,
    roots: Arc<RootCertStore>,
    chain: Arc<[CertificateDer<'static>]>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl TlsIdentity {
    /// Loads an identity from PEM: `ca` holds the cluster CA certificate(s), `cert_chain`
    /// this node's certificate (and any intermediates after it), `key` its private key
    /// (PKCS#8, PKCS#1 or SEC1). Text around the PEM blocks is ignored.
    pub fn from_pem(ca: &[u8], cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = certificates(ca, "CA certificates")?;
        let mut roots = RootCertStore::empty();
        for cert in &ca {
            roots.add(cert.clone()).map_err(|e| TlsError::Pem {
                what: "CA certificates",
                reason: e.to_string(),
            })?;
        }
        let chain = certificates(cert_chain, "certificate chain")?;
        webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| TlsError::Pem {
            what: "certificate chain",
            reason: format!("end-entity certificate: {e}"),
        })?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoKey,
            e => TlsError::Pem {
                what: "private key",
                reason: e.to_string(),
            },
        })?;
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TlsError::Pem {
                what: "private key",
                reason: e.to_string(),
            })?;
        CertifiedKey::new(chain.clone(), signing).keys_match()?;
        Ok(Self {
            provider,
            ca: ca.into(),
            roots: Arc::new(roots),
            chain: chain.into(),
            key: Arc::new(key),
        })
    }

    /// [`from_pem`](Self::from_pem) on the contents of three files.
    pub fn from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_pem(&read(ca)?, &read(cert)?, &read(key)?)
    }

    /// `Ok` if this identity's own (end-entity) certificate names `node`
    /// ([`node_name`](crate::node_name)); [`TlsError::WrongNode`] otherwise. A transport
    /// refuses to start with an identity that fails this for its own id.
    pub fn check_names(&self, node: NodeId) -> Result<(), TlsError> {
        verify_peer_node(&self.chain, node)
    }

    /// A 32-byte secret for `purpose`, derived from this identity's private key
    /// (HMAC-SHA256 keyed by the key's DER bytes): the same across restarts of a node with
    /// the same key, unknown to anyone without the key, and different per `purpose`. For
    /// keys a transport must keep across restarts, like QUIC's stateless-reset key.
    pub fn derive_secret(&self, purpose: &str) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.secret_der());
        let tag = ring::hmac::sign(&key, purpose.as_bytes());
        let mut out = [0; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// This identity's certificate chain, end-entity first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The trusted CA certificates.
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.ca
    }

    /// The server (acceptor) side: TLS 1.3 only, presents this identity's chain, and
    /// **requires** a client certificate chaining to the CA (rustls's
    /// `WebPkiClientVerifier`; a client without one, or with one from another CA, fails
    /// the handshake). Which node the client is remains to be checked with
    /// [`verify_peer_node`]. No session tickets or resumption: every connection runs a
    /// full handshake. `alpn` lists the protocols offered (may be empty).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.to_vec(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// The client (dialer) side: TLS 1.3 only, trusts only the CA, presents this
    /// identity's chain. Connect with [`server_name`]`(addressee)` so the handshake fails
    /// unless the acceptor's certificate names the node dialled. No resumption.
    /// `alpn` lists the protocols offered (may be empty).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.to_vec(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("ca_certificates", &self.ca.len())
            .field("chain_certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for TlsIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca
            && self.chain == other.chain
            && self.key.secret_der() == other.key.secret_der()
    }
}

impl Eq for TlsIdentity {}

/// After a handshake: `Ok` if the peer's end-entity certificate (`chain[0]`, as rustls's
/// `peer_certificates()` returns it) is issued for `claimed`, that is, names
/// [`node_name`](crate::node_name)`(claimed)`. [`TlsError::WrongNode`] otherwise, or if
/// the chain is empty or does not parse.
///
/// This checks the name only: the chain itself must already have been verified against
/// the CA, as the handshake with [`TlsIdentity::server_config`] does.
pub fn verify_peer_node(chain: &[CertificateDer<'_>], claimed: NodeId) -> Result<(), TlsError> {
    let wrong = |reason: String| TlsError::WrongNode { claimed, reason };
    let first = chain
        .first()
        .ok_or_else(|| wrong("no certificate presented".into()))?;
    let cert = webpki::EndEntityCert::try_from(first)
        .map_err(|e| wrong(format!("certificate does not parse: {e}")))?;
    cert.verify_is_valid_for_subject_name(&server_name(claimed))
        .map_err(|e| wrong(e.to_string()))
}

/// Every certificate in `pem` (at least one).
fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}
