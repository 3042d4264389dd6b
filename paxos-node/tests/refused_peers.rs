//! A running three-node cluster over QUIC and over TCP with mutual TLS, on tokio and smol:
//! a stranger dials the leader, claims to be a follower, and sends it a forged consensus
//! message. It holds no client certificate, or a certificate from another CA, or the
//! cluster CA's certificate for the other follower. Each time the leader's transport
//! refuses and counts it, the forged message never reaches the leader's core, and the
//! leader goes on committing and serving reads. The control: a stranger holding the
//! claimed follower's own certificate is admitted and its message does reach the core, so
//! the stranger and the checks above can tell a refusal from an admission.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_core::NodeId;
use paxos_core::codec::{DEFAULT_MAX_FRAME_BYTES, encode_frame};
use paxos_node::Runtime;
use paxos_tls::dev::DevCa;
use paxos_tls::rustls::{self, ClientConfig, RootCertStore};

use common::net::forged;
use common::{CLUSTER, Cluster, Kv, Net, propose_until_applied, within};

on_secure_nets!(
    no_client_certificate_is_refused,
    certificate_from_another_ca_is_refused,
    certificate_naming_another_member_is_refused,
    the_claimed_members_own_certificate_is_admitted,
);

/// What the stranger presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Papers {
    /// No client certificate (it trusts the cluster CA, so it gets through the server's
    /// side of the handshake).
    None,
    /// A certificate naming the member it claims to be, from another CA.
    AnotherCa,
    /// The cluster CA's certificate for another member than the one it claims.
    AnotherMember,
    /// The control: the cluster CA's certificate for the member it claims.
    Genuine,
}

async fn no_client_certificate_is_refused(net: Net, rt: Arc<dyn Runtime>) {
    stranger_at_the_leader(net, rt, Papers::None).await;
}

async fn certificate_from_another_ca_is_refused(net: Net, rt: Arc<dyn Runtime>) {
    stranger_at_the_leader(net, rt, Papers::AnotherCa).await;
}

async fn certificate_naming_another_member_is_refused(net: Net, rt: Arc<dyn Runtime>) {
    stranger_at_the_leader(net, rt, Papers::AnotherMember).await;
}

async fn the_claimed_members_own_certificate_is_admitted(net: Net, rt: Arc<dyn Runtime>) {
    stranger_at_the_leader(net, rt, Papers::Genuine).await;
}

async fn stranger_at_the_leader(net: Net, rt: Arc<dyn Runtime>, papers: Papers) {
    let cluster = Cluster::start_over(net, rt.clone(), 3).await;
    let l = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let (leader, claims, other) = (
        cluster.ids[l],
        cluster.ids[followers[0]],
        cluster.ids[followers[1]],
    );
    let before = cluster.stats(l).await;

    let tls = client_tls(&cluster, papers, claims, other, alpn(net));
    let stranger = Stranger::dial(net, &rt, tls, cluster.addrs[l], leader, claims).await;
    if papers == Papers::Genuine {
        within(&*rt, "the stranger's message at the core", async {
            while cluster.forged(l) == 0 {
                rt.sleep(Duration::from_millis(5)).await; // a poll interval
            }
        })
        .await;
        assert_eq!(cluster.stats(l).await.refused_tls, before.refused_tls);
        stranger.close().await;
    } else {
        let ending = within(&*rt, "the leader ending the stranger", stranger.ending()).await;
        assert_eq!(ending, Ending::of_refusal(net, papers));
        within(&*rt, "the refusal counted", async {
            while cluster.stats(l).await.refused_tls == before.refused_tls {
                rt.sleep(Duration::from_millis(5)).await; // a poll interval
            }
        })
        .await;
        let after = cluster.stats(l).await;
        assert_eq!(
            (after.refused_tls, after.refused_other),
            (before.refused_tls + 1, before.refused_other),
            "before: {before:?}"
        );
    }

    // The leader still commits and serves reads, and its clients see nothing of the
    // stranger. A commit needs Accepted replies that arrived after the stranger's
    // message: had that been admitted, the core would have been handed it by now.
    let handle = cluster.handle(l).clone();
    let out = propose_until_applied(&*rt, std::slice::from_ref(&handle), 0, Kv::set(7, 70)).await;
    assert!(out.is_empty(), "key 7 had a value: {out:?}");
    let answer = handle.read(Kv::get(7)).await.unwrap();
    assert_eq!(Kv::value(&answer), Some(70));
    let expected = u64::from(papers == Papers::Genuine);
    assert_eq!(cluster.forged(l), expected, "forged messages at the core");
    cluster.shutdown().await;
}

fn alpn(net: Net) -> &'static [u8] {
    match net {
        Net::Quic => paxos_net_quic::ALPN,
        Net::TcpTls => paxos_net_tcp::TLS_ALPN,
        Net::Tcp => unreachable!("plain TCP has no strangers to refuse"),
    }
}

/// The stranger's TLS client config: it trusts the cluster CA, and presents `papers`.
fn client_tls(
    cluster: &Cluster,
    papers: Papers,
    claims: u64,
    other: u64,
    alpn: &[u8],
) -> Arc<ClientConfig> {
    let keys = &cluster.keys;
    let identity = match papers {
        Papers::None => {
            let mut roots = RootCertStore::empty();
            for ca in keys.identity(claims).ca_certificates() {
                roots.add(ca.clone()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            return Arc::new(config);
        }
        Papers::AnotherCa => {
            let another = DevCa::generate("another CA").unwrap();
            let cert = another.issue(NodeId(claims)).unwrap();
            cert.identity(&keys.ca().ca_pem()).unwrap()
        }
        Papers::AnotherMember => keys.identity(other),
        Papers::Genuine => keys.identity(claims),
    };
    identity.client_config(&[alpn]).unwrap()
}

/// How the leader ended a stranger's connection, as the stranger saw it.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The TLS handshake failed with this alert from the leader.
    Alert(rustls::AlertDescription),
    /// QUIC: the leader closed the connection with this application error code.
    Code(u64),
    /// TCP: the leader closed the stream without a word.
    Closed,
    /// The leader answered (TCP: with its Hello): it admitted the stranger.
    Answered,
    /// Anything else.
    Other(String),
}

impl Ending {
    /// What a refusal of `papers` over `net` looks like.
    fn of_refusal(net: Net, papers: Papers) -> Self {
        match (papers, net) {
            (Papers::None, _) => Self::Alert(rustls::AlertDescription::CertificateRequired),
            (Papers::AnotherCa, _) => Self::Alert(rustls::AlertDescription::UnknownCA),
            // The handshake passes (the certificate is the cluster CA's); the claim in the
            // Hello does not match it.
            (Papers::AnotherMember, Net::Quic) => {
                Self::Code(u64::from(paxos_net_quic::error_code::REFUSED_IDENTITY))
            }
            (Papers::AnotherMember, _) => Self::Closed,
            (Papers::Genuine, _) => unreachable!("the genuine member is admitted"),
        }
    }

    fn of_quic(error: &quinn::ConnectionError) -> Self {
        match error {
            quinn::ConnectionError::ConnectionClosed(close) => {
                // QUIC carries a TLS alert as the transport error CRYPTO_ERROR + alert.
                let code = u64::from(close.error_code);
                match code.checked_sub(0x100).map(u8::try_from) {
                    Some(Ok(alert)) => Self::Alert(alert.into()),
                    _ => Self::Other(error.to_string()),
                }
            }
            quinn::ConnectionError::ApplicationClosed(close) => {
                Self::Code(close.error_code.into_inner())
            }
            _ => Self::Other(error.to_string()),
        }
    }

    fn of_tls(error: &std::io::Error) -> Self {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::AlertReceived(alert)) => Self::Alert(*alert),
            _ if error.kind() == std::io::ErrorKind::UnexpectedEof => Self::Closed,
            _ => Self::Other(error.to_string()),
        }
    }
}

/// A hand-driven dialer: it claims to be `claims` in its Hello, then sends [`forged`].
enum Stranger {
    /// The endpoint, and the connection with its stream (kept open: a finished stream
    /// would end an admitted connection), or the handshake's error.
    Quic(
        quinn::Endpoint,
        Result<(quinn::Connection, Option<quinn::SendStream>), quinn::ConnectionError>,
    ),
    /// The TLS stream, or the handshake's error. In TLS 1.3 the client's side of the
    /// handshake may complete before the server has checked the client's certificate.
    Tcp(std::io::Result<paxos_net_tcp::BoxConn>),
}

impl Stranger {
    async fn dial(
        net: Net,
        rt: &Arc<dyn Runtime>,
        tls: Arc<ClientConfig>,
        addr: SocketAddr,
        to: u64,
        claims: u64,
    ) -> Self {
        let (to, claims) = (NodeId(to), NodeId(claims));
        let mut forged_frame = BytesMut::new();
        encode_frame(&forged(), &mut forged_frame, DEFAULT_MAX_FRAME_BYTES).unwrap();
        match net {
            Net::Quic => {
                let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
                let config = quinn::ClientConfig::new(Arc::new(quic));
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let endpoint = quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    None,
                    socket,
                    common::quinn_runtime(),
                )
                .unwrap();
                let name = paxos_tls::node_name(to);
                let connecting = endpoint.connect_with(config, addr, &name).unwrap();
                let hello = paxos_net_quic::Hello::new(
                    CLUSTER,
                    claims,
                    to,
                    paxos_net_quic::StreamClass::Control,
                );
                let mut frames = BytesMut::new();
                encode_frame(&hello, &mut frames, paxos_net_quic::HELLO_MAX_BYTES).unwrap();
                frames.extend_from_slice(&forged_frame);
                let conn = within(&**rt, "the stranger's QUIC handshake", async {
                    let conn = connecting.await?;
                    // The leader may close first; `refused` looks at how it closed.
                    let mut stream = conn.open_uni().await.ok();
                    if let Some(stream) = &mut stream {
                        let _ = stream.write_all(&frames).await;
                    }
                    Ok((conn, stream))
                })
                .await;
                Self::Quic(endpoint, conn)
            }
            Net::TcpTls => {
                let hello = paxos_net_tcp::Hello::new(CLUSTER, claims, to);
                let mut frames = BytesMut::new();
                encode_frame(&hello, &mut frames, paxos_net_tcp::HELLO_MAX_BYTES).unwrap();
                frames.extend_from_slice(&forged_frame);
                let tcp = rt.connect_tcp(addr).await.unwrap();
                let connector = futures_rustls::TlsConnector::from(tls);
                let server = paxos_tls::server_name(to);
                let conn = within(&**rt, "the stranger's TLS handshake", async {
                    let mut stream = connector.connect(server, tcp).await?;
                    // The leader may close first; `refused` looks at what it answered.
                    let _ = stream.write_all(&frames).await;
                    let _ = stream.flush().await;
                    Ok::<paxos_net_tcp::BoxConn, std::io::Error>(Box::new(stream))
                })
                .await;
                Self::Tcp(conn)
            }
            Net::Tcp => unreachable!("plain TCP has no strangers to refuse"),
        }
    }

    /// Waits until the leader has ended the connection; how it did.
    async fn ending(self) -> Ending {
        match self {
            Self::Quic(endpoint, conn) => {
                let ending = match conn {
                    Ok((conn, _stream)) => Ending::of_quic(&conn.closed().await),
                    Err(error) => Ending::of_quic(&error),
                };
                endpoint.wait_idle().await;
                ending
            }
            // An admitted dialer gets the leader's Hello back.
            Self::Tcp(Ok(mut conn)) => match conn.read(&mut [0u8; 64]).await {
                Ok(0) => Ending::Closed,
                Ok(_) => Ending::Answered,
                Err(error) => Ending::of_tls(&error),
            },
            Self::Tcp(Err(error)) => Ending::of_tls(&error),
        }
    }

    async fn close(self) {
        match self {
            Self::Quic(endpoint, conn) => {
                if let Ok((conn, _stream)) = conn {
                    conn.close(quinn::VarInt::from_u32(0), b"bye");
                }
                endpoint.wait_idle().await;
            }
            Self::Tcp(conn) => {
                if let Ok(mut conn) = conn {
                    let _ = conn.close().await;
                }
            }
        }
    }
}
