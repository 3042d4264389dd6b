//! Starts a three-node lock service in this process, on loopback TCP, takes and releases
//! locks, shuts the leader down, and prints what happens.
//!
//! ```text
//! cargo run -p paxos-example-lock -- --runtime smol --storage file
//! cargo run -p paxos-example-lock -- --runtime tokio --storage file --dir /tmp/locks
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use paxos_example_lock::{
    ClientError, LocalCluster, LockClient, Response, RuntimeChoice, StorageChoice,
};
use paxos_node::Runtime;

/// How long to wait for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// A replicated lock service: three nodes in one process, on 127.0.0.1.
#[derive(Debug, Parser)]
struct Args {
    /// The async runtime the nodes run on.
    #[arg(long, value_enum, default_value = "tokio")]
    runtime: RuntimeChoice,
    /// Where the nodes keep their promises and accepted values.
    #[arg(long, value_enum, default_value = "memory")]
    storage: StorageArg,
    /// With `--storage file`: the directory to keep the nodes' files in, across runs
    /// (the locks are still held when you run again). Default: a temporary directory,
    /// removed on exit.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StorageArg {
    /// In memory: gone when the program exits.
    Memory,
    /// Files, fsynced: a checksummed write-ahead log per node.
    File,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Kept until the end of `main`: a temporary directory is removed when dropped.
    let temporary;
    let storage = match (args.storage, &args.dir) {
        (StorageArg::Memory, _) => StorageChoice::Memory,
        (StorageArg::File, Some(dir)) => StorageChoice::File(dir.clone()),
        (StorageArg::File, None) => match tempfile::tempdir() {
            Ok(dir) => {
                temporary = dir;
                StorageChoice::File(temporary.path().to_path_buf())
            }
            Err(e) => {
                eprintln!("cannot create a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    println!("runtime: {:?}, storage: {storage:?}", args.runtime);
    match args.runtime.block_on(|runtime| demo(runtime, storage)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot start the {:?} runtime: {e}", args.runtime);
            ExitCode::FAILURE
        }
    }
}

async fn demo(runtime: Arc<dyn Runtime>, storage: StorageChoice) -> Result<(), String> {
    let mut cluster = LocalCluster::start(runtime.clone(), 3, storage)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = scenario(&runtime, &mut cluster).await;
    cluster.shutdown().await;
    println!("cluster stopped");
    outcome
}

async fn scenario(runtime: &Arc<dyn Runtime>, cluster: &mut LocalCluster) -> Result<(), String> {
    for (i, id) in cluster.ids().iter().enumerate() {
        if let Some(addr) = cluster.addr(i) {
            println!("{id} listening on {addr}");
        }
    }
    let leader = cluster
        .leader(LEADER_WAIT)
        .await
        .ok_or("no leader within 10 s")?;
    let leader_id = cluster.ids()[leader];
    println!("leader: {leader_id}");

    // Both clients start at a follower: it forwards writes to the leader.
    let follower = (leader + 1) % 3;
    let mut alice = LockClient::new(runtime.clone(), cluster.handles()).prefer(follower);
    let mut bob = LockClient::new(runtime.clone(), cluster.handles()).prefer(follower);
    let lock = "printer";

    let mut acquired = alice.acquire(lock, "alice").await.map_err(text)?;
    println!("alice acquires {lock:?}: {}", describe(&acquired));
    if let Response::Held(earlier) = &acquired {
        // Held since an earlier run over the same --dir: its holder gives it back.
        let mut holder = LockClient::new(runtime.clone(), cluster.handles());
        let released = holder
            .release(lock, &earlier.owner, earlier.token)
            .await
            .map_err(text)?;
        println!(
            "{} releases {lock:?}: {}",
            earlier.owner,
            describe(&released)
        );
        acquired = alice.acquire(lock, "alice").await.map_err(text)?;
        println!("alice acquires {lock:?}: {}", describe(&acquired));
    }
    let Response::Acquired { token } = acquired else {
        return Err(format!("alice could not take {lock:?}"));
    };
    let tried = bob.acquire(lock, "bob").await.map_err(text)?;
    println!("bob acquires {lock:?}: {}", describe(&tried));
    let stolen = bob.release(lock, "bob", token).await.map_err(text)?;
    println!("bob releases {lock:?}: {}", describe(&stolen));

    println!("shutting down the leader, {leader_id}");
    cluster.stop(leader).await;
    let new = cluster
        .leader(LEADER_WAIT)
        .await
        .ok_or("no new leader within 10 s")?;
    println!("new leader: {}", cluster.ids()[new]);
    match bob.holder(lock).await.map_err(text)? {
        Some(h) => println!("{lock:?} is still held by {} (token {})", h.owner, h.token),
        None => println!("{lock:?} is free"),
    }
    let tried = bob.acquire(lock, "bob").await.map_err(text)?;
    println!("bob acquires {lock:?}: {}", describe(&tried));

    let released = alice.release(lock, "alice", token).await.map_err(text)?;
    println!("alice releases {lock:?}: {}", describe(&released));
    let taken = bob.acquire(lock, "bob").await.map_err(text)?;
    println!("bob acquires {lock:?}: {}", describe(&taken));
    println!("(bob keeps it: with --storage file --dir, the next run finds it held)");
    Ok(())
}

fn describe(response: &Response) -> String {
    match response {
        Response::Acquired { token } => format!("acquired, fencing token {token}"),
        Response::Held(h) => format!("refused, held by {} (token {})", h.owner, h.token),
        Response::Released => "released".into(),
        Response::NotOwner { holder } => format!(
            "refused, not the holder (held by {}, token {})",
            holder.owner, holder.token
        ),
        Response::NotHeld => "refused, nobody holds it".into(),
        other => format!("{other:?}"),
    }
}

fn text(e: ClientError) -> String {
    e.to_string()
}
