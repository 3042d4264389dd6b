//! `paxos-node certs`: the files it writes load as mutual-TLS identities that name their
//! nodes, keys are private to their owner, and a second run overwrites nothing.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use paxos_node::NodeId;
use paxos_node::tls::TlsIdentity;

#[test]
fn certs_writes_loadable_identities_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_paxos-node"))
            .args(["certs", "--nodes", "3", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let ca = out.join("ca.pem");
    for id in 1..=3 {
        let cert = out.join(format!("node-{id}.pem"));
        let key = out.join(format!("node-{id}.key"));
        let identity = TlsIdentity::from_pem_files(&ca, &cert, &key).unwrap();
        identity.check_names(NodeId(id)).unwrap();
        let other = if id == 1 { 2 } else { 1 };
        assert!(
            identity.check_names(NodeId(other)).is_err(),
            "node {id}'s cert names {other}"
        );
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "node {id}'s key is readable by others");
    }
    let ca_before = std::fs::read(&ca).unwrap();

    let second = run();
    assert!(!second.status.success(), "a second run must refuse");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("not overwriting"), "{stderr}");
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        ca_before,
        "the CA was overwritten"
    );
}
