//! `paxos-node cluster`: a local cluster in one command.
//!
//! Picks free loopback ports (bind port 0, read it, release it), writes one config file and
//! one data directory per node under the cluster directory, starts `paxos-node serve` for
//! each as a child process, restarts a child that exits (with backoff; it gives up on a
//! node that keeps crashing at once), and on SIGINT/SIGTERM stops every child with SIGTERM,
//! waits for it, and exits. Running it again on the same directory reuses the saved ports
//! and data.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{self, NodeConfig, Peer, StorageKind};

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

fn node_config_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}")).join("node.toml")
}

/// Loads the cluster saved in `dir`, or lays out a new one there.
fn layout(args: &ClusterArgs, dir: &Path) -> Result<Vec<NodeConfig>, String> {
    let ids: Vec<u64> = (1..=args.nodes).collect();
    if node_config_path(dir, 1).exists() {
        let configs = ids
            .iter()
            .map(|&id| {
                let path = node_config_path(dir, id);
                NodeConfig::resolve(&config::ServeArgs {
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
    // Hold every listener until all ports are read, so they are distinct.
    let listeners = (0..3 * ids.len())
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("picking ports: {e}"))?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    drop(listeners);
    let addr = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let peers: Vec<Peer> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| Peer {
            id,
            addr: addr(ports[3 * i]),
        })
        .collect();
    let mut configs = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let node_dir = dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir).map_err(|e| format!("{}: {e}", node_dir.display()))?;
        let config = NodeConfig::resolve(&config::ServeArgs {
            id: Some(id),
            peers: peers.clone(),
            resp: Some(addr(ports[3 * i + 1])),
            admin: Some(addr(ports[3 * i + 2])),
            data_dir: Some(node_dir.join("data")),
            storage: Some(args.storage),
            ..config::ServeArgs::default()
        })?;
        config::write_file(&node_config_path(dir, id), &config.to_file())?;
        configs.push(config);
    }
    Ok(configs)
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
    let supervisors: Vec<_> = configs
        .iter()
        .map(|c| {
            tokio::spawn(supervise(
                exe.clone(),
                c.id,
                node_config_path(&dir, c.id),
                stop_rx.clone(),
            ))
        })
        .collect();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping the cluster"),
        _ = sigterm.recv() => info!("SIGTERM: stopping the cluster"),
    }
    let _ = stop_tx.send(true);
    for s in supervisors {
        let _ = s.await;
    }
    println!("cluster stopped");
    Ok(())
}

fn spawn_child(exe: &Path, id: u64, config: &Path) -> Result<Child, String> {
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

/// Stops a child: SIGTERM, wait, SIGKILL if it does not exit in time.
async fn stop_child(id: u64, child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => info!(node = id, ?status, "node stopped"),
        Err(_) => {
            warn!(
                node = id,
                "node ignored SIGTERM for {STOP_GRACE:?}; killing it"
            );
            let _ = child.kill().await;
        }
    }
}

/// Keeps node `id` running until `stop` turns true.
async fn supervise(exe: PathBuf, id: u64, config: PathBuf, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_MIN;
    let mut quick_crashes = 0;
    while !*stop.borrow() {
        let mut child = match spawn_child(&exe, id, &config) {
            Ok(c) => c,
            Err(e) => {
                error!("{e}");
                return;
            }
        };
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                warn!(node = id, ?status, "node exited; restarting in {backoff:?}");
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff = BACKOFF_MIN;
                    quick_crashes = 0;
                } else {
                    quick_crashes += 1;
                    if quick_crashes >= MAX_QUICK_CRASHES {
                        error!(node = id, "node crashed {quick_crashes} times in a row; giving up on it");
                        return;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            _ = stop.changed() => {
                stop_child(id, &mut child).await;
                return;
            }
        }
    }
}
