//! `paxos-node cluster`: a local cluster in one command.
//!
//! Picks free loopback ports (outside the ephemeral range: see [`pick_ports`]), writes one
//! config file and one data directory per node under the cluster directory, starts
//! `paxos-node serve` for each as a child process, restarts a child that exits (with
//! backoff; it gives up on a node that keeps crashing at once: see [`RestartPolicy`]), and
//! on SIGINT/SIGTERM stops every child with SIGTERM, waits for it (SIGKILL after
//! [`STOP_GRACE`]), and exits. Running it again on the same directory reuses the saved
//! ports and data.
//!
//! **Children die with the supervisor.** Each child asks the kernel for SIGTERM when its
//! parent dies (`PR_SET_PDEATHSIG`, in `server::watch_supervisor`). The kernel's "parent"
//! there is the *thread* that forked the child, not the process: the signal fires when that
//! thread exits, even while the rest of the supervisor runs. So every child is forked by
//! the main thread, whose exit is the process's exit: the supervisors run inside the future
//! `main` blocks on, never on a tokio worker (workers are threads the runtime may retire,
//! e.g. after `block_in_place`, and a child forked by one would be killed with it).
//! `spawn_child` asserts it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{error, info, warn};

use paxos_kv::server::{Peer, RuntimeKind, ServerConfig, StorageKind, TransportKind};

use crate::config;

/// `paxos-node cluster`.
#[derive(Clone, Debug, Args)]
pub(crate) struct ClusterArgs {
    /// Number of nodes (1 to 9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub(crate) nodes: u64,
    /// Cluster directory (configs, data, logs). Default: a new directory under the system
    /// temp dir, printed at start. An existing cluster directory is reused.
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Storage backend of every node.
    #[arg(long, value_enum, default_value_t = StorageKind::File)]
    pub(crate) storage: StorageKind,
    /// Async runtime of every node (the supervisor itself runs on tokio). Used when the
    /// cluster is created; a reused cluster keeps the runtime saved in its configs.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Tokio)]
    pub(crate) runtime: RuntimeKind,
    /// Threads of each node's runtime (`serve --threads`). Used when the cluster is
    /// created, like --runtime.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// How long each node's file-store I/O thread polls before it sleeps, in µs (`serve
    /// --file-idle-spin-us`; default 250). Used when the cluster is created, like --runtime.
    #[arg(long)]
    pub(crate) file_idle_spin_us: Option<u64>,
    /// Transport between the nodes. Default tcp: plain TCP on loopback, where a local
    /// development cluster has nothing to protect and no certificates to manage. quic is
    /// always mutual TLS. Used when the cluster is created, like --runtime.
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp)]
    pub(crate) transport: TransportKind,
    /// Mutual TLS over TCP too. With it or with --transport quic, a development CA and a
    /// certificate per node are written to `DIR/certs` (as `paxos-node certs` does).
    #[arg(long)]
    pub(crate) tls: bool,
}

/// Stop a child: SIGTERM, then SIGKILL after this long.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Restart backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A child that ran this long counts as healthy: its backoff and crash count reset.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// Quick crashes in a row after which a node is given up.
const MAX_QUICK_CRASHES: u32 = 10;

/// When to restart a child that exited: a pure function of how long each run lasted.
///
/// A run shorter than [`HEALTHY_AFTER`] is a quick crash. Quick crashes in a row wait
/// [`BACKOFF_MIN`], then twice as long each time, up to [`BACKOFF_MAX`]; the
/// [`MAX_QUICK_CRASHES`]th in a row gives the node up. The exit of a healthy run forgets
/// them all: it waits [`BACKOFF_MIN`] again, and the count starts over.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RestartPolicy {
    /// The wait after the next quick crash.
    backoff: Duration,
    /// Quick crashes since the last healthy run.
    quick_crashes: u32,
}

impl RestartPolicy {
    fn new() -> Self {
        Self {
            backoff: BACKOFF_MIN,
            quick_crashes: 0,
        }
    }

    /// A child exited after running for `ran`: how long to wait before starting it again,
    /// or `None` to give it up.
    fn on_exit(&mut self, ran: Duration) -> Option<Duration> {
        if ran >= HEALTHY_AFTER {
            *self = Self::new();
        } else {
            self.quick_crashes += 1;
            if self.quick_crashes >= MAX_QUICK_CRASHES {
                return None;
            }
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Some(wait)
    }
}

fn node_config_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}")).join("node.toml")
}

/// Loads the cluster saved in `dir`, or lays out a new one there.
fn layout(args: &ClusterArgs, dir: &Path) -> Result<Vec<ServerConfig>, String> {
    let ids: Vec<u64> = (1..=args.nodes).collect();
    if node_config_path(dir, 1).exists() {
        let configs = ids
            .iter()
            .map(|&id| {
                let path = node_config_path(dir, id);
                config::resolve(&config::ServeArgs {
                    config: Some(path),
                    ..config::ServeArgs::default()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if configs[0].peers.len() as u64 != args.nodes {
            return Err(format!(
                "{} holds a cluster of {} nodes, not {}",
                dir.display(),
                configs[0].peers.len(),
                args.nodes
            ));
        }
        info!(dir = %dir.display(), "reusing the saved cluster");
        return Ok(configs);
    }
    let ports = pick_ports(3 * ids.len())?;
    let addr = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let peers: Vec<Peer> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| Peer {
            id,
            addr: addr(ports[3 * i]),
        })
        .collect();
    let certs = if args.tls || args.transport == TransportKind::Quic {
        let node_ids: Vec<paxos_node::NodeId> =
            ids.iter().map(|&id| paxos_node::NodeId(id)).collect();
        let files = paxos_node::tls::dev::write_cluster(&dir.join("certs"), &node_ids)
            .map_err(|e| format!("writing the cluster's certificates: {e}"))?;
        info!(dir = %dir.join("certs").display(), "wrote a development CA and node certificates");
        Some(files)
    } else {
        None
    };
    let mut configs = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let node_dir = dir.join(format!("node-{id}"));
        let tls = certs.as_ref().map(|files| {
            (
                files.ca.clone(),
                files.nodes[&paxos_node::NodeId(id)].clone(),
            )
        });
        std::fs::create_dir_all(&node_dir).map_err(|e| format!("{}: {e}", node_dir.display()))?;
        let config = config::resolve(&config::ServeArgs {
            id: Some(id),
            peers: peers.clone(),
            resp: Some(addr(ports[3 * i + 1])),
            admin: Some(addr(ports[3 * i + 2])),
            data_dir: Some(node_dir.join("data")),
            storage: Some(args.storage),
            runtime: Some(args.runtime),
            threads: Some(args.threads),
            file_idle_spin_us: args.file_idle_spin_us,
            transport: Some(args.transport),
            tls_ca: tls.as_ref().map(|t| t.0.clone()),
            tls_cert: tls.as_ref().map(|t| t.1.0.clone()),
            tls_key: tls.as_ref().map(|t| t.1.1.clone()),
            ..config::ServeArgs::default()
        })?;
        config::write_file(&node_config_path(dir, id), &config::to_file(&config))?;
        configs.push(config);
    }
    Ok(configs)
}

/// The lowest port [`pick_ports`] hands out (below it: well-known services).
const PORT_FIRST: u32 = 1024;
/// Fewer free ports than this outside the ephemeral range: [`pick_ports`] uses `bind(0)`.
const PORT_ROOM_MIN: u32 = 1000;

/// `n` distinct free ports on 127.0.0.1, outside the ephemeral range
/// (`net.ipv4.ip_local_port_range`) where it leaves room, each free for both TCP and UDP
/// (a node's peer port is a UDP port under `--transport quic`).
///
/// Why not `bind(0)`: a node that is restarted binds its saved ports again while its peers
/// keep redialling it. `bind(0)` takes ports from the ephemeral range, the range the kernel
/// also draws the source port of every outbound connection (and unbound UDP socket) from;
/// once a node's port is free, a peer's redial (which can even connect to itself, by TCP
/// simultaneous open) or any other outbound socket may get it, and the node's bind fails
/// for as long as that connection lives. The kernel never assigns a port outside the range
/// by itself: only an explicit bind takes one. Each candidate is checked by binding it for
/// TCP and for UDP, and all are held until every one is chosen, so they are distinct. The
/// scan starts at an offset taken from the process id, so two clusters started at once
/// rarely try the same ports.
fn pick_ports(n: usize) -> Result<Vec<u16>, String> {
    let (low, high) = ephemeral_range();
    let below = (PORT_FIRST, low.saturating_sub(PORT_FIRST));
    let above = (high + 1, 65535u32.saturating_sub(high));
    let (start, len) = if below.1 >= above.1 { below } else { above };
    let mut held = Vec::with_capacity(n);
    if len >= PORT_ROOM_MIN {
        let offset = std::process::id().wrapping_mul(7919) % len;
        // Bounded: one pass over the stretch.
        let candidates = (0..len).map(|i| (start + (offset + i) % len) as u16);
        held = hold_ports(n, candidates);
    }
    if held.len() < n {
        warn!("no free ports outside the ephemeral range {low}-{high}; using bind(0)");
        // Bounded: a port that `bind(0)` gives for TCP is rarely taken for UDP.
        let more = hold_ports(n - held.len(), std::iter::repeat_n(0, 100 * n));
        held.extend(more);
    }
    if held.len() < n {
        return Err(format!(
            "picking ports: no {n} ports free for both TCP and UDP"
        ));
    }
    Ok(held.iter().map(|h| h.port).collect())
}

/// A port held for TCP and UDP while [`pick_ports`] chooses.
struct HeldPort {
    port: u16,
    _tcp: std::net::TcpListener,
    _udp: std::net::UdpSocket,
}

/// The first `n` of `candidates` (0: any port `bind(0)` gives) that 127.0.0.1 binds for
/// both TCP and UDP, held; fewer if the candidates run out.
fn hold_ports(n: usize, candidates: impl Iterator<Item = u16>) -> Vec<HeldPort> {
    let mut held: Vec<HeldPort> = Vec::with_capacity(n);
    for candidate in candidates {
        if held.len() == n {
            break;
        }
        let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", candidate)) else {
            continue;
        };
        let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if held.iter().any(|h| h.port == port) {
            continue;
        }
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            held.push(HeldPort {
                port,
                _tcp: tcp,
                _udp: udp,
            });
        }
    }
    held
}

/// `net.ipv4.ip_local_port_range`; Linux's default where it cannot be read.
fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut words = text.split_whitespace().map(|w| w.parse::<u32>().ok());
            Some((words.next()??, words.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Runs the cluster until SIGINT or SIGTERM.
pub(crate) async fn run(args: ClusterArgs) -> Result<(), String> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("paxos-node-cluster-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let configs = layout(&args, &dir)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    println!("cluster directory: {}", dir.display());
    for c in &configs {
        println!(
            "node {}: redis-cli -p {}    admin http://{}/status    log {}",
            c.id,
            c.resp.port(),
            c.admin.map(|a| a.to_string()).unwrap_or_default(),
            dir.join(format!("node-{}", c.id))
                .join("node.log")
                .display()
        );
    }
    println!("Ctrl-C stops the cluster.");
    let (stop_tx, stop_rx) = watch::channel(false);
    // Polled by this future, so on the thread `main` blocks on: every child is forked by
    // the main thread (see the module docs). Never `tokio::spawn` these.
    let supervisors = futures::future::join_all(configs.iter().map(|c| {
        supervise(
            exe.clone(),
            c.id,
            node_config_path(&dir, c.id),
            stop_rx.clone(),
            STOP_GRACE,
        )
    }));
    let mut supervisors = std::pin::pin!(supervisors);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping the cluster"),
        _ = sigterm.recv() => info!("SIGTERM: stopping the cluster"),
        _ = &mut supervisors => return Err("every node was given up".into()),
    }
    let _ = stop_tx.send(true);
    supervisors.await;
    println!("cluster stopped");
    Ok(())
}

/// Starts node `id`; `restart` when it ran before (then it gets `--rejoin`: with an empty
/// store, memory storage for one, it must rejoin without a vote).
fn spawn_child(exe: &Path, id: u64, config: &Path, restart: bool) -> Result<Child, String> {
    // The child's PR_SET_PDEATHSIG fires when the thread that forks it exits: only the
    // main thread lives exactly as long as this process.
    assert_eq!(
        nix::unistd::gettid(),
        nix::unistd::getpid(),
        "children are forked by the main thread only"
    );
    let log_path = config.with_file_name("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args(restart.then_some("--rejoin"))
        .env("PAXOS_NODE_SUPERVISOR_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting node {id}: {e}"))?;
    info!(node = id, pid = ?child.id(), "node started");
    Ok(child)
}

/// Stops a child: SIGTERM, wait, SIGKILL if it does not exit within `grace`.
async fn stop_child(id: u64, child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            info!(node = id, ?status, "node stopped");
            status
        }
        Err(_) => {
            warn!(node = id, "node ignored SIGTERM for {grace:?}; killing it");
            child.kill().await?;
            child.wait().await
        }
    }
}

/// Keeps node `id` running until `stop` turns true; on stop, stops it within `grace`
/// (then SIGKILL).
async fn supervise(
    exe: PathBuf,
    id: u64,
    config: PathBuf,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut policy = RestartPolicy::new();
    let mut restart = false;
    while !*stop.borrow() {
        let mut child = match spawn_child(&exe, id, &config, restart) {
            Ok(c) => c,
            Err(e) => {
                error!("{e}");
                return;
            }
        };
        restart = true;
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                let Some(wait) = policy.on_exit(started.elapsed()) else {
                    error!(
                        node = id,
                        ?status,
                        "node exited after {MAX_QUICK_CRASHES} quick crashes in a row; giving up on it"
                    );
                    return;
                };
                warn!(node = id, ?status, "node exited; restarting in {wait:?}");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            _ = stop.changed() => {
                let _ = stop_child(id, &mut child, grace).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use tokio::io::AsyncBufReadExt;

    use super::*;

    const QUICK: Duration = Duration::from_millis(50);

    fn ms(ms: u64) -> Option<Duration> {
        Some(Duration::from_millis(ms))
    }

    #[test]
    fn quick_crashes_back_off_from_200_ms_to_5_s_then_give_up() {
        let mut policy = RestartPolicy::new();
        let waits: Vec<_> = (1..MAX_QUICK_CRASHES)
            .map(|_| policy.on_exit(QUICK))
            .collect();
        assert_eq!(
            waits,
            [
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                ms(5000),
                ms(5000),
                ms(5000)
            ]
        );
        // The tenth quick crash in a row gives the node up.
        assert_eq!(policy.on_exit(QUICK), None);
    }

    #[test]
    fn a_healthy_run_resets_the_backoff_and_the_count() {
        let mut policy = RestartPolicy::new();
        for _ in 0..6 {
            assert!(policy.on_exit(QUICK).is_some());
        }
        // Just short of healthy is still quick.
        assert_eq!(policy.on_exit(HEALTHY_AFTER - QUICK), ms(5000));
        assert_eq!(policy.on_exit(HEALTHY_AFTER), ms(200));
        assert_eq!(policy, {
            let mut fresh = RestartPolicy::new();
            fresh.on_exit(HEALTHY_AFTER);
            fresh
        });
        assert_eq!(policy.on_exit(QUICK), ms(400));
        // The count started over: nine quick crashes after the healthy run are retried.
        for _ in 1..MAX_QUICK_CRASHES - 1 {
            assert!(policy.on_exit(QUICK).is_some());
        }
        assert_eq!(policy.on_exit(QUICK), None);
    }

    /// Starts `sh -c script` and waits until it printed its first line.
    async fn shell(script: &str) -> Child {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), out.read_line(&mut line))
            .await
            .expect("the child to start")
            .unwrap();
        assert_eq!(line, "ready\n");
        child
    }

    #[tokio::test]
    async fn stop_kills_a_child_that_ignores_sigterm_after_the_grace() {
        // `trap '' TERM` ignores SIGTERM, and `exec` keeps it ignored in `sleep`.
        let mut child = shell("trap '' TERM; echo ready; exec sleep 30").await;
        let grace = Duration::from_millis(300);
        let started = Instant::now();
        let status = stop_child(1, &mut child, grace).await.unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
        assert!(started.elapsed() >= grace, "killed before the grace ended");
    }

    #[tokio::test]
    async fn stop_ends_a_child_with_sigterm_within_the_grace() {
        let mut child = shell("echo ready; exec sleep 30").await;
        let status = stop_child(1, &mut child, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");
    }

    #[test]
    fn a_port_taken_for_udp_or_tcp_is_not_picked() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (taken_udp, taken_tcp) = (
            udp.local_addr().unwrap().port(),
            tcp.local_addr().unwrap().port(),
        );
        let free = hold_ports(1, std::iter::once(0))[0].port;
        let held = hold_ports(3, [taken_udp, taken_tcp, free].into_iter());
        let ports: Vec<u16> = held.iter().map(|h| h.port).collect();
        assert_eq!(ports, [free], "taken: UDP {taken_udp}, TCP {taken_tcp}");
    }

    #[test]
    fn ports_are_picked_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        let ports = pick_ports(9).unwrap();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 9, "{ports:?}");
        if low.saturating_sub(PORT_FIRST).max(65535 - high) >= PORT_ROOM_MIN {
            for p in ports.iter().map(|&p| u32::from(p)) {
                assert!(!(low..=high).contains(&p), "{p} is in {low}-{high}");
            }
        }
    }
}
