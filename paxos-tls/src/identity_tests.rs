//! Tests of identities, configs and the binding check, on certificates from a [`DevCa`].

use paxos_core::NodeId;
use rustls::{ClientConnection, ServerConnection};

use crate::dev::{DevCa, write_cluster};
use crate::{TlsError, TlsIdentity, server_name, verify_peer_node};

fn identity(ca: &DevCa, node: u64) -> TlsIdentity {
    ca.issue(NodeId(node))
        .unwrap()
        .identity(&ca.ca_pem())
        .unwrap()
}

/// Runs a handshake in memory between `client` dialling `to` and `server`; the server's
/// view of the client's chain on success, the first error otherwise.
fn handshake(
    client: &TlsIdentity,
    server: &TlsIdentity,
    to: NodeId,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, rustls::Error> {
    let mut c =
        ClientConnection::new(client.client_config(&[b"t"]).unwrap(), server_name(to)).unwrap();
    let mut s = ServerConnection::new(server.server_config(&[b"t"]).unwrap()).unwrap();
    for _ in 0..20 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets()?;
        }
        let mut wire = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(s.peer_certificates().unwrap_or_default().to_vec());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn dev_ca_issues_certificates_that_name_their_node() {
    let ca = DevCa::generate("test").unwrap();
    let one = identity(&ca, 1);
    one.check_names(NodeId(1)).unwrap();
    assert!(matches!(
        one.check_names(NodeId(2)),
        Err(TlsError::WrongNode {
            claimed: NodeId(2),
            ..
        })
    ));
    assert_eq!(one.cert_chain().len(), 1);
    assert_eq!(one.ca_certificates().len(), 1);
    assert_eq!(one, one.clone());
    assert_ne!(one, identity(&ca, 1), "a new key");
    assert!(!format!("{one:?}").contains("PRIVATE"));
}

#[test]
fn verify_peer_node_binds_the_certificate_to_one_id() {
    let ca = DevCa::generate("test").unwrap();
    let three = identity(&ca, 3);
    verify_peer_node(three.cert_chain(), NodeId(3)).unwrap();
    for other in [0, 2, 33, u64::MAX] {
        let err = verify_peer_node(three.cert_chain(), NodeId(other)).unwrap_err();
        assert!(
            matches!(err, TlsError::WrongNode { claimed, .. } if claimed == NodeId(other)),
            "{err}"
        );
    }
    assert!(matches!(
        verify_peer_node(&[], NodeId(3)),
        Err(TlsError::WrongNode { .. })
    ));
    let garbage = rustls::pki_types::CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
    assert!(matches!(
        verify_peer_node(&[garbage], NodeId(3)),
        Err(TlsError::WrongNode { .. })
    ));
    // A name that merely contains the id is not the id.
    let named = ca.issue_named("node-3.paxos.example").unwrap();
    let named = named.identity(&ca.ca_pem()).unwrap();
    assert!(verify_peer_node(named.cert_chain(), NodeId(3)).is_err());
}

#[test]
fn mutual_handshake_checks_both_sides() {
    let ca = DevCa::generate("test").unwrap();
    let (one, two) = (identity(&ca, 1), identity(&ca, 2));
    let chain = handshake(&one, &two, NodeId(2)).unwrap();
    verify_peer_node(&chain, NodeId(1)).unwrap();
    assert!(verify_peer_node(&chain, NodeId(3)).is_err());

    // Dialling "node 3" but reaching node 2: the client refuses.
    assert!(handshake(&one, &two, NodeId(3)).is_err());
    // A client from another CA: the server refuses (and the client its server).
    let other = DevCa::generate("other").unwrap();
    assert!(handshake(&identity(&other, 1), &two, NodeId(2)).is_err());
}

#[test]
fn identity_loads_from_files_and_write_cluster_refuses_to_overwrite() {
    let dir = std::env::temp_dir().join(format!(
        "paxos-tls-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let files = write_cluster(&dir, &[NodeId(1), NodeId(2)]).unwrap();
    assert_eq!(files.ca, dir.join("ca.pem"));
    let (cert, key) = &files.nodes[&NodeId(2)];
    assert_eq!(cert, &dir.join("node-2.pem"));
    let two = TlsIdentity::from_pem_files(&files.ca, cert, key).unwrap();
    two.check_names(NodeId(2)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(key), 0o600);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(cert), 0o644);
    }
    let before = std::fs::read(key).unwrap();
    // Any existing file refuses the whole write, before anything is written.
    let err = write_cluster(&dir, &[NodeId(3), NodeId(2)]).unwrap_err();
    assert!(
        matches!(&err, TlsError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert!(!dir.join("node-3.pem").exists());
    assert_eq!(std::fs::read(key).unwrap(), before);

    let missing = TlsIdentity::from_pem_files(&dir.join("nope.pem"), cert, key).unwrap_err();
    assert!(matches!(missing, TlsError::Io { .. }), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_pem_is_an_error_never_a_panic() {
    let ca = DevCa::generate("test").unwrap();
    let node = ca.issue(NodeId(1)).unwrap();
    let (ca_pem, cert, key) = (
        ca.ca_pem(),
        node.cert_pem.as_bytes(),
        node.key_pem.as_bytes(),
    );
    let load = |a: &[u8], c: &[u8], k: &[u8]| TlsIdentity::from_pem(a, c, k).map(|_| ());
    assert!(load(ca_pem.as_bytes(), cert, key).is_ok());

    let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let bad_der = b"-----BEGIN CERTIFICATE-----\nMAMBAgM=\n-----END CERTIFICATE-----\n";
    let bad_key = b"-----BEGIN PRIVATE KEY-----\nMAMBAgM=\n-----END PRIVATE KEY-----\n";
    type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a str);
    let cases: Vec<Case<'_>> = vec![
        (b"", cert, key, "NoCertificate"),
        (b"hello", cert, key, "NoCertificate"),
        (key, cert, key, "NoCertificate"),
        (bad_base64, cert, key, "Pem"),
        (bad_der, cert, key, "Pem"),
        (ca_pem.as_bytes(), b"", key, "NoCertificate"),
        (ca_pem.as_bytes(), bad_base64, key, "Pem"),
        (ca_pem.as_bytes(), bad_der, key, "Pem"),
        (ca_pem.as_bytes(), cert, b"", "NoKey"),
        (ca_pem.as_bytes(), cert, cert, "NoKey"),
        (ca_pem.as_bytes(), cert, bad_key, "Pem"),
    ];
    for (i, (a, c, k, want)) in cases.into_iter().enumerate() {
        let err = load(a, c, k).unwrap_err();
        let got = match err {
            TlsError::NoCertificate { .. } => "NoCertificate",
            TlsError::Pem { .. } => "Pem",
            TlsError::NoKey => "NoKey",
            _ => "other",
        };
        assert_eq!(got, want, "case {i}: {err}");
    }
    // Another node's key does not match this certificate.
    let other = ca.issue(NodeId(2)).unwrap();
    let err = load(ca_pem.as_bytes(), cert, other.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsError::Rustls(_)), "{err}");

    // Random bytes, and random bytes between PEM markers, in every position.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..200 {
        let len = (next() % 300) as usize;
        let mut noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 {
            let mut framed = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            framed.append(&mut noise);
            framed.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
            noise = framed;
        }
        assert!(load(&noise, cert, key).is_err());
        assert!(load(ca_pem.as_bytes(), &noise, key).is_err());
        assert!(load(ca_pem.as_bytes(), cert, &noise).is_err());
    }
}
