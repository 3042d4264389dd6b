//! [`TlsError`].

use std::path::PathBuf;

use paxos_core::NodeId;

/// Why an identity could not be loaded or built, a config could not be made, or a peer's
/// certificate was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (`AlreadyExists` when [`dev::write_cluster`](crate::dev::write_cluster)
        /// refuses to overwrite).
        source: std::io::Error,
    },
    /// Input that is not well-formed PEM, or a PEM item that is not what it should be
    /// (a certificate that does not parse, a key of an unsupported kind).
    #[error("bad PEM in {what}: {reason}")]
    Pem {
        /// Which input: `"CA certificates"`, `"certificate chain"` or `"private key"`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An input holds no certificate at all.
    #[error("no certificate in {what}")]
    NoCertificate {
        /// Which input: `"CA certificates"` or `"certificate chain"`.
        what: &'static str,
    },
    /// The key input holds no private key.
    #[error("no private key found")]
    NoKey,
    /// rustls refused something (a key that does not match the certificate, a config).
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// A certificate is not issued for the node id in question: a peer's certificate names
    /// another id than the peer claims, or this node's own certificate does not name it.
    #[error("certificate is not valid for node {} ({}): {reason}", claimed.0, crate::node_name(*claimed))]
    WrongNode {
        /// The node id the certificate was checked against.
        claimed: NodeId,
        /// Why it does not match.
        reason: String,
    },
    /// A development certificate could not be generated.
    #[error("generating a certificate: {0}")]
    Generate(String),
}
