//! `paxos-node certs`: a development CA and one certificate and key per node, as PEM
//! files, for mutual TLS between replicas (QUIC always, TCP on request).
//!
//! The files are `ca.pem` and `ca.key` (the CA), and `node-<id>.pem` and `node-<id>.key`
//! for each node; keys are readable by their owner only. Nothing is overwritten: if any
//! file exists, nothing is written. A node's certificate names it (`node-<id>.paxos`), so
//! a replica refuses a peer whose certificate does not name the id it claims.
//!
//! These are for development: unencrypted keys, no revocation, valid for centuries. To use
//! your own PKI instead, issue each node a certificate with the DNS subject-alt-name
//! `node-<id>.paxos` and both the `serverAuth` and `clientAuth` extended key usages, from a
//! CA that signs only your cluster's nodes, and pass the files to `serve`.

use std::path::PathBuf;

use clap::Args;
use paxos_node::NodeId;

/// `paxos-node certs`.
#[derive(Clone, Debug, Args)]
pub(crate) struct CertsArgs {
    /// Number of nodes: certificates for ids 1 to N.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) nodes: u64,
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// Writes the files and prints where they went, and how to use them.
pub(crate) fn run(args: &CertsArgs) -> Result<(), String> {
    let ids: Vec<NodeId> = (1..=args.nodes).map(NodeId).collect();
    let files = paxos_node::tls::dev::write_cluster(&args.out, &ids).map_err(|e| match e {
        paxos_node::tls::TlsError::Io { path, source }
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            format!(
                "{} exists: not overwriting any certificate or key (nothing was written); \
                 choose another --out or remove the old files",
                path.display()
            )
        }
        other => other.to_string(),
    })?;
    println!("CA certificate: {}", files.ca.display());
    for (id, (cert, key)) in &files.nodes {
        println!(
            "node {}: --tls-ca {} --tls-cert {} --tls-key {}",
            id.0,
            files.ca.display(),
            cert.display(),
            key.display()
        );
    }
    Ok(())
}
