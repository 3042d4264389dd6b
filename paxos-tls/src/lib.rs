//! Cluster-CA mutual TLS for the paxos transports (`paxos-net-tcp`, `paxos-net-quic`).
//!
//! Every node of a cluster holds a [`TlsIdentity`]: the cluster CA's certificate (the only
//! trust root), its own certificate chain, and its private key. A node's certificate is
//! bound to its [`NodeId`] by one DNS subject-alt-name, [`node_name`]: `node-<id>.paxos`
//! (for example `node-3.paxos`). A connection is accepted only if the peer's chain verifies
//! against the cluster CA **and** the peer's end-entity certificate names the node id the
//! peer claims to be:
//!
//! * the **dialer** connects with the rustls server name [`server_name`]`(addressee)`, so
//!   rustls itself checks that the acceptor is the node that was dialled
//!   ([`TlsIdentity::client_config`]);
//! * the **acceptor** requires a client certificate chaining to the CA
//!   ([`TlsIdentity::server_config`]); once it learns the id the dialer claims (from the
//!   transport's own handshake, inside TLS), it calls [`verify_peer_node`] on the chain the
//!   handshake presented.
//!
//! Both configs use the `ring` provider only (passed explicitly, so no process-wide default
//! provider is installed or needed), speak TLS 1.3 only, and run a full handshake on every
//! connection (no session resumption, no 0-RTT), so every connection's chain is verified.
//! A node refuses to start with a certificate that does not name its own id
//! ([`TlsIdentity::check_names`]).
//!
//! The [`dev`] module (feature `dev`, on by default) makes a development CA and node
//! certificates with `rcgen`, in memory or as PEM files.
//!
//! ```
//! # #[cfg(not(feature = "dev"))] fn main() {}
//! # #[cfg(feature = "dev")]
//! # fn main() -> Result<(), paxos_tls::TlsError> {
//! use paxos_core::NodeId;
//! use paxos_tls::{TlsError, dev::DevCa, verify_peer_node};
//!
//! let ca = DevCa::generate("example cluster")?;
//! let three = ca.issue(NodeId(3))?.identity(&ca.ca_pem())?;
//! three.check_names(NodeId(3))?; // what a transport checks before it starts
//! let _server = three.server_config(&[b"paxos"])?;
//! let _client = three.client_config(&[b"paxos"])?;
//!
//! // What an acceptor checks once node 3's dialer says who it is:
//! verify_peer_node(three.cert_chain(), NodeId(3))?;
//! let lie = verify_peer_node(three.cert_chain(), NodeId(2));
//! assert!(matches!(lie, Err(TlsError::WrongNode { .. })));
//! # Ok(())
//! # }
//! ```
//!
//! # What it does not do
//!
//! * **No revocation**: no CRLs, no OCSP. A stolen node key is valid until the CA is
//!   replaced on every node.
//! * **No key or CA rotation**: an identity is loaded once; to change certificates, restart
//!   the node with new files.
//! * **No authorization beyond "a node of this cluster with this id"**: any holder of a
//!   certificate from the cluster CA may claim the id its certificate names, and nothing
//!   else. Which ids are peers is the transport's configuration.
//! * **No I/O but PEM files**: no sockets, no clock (certificate validity periods are
//!   checked by rustls against the system time during the handshake).
//! * The [`dev`] CA is for development and tests: its certificates are valid for centuries
//!   and its key is written to disk unencrypted. Issue production certificates with your
//!   own CA tooling; [`TlsIdentity::from_pem_files`] loads them.
#![forbid(unsafe_code)]

#[cfg(feature = "dev")]
pub mod dev;
mod error;
mod identity;

use paxos_core::NodeId;
use rustls::pki_types::{DnsName, ServerName};

pub use error::TlsError;
pub use identity::{TlsIdentity, verify_peer_node};
/// The rustls this crate builds its configs with, so users name the same types.
pub use rustls;

/// The DNS subject-alt-name that binds a certificate to `node`: `node-<id>.paxos`.
pub fn node_name(node: NodeId) -> String {
    format!("node-{}.paxos", node.0)
}

/// [`node_name`] as a rustls server name: what a dialer passes to rustls when it connects
/// to `node`, so the handshake fails unless the acceptor's certificate names `node`.
pub fn server_name(node: NodeId) -> ServerName<'static> {
    // `node-<decimal>.paxos` is always a valid DNS name: letters, digits, one hyphen, one dot.
    let name = DnsName::try_from(node_name(node)).expect("node names are valid DNS names");
    ServerName::DnsName(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert_eq!(node_name(NodeId(3)), "node-3.paxos");
        assert_eq!(
            node_name(NodeId(u64::MAX)),
            "node-18446744073709551615.paxos"
        );
        assert_eq!(
            server_name(NodeId(0)).to_str(),
            ServerName::try_from("node-0.paxos").unwrap().to_str()
        );
    }
}

#[cfg(all(test, feature = "dev"))]
mod identity_tests;
