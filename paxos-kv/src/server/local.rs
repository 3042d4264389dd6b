//! The commands answered on this node, without the state machine: connection commands
//! (`HELLO`, `CLIENT`, `PING`, `ECHO`, `SELECT`, `AUTH`, `RESET`, `QUIT`) and server
//! commands (`INFO`, `COMMAND`, `CONFIG GET`). Each reply is Redis 7's, byte for byte where
//! Redis's is stable; where this server differs it says so here.
//!
//! * `HELLO` reports `server: redis`, `version:` [`REDIS_VERSION`], the connection's
//!   protocol and id, `mode: standalone`, and `role: master` on the Paxos leader,
//!   `replica` on any other node (a follower, or a node that knows no leader): every node
//!   serves reads and writes, but only the leader orders them. `HELLO 3` switches the
//!   connection to RESP3.
//! * There are no passwords: `AUTH`, and `HELLO` with `AUTH`, are refused with Redis's
//!   reply for a server that has none, so a client configured with a password fails
//!   loudly instead of believing itself protected.
//! * `SELECT 0` is the only database; `SELECT n` for any other `n` is `-ERR DB index is out
//!   of range` (Redis has 16).
//! * `INFO` has the sections `server`, `clients`, `persistence`, `replication`, `cluster`
//!   and `keyspace` (`default`, `all` and `everything` mean all of them); `replication`
//!   says `role:master` on the leader and `role:slave` elsewhere, and adds this node's view
//!   of the cluster (`paxos_*` fields). `keyspace` costs a linearizable `DBSIZE` read; if
//!   that read fails (no leader), `INFO` answers that error.
//! * `CONFIG GET` knows no parameter: it answers an empty map, which is enough for the
//!   tools that probe it (`redis-benchmark`).

use crate::kv::{KvAnswer, KvQuery, parse_redis_integer};
use crate::resp::{Encoder, Protocol};
use bytes::Bytes;
use paxos_core::Role;

use crate::server::Ctx;
use crate::server::commands::{self, Cmd, Spec};
use crate::server::connection::{Conn, Flow, read};

/// The Redis version this server reports (`HELLO`, `INFO`): the replies it gives are
/// Redis 7's, `CLIENT SETINFO` (7.2) included.
pub(crate) const REDIS_VERSION: &str = "7.2.0";

/// Redis's reply to a password on a server without one; client libraries know it (redis-py
/// raises `AuthenticationError` on it).
const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the \
     default user. Are you sure your configuration is correct?";

const NAME_CHARS: &str = "cannot contain spaces, newlines or special characters.";

/// Executes one command of the [`Step::Local`](crate::server::dispatch::Step::Local) kind:
/// `words` is the whole request, already checked against the command table.
pub(crate) async fn execute(
    ctx: &Ctx,
    conn: &mut Conn<'_>,
    spec: &'static Spec,
    words: &[Bytes],
) -> Flow {
    let args = &words[1..];
    let out = &mut conn.out;
    match spec.cmd {
        // PING's arity is -1, but it takes one argument at most (Redis checks in `pingCommand`).
        Cmd::Ping => match args {
            [] => out.simple("PONG"),
            [message] => out.bulk(message),
            _ => out.error(&format!(
                "ERR wrong number of arguments for '{}' command",
                spec.name
            )),
        },
        Cmd::Echo => out.bulk(&args[0]),
        Cmd::Quit => {
            out.simple("OK");
            return Flow::Close;
        }
        Cmd::Reset => {
            conn.tx = None;
            conn.out.set_protocol(Protocol::Resp2);
            let mut info = conn.registration.info();
            info.protocol = Protocol::Resp2;
            info.name = None;
            drop(info);
            conn.out.simple("RESET");
        }
        Cmd::Select => match parse_redis_integer(&args[0]).and_then(|n| i32::try_from(n).ok()) {
            None => out.error("ERR value is not an integer or out of range"),
            Some(0) => out.simple("OK"),
            Some(_) => out.error("ERR DB index is out of range"),
        },
        Cmd::Auth => out.error(NO_PASSWORD),
        Cmd::Hello => hello(ctx, conn, args),
        Cmd::ClientId => out.integer(i64::try_from(conn.registration.id()).unwrap_or(i64::MAX)),
        Cmd::ClientGetName => {
            let name = conn.registration.info().name.clone();
            conn.out.bulk_or_null(name.as_deref());
        }
        Cmd::ClientSetName => match valid_name(&args[1]) {
            Ok(name) => {
                conn.registration.info().name = name;
                conn.out.simple("OK");
            }
            Err(()) => out.error(&format!("ERR Client names {NAME_CHARS}")),
        },
        Cmd::ClientSetInfo => client_setinfo(conn, &args[1], &args[2]),
        Cmd::ClientInfo => {
            let line = conn.registration.info().line(ctx.runtime.now());
            conn.out.verbatim(format!("{line}\n").as_bytes());
        }
        Cmd::ClientList => client_list(ctx, out, &args[1..]),
        Cmd::ClientHelp | Cmd::CommandHelp | Cmd::ConfigHelp => {
            let container =
                commands::find_full(spec.name.split('|').next().unwrap_or_default().as_bytes());
            match container {
                Some(container) => commands::help(out, container),
                None => out.error("ERR no help"),
            }
        }
        Cmd::Command | Cmd::CommandInfo => {
            let names = if spec.cmd == Cmd::Command {
                &[][..]
            } else {
                &args[1..]
            };
            if names.is_empty() {
                out.array(commands::TABLE.len());
                for spec in commands::TABLE {
                    commands::info(out, Some(spec));
                }
            } else {
                out.array(names.len());
                for name in names {
                    commands::info(out, commands::find_full(name));
                }
            }
        }
        Cmd::CommandCount => out.integer(i64::try_from(commands::count()).unwrap_or(i64::MAX)),
        Cmd::CommandDocs => {
            let specs: Vec<&Spec> = if args.len() == 1 {
                commands::TABLE.iter().collect()
            } else {
                // Unknown names are left out, as Redis does.
                args[1..]
                    .iter()
                    .filter_map(|n| commands::find_full(n))
                    .collect()
            };
            commands::docs(out, &specs);
        }
        Cmd::CommandList => commands::list(out),
        Cmd::ConfigGet => out.map(0),
        Cmd::Info => return info(ctx, conn, args).await,
        // The planner sends every other command elsewhere; the containers without a
        // subcommand fail the arity check before they get here.
        _ => out.error(&format!("ERR '{}' is not a local command", spec.name)),
    }
    Flow::Continue
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`, checked in Redis's
/// order (`helloCommand`): the version, then the options left to right, then nothing
/// changes unless all of it is valid.
fn hello(ctx: &Ctx, conn: &mut Conn<'_>, args: &[Bytes]) {
    let out = &mut conn.out;
    let mut protocol = None;
    if let Some(version) = args.first() {
        match parse_redis_integer(version) {
            None => return out.error("ERR Protocol version is not an integer or out of range"),
            Some(2) => protocol = Some(Protocol::Resp2),
            Some(3) => protocol = Some(Protocol::Resp3),
            Some(_) => return out.error("NOPROTO unsupported protocol version"),
        }
    }
    let mut name = None;
    let mut auth = false;
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let option = &args[i];
        if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            auth = true;
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            match valid_name(&args[i + 1]) {
                Ok(valid) => name = Some(valid),
                Err(()) => return out.error(&format!("ERR Client names {NAME_CHARS}")),
            }
            i += 2;
        } else {
            return out.error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(option)
            ));
        }
    }
    if auth {
        return out.error(NO_PASSWORD);
    }
    let mut info = conn.registration.info();
    if let Some(name) = name {
        info.name = name;
    }
    if let Some(protocol) = protocol {
        info.protocol = protocol;
        conn.out.set_protocol(protocol);
    }
    drop(info);
    let out = &mut conn.out;
    let leader = ctx.node.status().role == Role::Leader;
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"redis");
    out.bulk(b"version");
    out.bulk(REDIS_VERSION.as_bytes());
    out.bulk(b"proto");
    out.integer(out.protocol().version());
    out.bulk(b"id");
    out.integer(i64::try_from(conn.registration.id()).unwrap_or(i64::MAX));
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(if leader { b"master" } else { b"replica" });
    out.bulk(b"modules");
    out.array(0);
}

/// A client name or library attribute as Redis accepts it: printable ASCII without
/// spaces (`'!'..='~'`); the empty string clears it (`Ok(None)`).
fn valid_name(name: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    if name.iter().any(|b| !(b'!'..=b'~').contains(b)) {
        return Err(());
    }
    Ok((!name.is_empty()).then(|| name.to_vec()))
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value` (Redis 7.2).
fn client_setinfo(conn: &mut Conn<'_>, attr: &[u8], value: &[u8]) {
    let lib_name = attr.eq_ignore_ascii_case(b"lib-name");
    if !lib_name && !attr.eq_ignore_ascii_case(b"lib-ver") {
        let attr = String::from_utf8_lossy(attr);
        return conn.out.error(&format!("ERR Unrecognized option '{attr}'"));
    }
    let Ok(value) = valid_name(value) else {
        let attr = String::from_utf8_lossy(attr);
        return conn.out.error(&format!("ERR {attr} {NAME_CHARS}"));
    };
    let mut info = conn.registration.info();
    if lib_name {
        info.lib_name = value;
    } else {
        info.lib_ver = value;
    }
    drop(info);
    conn.out.simple("OK");
}

/// `CLIENT LIST [TYPE normal|master|replica|slave|pubsub] [ID id [id ...]]`: every
/// connection here is a normal one.
fn client_list(ctx: &Ctx, out: &mut Encoder, options: &[Bytes]) {
    let mut clients = ctx.clients.snapshot();
    match options {
        [] => {}
        [kind, t] if kind.eq_ignore_ascii_case(b"TYPE") => {
            let t = t.to_ascii_lowercase();
            match t.as_slice() {
                b"normal" => {}
                b"master" | b"replica" | b"slave" | b"pubsub" => clients.clear(),
                _ => {
                    return out.error(&format!(
                        "ERR Unknown client type '{}'",
                        String::from_utf8_lossy(&t)
                    ));
                }
            }
        }
        [id, ids @ ..] if id.eq_ignore_ascii_case(b"ID") && !ids.is_empty() => {
            let mut wanted = Vec::with_capacity(ids.len());
            for id in ids {
                match parse_redis_integer(id) {
                    Some(n) => wanted.push(n),
                    None => return out.error("ERR Invalid client ID"),
                }
            }
            clients.retain(|c| wanted.iter().any(|&w| u64::try_from(w) == Ok(c.id)));
        }
        _ => return out.error("ERR syntax error"),
    }
    let now = ctx.runtime.now();
    let mut text = String::new();
    for client in clients {
        text.push_str(&client.line(now));
        text.push('\n');
    }
    out.verbatim(text.as_bytes());
}

/// The `INFO` sections, in the order Redis writes them whatever the order asked.
const SECTIONS: [&str; 6] = [
    "server",
    "clients",
    "persistence",
    "replication",
    "cluster",
    "keyspace",
];

/// `INFO [section ...]`: the sections named (case-insensitive; unknown names are ignored,
/// as Redis does), all of them when none is. Each starts with `# Name`, its lines end with
/// CRLF, and sections are separated by an empty line.
async fn info(ctx: &Ctx, conn: &mut Conn<'_>, sections: &[Bytes]) -> Flow {
    let all = sections.is_empty()
        || sections.iter().any(|s| {
            [&b"default"[..], b"all", b"everything"]
                .iter()
                .any(|a| s.eq_ignore_ascii_case(a))
        });
    let wanted: Vec<&str> = SECTIONS
        .into_iter()
        .filter(|name| {
            all || sections
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name.as_bytes()))
        })
        .collect();
    let keys = if wanted.contains(&"keyspace") {
        match read(ctx, KvQuery::DbSize).await {
            Ok(KvAnswer::Integer(n)) => n,
            Ok(_) => {
                conn.out
                    .error("ERR malformed answer from the state machine");
                return Flow::Continue;
            }
            Err(failed) => {
                conn.out.error(&failed.reply);
                return failed.flow;
            }
        }
    } else {
        0
    };
    let mut text = String::new();
    for name in wanted {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        section(ctx, name, keys, &mut text);
    }
    conn.out.verbatim(text.as_bytes());
    Flow::Continue
}

/// One `INFO` section: its `# Title` line and its `field:value` lines.
fn section(ctx: &Ctx, name: &str, keys: i64, text: &mut String) {
    let status = ctx.node.status();
    let leader = status.role == Role::Leader;
    let (title, fields): (&str, Vec<(&str, String)>) = match name {
        "server" => {
            let uptime = ctx
                .runtime
                .now()
                .saturating_duration_since(ctx.clients.started)
                .as_secs();
            let lower = |v: &dyn std::fmt::Debug| format!("{v:?}").to_ascii_lowercase();
            (
                "Server",
                vec![
                    ("redis_version", REDIS_VERSION.into()),
                    ("redis_mode", "standalone".into()),
                    (
                        "os",
                        format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
                    ),
                    ("arch_bits", usize::BITS.to_string()),
                    ("process_id", std::process::id().to_string()),
                    ("tcp_port", ctx.config.resp.port().to_string()),
                    ("uptime_in_seconds", uptime.to_string()),
                    ("uptime_in_days", (uptime / 86_400).to_string()),
                    ("paxos_kv_version", env!("CARGO_PKG_VERSION").into()),
                    ("paxos_runtime", lower(&ctx.config.runtime)),
                    ("paxos_threads", ctx.config.threads.to_string()),
                    ("paxos_storage", lower(&ctx.config.storage)),
                ],
            )
        }
        "clients" => (
            "Clients",
            vec![
                ("connected_clients", ctx.clients.len().to_string()),
                ("maxclients", crate::server::MAX_CONNECTIONS.to_string()),
                ("blocked_clients", "0".into()),
                ("tracking_clients", "0".into()),
            ],
        ),
        // ioredis waits while `loading` is not 0.
        "persistence" => (
            "Persistence",
            vec![("loading", "0".into()), ("async_loading", "0".into())],
        ),
        "replication" => {
            let mut fields = vec![("role", if leader { "master" } else { "slave" }.into())];
            if leader {
                let replicas = ctx.config.peers.len().saturating_sub(1);
                fields.push(("connected_slaves", replicas.to_string()));
            } else {
                let link = if status.leader.is_some() {
                    "up"
                } else {
                    "down"
                };
                fields.push(("master_link_status", link.into()));
            }
            let role = match status.role {
                Role::Leader => "leader",
                Role::Candidate => "candidate",
                _ => "follower",
            };
            fields.extend([
                ("paxos_node_id", status.id.0.to_string()),
                (
                    "paxos_leader_id",
                    status.leader.map(|l| l.0.to_string()).unwrap_or_default(),
                ),
                ("paxos_role", role.into()),
                (
                    "paxos_ballot",
                    format!("{}.{}", status.ballot.round, status.ballot.node.0),
                ),
                ("paxos_commit_slot", status.commit.0.to_string()),
                ("paxos_applied_slot", status.applied.0.to_string()),
                ("paxos_lease_held", u8::from(status.lease_held).to_string()),
            ]);
            ("Replication", fields)
        }
        "cluster" => ("Cluster", vec![("cluster_enabled", "0".into())]),
        // Redis leaves out an empty database.
        _ => (
            "Keyspace",
            if keys > 0 {
                vec![("db0", format!("keys={keys},expires=0,avg_ttl=0"))]
            } else {
                Vec::new()
            },
        ),
    };
    text.push_str("# ");
    text.push_str(title);
    text.push_str("\r\n");
    for (field, value) in fields {
        text.push_str(field);
        text.push(':');
        text.push_str(&value);
        text.push_str("\r\n");
    }
}
