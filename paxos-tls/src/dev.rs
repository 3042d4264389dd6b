//! A development certificate authority (feature `dev`): generates a cluster CA and node
//! certificates with `rcgen`, in memory ([`DevCa`]) or as PEM files ([`write_cluster`]).
//!
//! For development and tests only: the certificates are valid from 1975 to 4096, the keys
//! (ECDSA P-256) are not encrypted, and nothing is ever revoked. A deployment should issue
//! certificates with its own CA tooling, each with the DNS subject-alt-name
//! [`node_name`] of its node and the `serverAuth` and `clientAuth`
//! extended key usages (a node certificate serves both directions).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use paxos_core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{TlsError, TlsIdentity, node_name};

/// A self-signed certificate authority held in memory.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A certificate issued by a [`DevCa`], and its private key, both PEM.
#[derive(Clone)]
pub struct NodeCert {
    /// The certificate (end-entity only: the CA is the root, there are no intermediates).
    pub cert_pem: String,
    /// The private key, PKCS#8.
    pub key_pem: String,
}

/// The files written by [`write_cluster`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterFiles {
    /// The CA certificate, `ca.pem` (the CA key is beside it, `ca.key`).
    pub ca: PathBuf,
    /// Each node's certificate and key: `node-<id>.pem`, `node-<id>.key`.
    pub nodes: BTreeMap<NodeId, (PathBuf, PathBuf)>,
}

impl DevCa {
    /// A new CA with a fresh key, its certificate's common name set to `name`.
    pub fn generate(name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate, PEM: what every node trusts.
    pub fn ca_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA's private key, PEM (PKCS#8).
    pub fn ca_key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `node`: DNS subject-alt-name [`node_name`]`(node)`, usable as
    /// both TLS server and TLS client.
    pub fn issue(&self, node: NodeId) -> Result<NodeCert, TlsError> {
        self.issue_named(&node_name(node))
    }

    /// A certificate from this CA with an arbitrary DNS name as its only subject-alt-name
    /// (for tests: a certificate naming another node, or no node at all).
    pub fn issue_named(&self, dns_name: &str) -> Result<NodeCert, TlsError> {
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::new(vec![dns_name.to_owned()]).map_err(generate)?;
        params.distinguished_name.push(DnType::CommonName, dns_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl NodeCert {
    /// The identity of a node holding this certificate and trusting `ca_pem`.
    pub fn identity(&self, ca_pem: &str) -> Result<TlsIdentity, TlsError> {
        TlsIdentity::from_pem(
            ca_pem.as_bytes(),
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
        )
    }
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Generates a new [`DevCa`] and a certificate for each of `nodes`, and writes them into
/// `dir` (created if missing): `ca.pem`, `ca.key`, and `node-<id>.pem`, `node-<id>.key`
/// for each id. Key files are created with mode 0600 (on Unix), certificates 0644.
///
/// Refuses to overwrite: if any of the files already exists, nothing is written and the
/// error is [`TlsError::Io`] with kind `AlreadyExists` naming that file.
pub fn write_cluster(dir: &Path, nodes: &[NodeId]) -> Result<ClusterFiles, TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    let ca = DevCa::generate("paxos development CA")?;
    let mut files = vec![
        (dir.join("ca.pem"), ca.ca_pem(), false),
        (dir.join("ca.key"), ca.ca_key_pem(), true),
    ];
    let mut paths = BTreeMap::new();
    for &node in nodes {
        let cert = ca.issue(node)?;
        let (cert_path, key_path) = (
            dir.join(format!("node-{}.pem", node.0)),
            dir.join(format!("node-{}.key", node.0)),
        );
        files.push((cert_path.clone(), cert.cert_pem, false));
        files.push((key_path.clone(), cert.key_pem, true));
        paths.insert(node, (cert_path, key_path));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (path, _, _) in &files {
        if path.try_exists().map_err(io(path))? {
            return Err(io(path)(std::io::ErrorKind::AlreadyExists.into()));
        }
    }
    for (path, contents, secret) in &files {
        write_new(path, contents.as_bytes(), *secret).map_err(io(path))?;
    }
    Ok(ClusterFiles {
        ca: dir.join("ca.pem"),
        nodes: paths,
    })
}

/// Creates `path` (failing if it exists) with `contents`, readable only by its owner if
/// `secret`, and syncs it.
fn write_new(path: &Path, contents: &[u8], secret: bool) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn generate(error: rcgen::Error) -> TlsError {
    TlsError::Generate(error.to_string())
}
