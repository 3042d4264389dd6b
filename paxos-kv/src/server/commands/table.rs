//! The entries of the [command table](super), copied from Redis 7.0's `COMMAND INFO` and
//! `COMMAND DOCS` (Redis 7.2's for `CLIENT SETINFO`) except where [`super`] says otherwise.

use super::{Arg, ArgKind, Cmd, Spec};

const KEY: Arg = Arg::new("key", ArgKind::Key);
const KEYS: Arg = Arg::new("key", ArgKind::Key).multiple();
const VALUE: Arg = Arg::new("value", ArgKind::String);
const CONNECTION: &[&str] = &["@slow", "@connection"];
const CONNECTION_FLAGS: &[&str] = &["noscript", "loading", "stale"];
const FAST_CONNECTION: &[&str] = &["@fast", "@connection"];
const NO_AUTH_FLAGS: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];
const WRITE_STRING_FAST: &[&str] = &["@write", "@string", "@fast"];
const READ_STRING_FAST: &[&str] = &["@read", "@string", "@fast"];
const READ_FAST: &[&str] = &["readonly", "fast"];
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);
const RW_ACCESS_UPDATE: &[&str] = &["RW", "access", "update"];
const O1: &str = "O(1)";
const TRANSACTION: &[&str] = &["@fast", "@transaction"];
const TRANSACTION_FLAGS: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
const EXPIRE_CONDITION: Arg = Arg::new(
    "condition",
    ArgKind::OneOf(&[
        Arg::pure("nx", "NX"),
        Arg::pure("xx", "XX"),
        Arg::pure("gt", "GT"),
        Arg::pure("lt", "LT"),
    ]),
)
.optional();

const CLIENT_SUBCOMMANDS: &[Spec] = &[
    Spec::new(Cmd::ClientGetName, "client|getname", 2)
        .flags(CONNECTION_FLAGS)
        .acl(CONNECTION)
        .doc("connection", "2.6.9", "Get the current connection name", O1),
    Spec::new(Cmd::ClientHelp, "client|help", 2)
        .flags(&["loading", "stale"])
        .acl(CONNECTION)
        .doc(
            "connection",
            "5.0.0",
            "Show helpful text about the different subcommands",
            O1,
        ),
    Spec::new(Cmd::ClientId, "client|id", 2)
        .flags(CONNECTION_FLAGS)
        .acl(CONNECTION)
        .doc(
            "connection",
            "5.0.0",
            "Returns the client ID for the current connection",
            O1,
        ),
    Spec::new(Cmd::ClientInfo, "client|info", 2)
        .flags(CONNECTION_FLAGS)
        .acl(CONNECTION)
        .tips(&["nondeterministic_output"])
        .doc(
            "connection",
            "6.2.0",
            "Returns information about the current client connection.",
            O1,
        ),
    Spec::new(Cmd::ClientList, "client|list", -2)
        .flags(&["admin", "noscript", "loading", "stale"])
        .acl(&["@admin", "@slow", "@dangerous", "@connection"])
        .tips(&["nondeterministic_output"])
        .doc(
            "connection",
            "2.4.0",
            "Get the list of client connections",
            "O(N) where N is the number of client connections",
        )
        .args(&[
            Arg::new(
                "normal_master_replica_pubsub",
                ArgKind::OneOf(&[
                    Arg::pure("normal", "NORMAL"),
                    Arg::pure("master", "MASTER"),
                    Arg::pure("replica", "REPLICA"),
                    Arg::pure("pubsub", "PUBSUB"),
                ]),
            )
            .token("TYPE")
            .optional(),
            Arg::new(
                "id",
                ArgKind::Block(&[Arg::new("client-id", ArgKind::Integer).multiple()]),
            )
            .token("ID")
            .optional(),
        ]),
    Spec::new(Cmd::ClientSetInfo, "client|setinfo", 4)
        .flags(&["noscript", "loading", "stale"])
        .acl(CONNECTION)
        .tips(&["request_policy:all_nodes", "response_policy:all_succeeded"])
        .doc(
            "connection",
            "7.2.0",
            "Set client or connection specific info",
            O1,
        )
        .args(&[Arg::new(
            "attr",
            ArgKind::OneOf(&[
                Arg::new("libname", ArgKind::String).token("LIB-NAME"),
                Arg::new("libver", ArgKind::String).token("LIB-VER"),
            ]),
        )]),
    Spec::new(Cmd::ClientSetName, "client|setname", 3)
        .flags(CONNECTION_FLAGS)
        .acl(CONNECTION)
        .doc("connection", "2.6.9", "Set the current connection name", O1)
        .args(&[Arg::new("connection-name", ArgKind::String)]),
];

const COMMAND_NAMES: &[Arg] = &[Arg::new("command-name", ArgKind::String)
    .optional()
    .multiple()];

const COMMAND_SUBCOMMANDS: &[Spec] = &[
    Spec::new(Cmd::CommandCount, "command|count", 2)
        .flags(&["loading", "stale"])
        .acl(CONNECTION)
        .doc("server", "2.8.13", "Get total number of Redis commands", O1),
    Spec::new(Cmd::CommandDocs, "command|docs", -2)
        .flags(&["loading", "stale"])
        .acl(CONNECTION)
        .tips(&["nondeterministic_output_order"])
        .doc(
            "server",
            "7.0.0",
            "Get array of specific Redis command documentation",
            "O(N) where N is the number of commands to look up",
        )
        .args(COMMAND_NAMES),
    Spec::new(Cmd::CommandHelp, "command|help", 2)
        .flags(&["loading", "stale"])
        .acl(CONNECTION)
        .doc(
            "server",
            "5.0.0",
            "Show helpful text about the different subcommands",
            O1,
        ),
    Spec::new(Cmd::CommandInfo, "command|info", -2)
        .flags(&["loading", "stale"])
        .acl(CONNECTION)
        .tips(&["nondeterministic_output_order"])
        .doc(
            "server",
            "2.8.13",
            "Get array of specific Redis command details, or all when no argument is given.",
            "O(N) where N is the number of commands to look up",
        )
        .args(COMMAND_NAMES),
    Spec::new(Cmd::CommandList, "command|list", 2)
        .flags(&["loading", "stale"])
        .acl(CONNECTION)
        .tips(&["nondeterministic_output_order"])
        .doc(
            "server",
            "7.0.0",
            "Get an array of Redis command names",
            "O(N) where N is the total number of Redis commands",
        ),
];

const CONFIG_SUBCOMMANDS: &[Spec] = &[
    Spec::new(Cmd::ConfigGet, "config|get", -3)
        .flags(&["admin", "noscript", "loading", "stale"])
        .acl(&["@admin", "@slow", "@dangerous"])
        .doc(
            "server",
            "2.0.0",
            "Get the values of configuration parameters",
            "O(N) when N is the number of configuration parameters provided",
        )
        .args(&[Arg::new("parameter", ArgKind::String).multiple()]),
    Spec::new(Cmd::ConfigHelp, "config|help", 2)
        .flags(&["loading", "stale"])
        .acl(&["@slow"])
        .doc(
            "server",
            "5.0.0",
            "Show helpful text about the different subcommands",
            O1,
        ),
];

/// Every command, in the order `COMMAND` lists them.
pub(crate) static TABLE: &[Spec] = &[
    Spec::new(Cmd::Append, "append", 3)
        .flags(WRITE_FAST)
        .keys(ONE_KEY, &["RW", "insert"])
        .acl(WRITE_STRING_FAST)
        .doc("string", "2.0.0", "Append a value to a key", O1)
        .args(&[KEY, VALUE]),
    Spec::new(Cmd::Auth, "auth", -2)
        .flags(NO_AUTH_FLAGS)
        .acl(FAST_CONNECTION)
        .doc(
            "connection",
            "1.0.0",
            "Authenticate to the server",
            "O(N) where N is the number of passwords defined for the user",
        )
        .args(&[
            Arg::new("username", ArgKind::String).optional(),
            Arg::new("password", ArgKind::String),
        ]),
    Spec::new(Cmd::Cas, "cas", 4)
        .flags(WRITE_FAST)
        .keys(ONE_KEY, RW_ACCESS_UPDATE)
        .acl(WRITE_STRING_FAST)
        .doc(
            "string",
            "",
            "Set the value of a key if it holds the expected value (paxos-kv); 1 if set, 0 if not",
            O1,
        )
        .args(&[
            KEY,
            Arg::new("expected", ArgKind::String),
            Arg::new("new", ArgKind::String),
        ]),
    Spec::new(Cmd::Client, "client", -2)
        .acl(&["@slow"])
        .doc(
            "connection",
            "2.4.0",
            "A container for client connection commands",
            "Depends on subcommand.",
        )
        .subcommands(CLIENT_SUBCOMMANDS),
    Spec::new(Cmd::Command, "command", -1)
        .flags(&["loading", "stale"])
        .acl(CONNECTION)
        .tips(&["nondeterministic_output_order"])
        .doc(
            "server",
            "2.8.13",
            "Get array of Redis command details",
            "O(N) where N is the total number of Redis commands",
        )
        .subcommands(COMMAND_SUBCOMMANDS),
    Spec::new(Cmd::Config, "config", -2)
        .acl(&["@slow"])
        .doc(
            "server",
            "2.0.0",
            "A container for server configuration commands",
            "Depends on subcommand.",
        )
        .subcommands(CONFIG_SUBCOMMANDS),
    Spec::new(Cmd::DbSize, "dbsize", 1)
        .flags(READ_FAST)
        .acl(&["@keyspace", "@read", "@fast"])
        .tips(&["request_policy:all_shards", "response_policy:agg_sum"])
        .doc(
            "server",
            "1.0.0",
            "Return the number of keys in the selected database",
            O1,
        ),
    Spec::new(Cmd::Decr, "decr", 2)
        .flags(WRITE_FAST)
        .keys(ONE_KEY, RW_ACCESS_UPDATE)
        .acl(WRITE_STRING_FAST)
        .doc(
            "string",
            "1.0.0",
            "Decrement the integer value of a key by one",
            O1,
        )
        .args(&[KEY]),
    Spec::new(Cmd::DecrBy, "decrby", 3)
        .flags(WRITE_FAST)
        .keys(ONE_KEY, RW_ACCESS_UPDATE)
        .acl(WRITE_STRING_FAST)
        .doc(
            "string",
            "1.0.0",
            "Decrement the integer value of a key by the given number",
            O1,
        )
        .args(&[KEY, Arg::new("decrement", ArgKind::Integer)]),
    Spec::new(Cmd::Del, "del", -2)
        .flags(&["write"])
        .keys(ALL_KEYS, &["RM", "delete"])
        .acl(&["@keyspace", "@write", "@slow"])
        .tips(&["request_policy:multi_shard", "response_policy:agg_sum"])
        .doc(
            "generic",
            "1.0.0",
            "Delete a key",
            "O(N) where N is the number of keys that will be removed. When a key to remove \
             holds a value other than a string, the individual complexity for this key is O(M) \
             where M is the number of elements in the list, set, sorted set or hash. Removing a \
             single key that holds a string value is O(1).",
        )
        .args(&[KEYS]),
    Spec::new(Cmd::Discard, "discard", 1)
        .flags(TRANSACTION_FLAGS)
        .acl(TRANSACTION)
        .doc(
            "transactions",
            "2.0.0",
            "Discard all commands issued after MULTI",
            "O(N), when N is the number of queued commands",
        ),
    Spec::new(Cmd::Echo, "echo", 2)
        .flags(&["loading", "stale", "fast"])
        .acl(FAST_CONNECTION)
        .doc("connection", "1.0.0", "Echo the given string", O1)
        .args(&[Arg::new("message", ArgKind::String)]),
    Spec::new(Cmd::Exec, "exec", 1)
        .flags(&["noscript", "loading", "stale", "skip_slowlog"])
        .acl(&["@slow", "@transaction"])
        .doc(
            "transactions",
            "1.2.0",
            "Execute all commands issued after MULTI",
            "Depends on commands in the transaction",
        ),
    Spec::new(Cmd::Exists, "exists", -2)
        .flags(READ_FAST)
        .keys(ALL_KEYS, &["RO"])
        .acl(&["@keyspace", "@read", "@fast"])
        .tips(&["request_policy:multi_shard", "response_policy:agg_sum"])
        .doc(
            "generic",
            "1.0.0",
            "Determine if a key exists",
            "O(N) where N is the number of keys to check.",
        )
        .args(&[KEYS]),
    Spec::new(Cmd::Expire, "expire", -3)
        .flags(&["write", "fast"])
        .keys(ONE_KEY, &["RW", "update"])
        .acl(&["@keyspace", "@write", "@fast"])
        .doc(
            "generic",
            "1.0.0",
            "Set a key's time to live in seconds (not supported: keys never expire)",
            O1,
        )
        .args(&[KEY, Arg::new("seconds", ArgKind::Integer), EXPIRE_CONDITION]),
    Spec::new(Cmd::Get, "get", 2)
        .flags(READ_FAST)
        .keys(ONE_KEY, &["RO", "access"])
        .acl(READ_STRING_FAST)
        .doc("string", "1.0.0", "Get the value of a key", O1)
        .args(&[KEY]),
    Spec::new(Cmd::GetSet, "getset", 3)
        .flags(WRITE_FAST)
        .keys(ONE_KEY, RW_ACCESS_UPDATE)
        .acl(WRITE_STRING_FAST)
        .doc(
            "string",
            "1.0.0",
            "Set the string value of a key and return its old value",
            O1,
        )
        .args(&[KEY, VALUE]),
    Spec::new(Cmd::Hello, "hello", -1)
        .flags(NO_AUTH_FLAGS)
        .acl(FAST_CONNECTION)
        .doc("connection", "6.0.0", "Handshake with Redis", O1)
        .args(&[Arg::new(
            "arguments",
            ArgKind::Block(&[
                Arg::new("protover", ArgKind::Integer),
                Arg::new(
                    "username_password",
                    ArgKind::Block(&[
                        Arg::new("username", ArgKind::String),
                        Arg::new("password", ArgKind::String),
                    ]),
                )
                .token("AUTH")
                .optional(),
                Arg::new("clientname", ArgKind::String)
                    .token("SETNAME")
                    .optional(),
            ]),
        )
        .optional()]),
    Spec::new(Cmd::Incr, "incr", 2)
        .flags(WRITE_FAST)
        .keys(ONE_KEY, RW_ACCESS_UPDATE)
        .acl(WRITE_STRING_FAST)
        .doc(
            "string",
            "1.0.0",
            "Increment the integer value of a key by one",
            O1,
        )
        .args(&[KEY]),
    Spec::new(Cmd::IncrBy, "incrby", 3)
        .flags(WRITE_FAST)
        .keys(ONE_KEY, RW_ACCESS_UPDATE)
        .acl(WRITE_STRING_FAST)
        .doc(
            "string",
            "1.0.0",
            "Increment the integer value of a key by the given amount",
            O1,
        )
        .args(&[KEY, Arg::new("increment", ArgKind::Integer)]),
    Spec::new(Cmd::Info, "info", -1)
        .flags(&["loading", "stale"])
        .acl(&["@slow", "@dangerous"])
        .tips(&[
            "nondeterministic_output",
            "request_policy:all_shards",
            "response_policy:special",
        ])
        .doc(
            "server",
            "1.0.0",
            "Get information and statistics about the server",
            O1,
        )
        .args(&[Arg::new("section", ArgKind::String).optional().multiple()]),
    Spec::new(Cmd::MGet, "mget", -2)
        .flags(READ_FAST)
        .keys(ALL_KEYS, &["RO", "access"])
        .acl(READ_STRING_FAST)
        .tips(&["request_policy:multi_shard"])
        .doc(
            "string",
            "1.0.0",
            "Get the values of all the given keys",
            "O(N) where N is the number of keys to retrieve.",
        )
        .args(&[KEYS]),
    Spec::new(Cmd::MSet, "mset", -3)
        .flags(&["write", "denyoom"])
        .keys((1, -1, 2), &["OW", "update"])
        .acl(&["@write", "@string", "@slow"])
        .tips(&["request_policy:multi_shard", "response_policy:all_succeeded"])
        .doc(
            "string",
            "1.0.1",
            "Set multiple keys to multiple values",
            "O(N) where N is the number of keys to set.",
        )
        .args(&[Arg::new("key_value", ArgKind::Block(&[KEY, VALUE])).multiple()]),
    Spec::new(Cmd::Multi, "multi", 1)
        .flags(TRANSACTION_FLAGS)
        .acl(TRANSACTION)
        .doc(
            "transactions",
            "1.2.0",
            "Mark the start of a transaction block",
            O1,
        ),
    Spec::new(Cmd::PExpire, "pexpire", -3)
        .flags(&["write", "fast"])
        .keys(ONE_KEY, &["RW", "update"])
        .acl(&["@keyspace", "@write", "@fast"])
        .doc(
            "generic",
            "2.6.0",
            "Set a key's time to live in milliseconds (not supported: keys never expire)",
            O1,
        )
        .args(&[
            KEY,
            Arg::new("milliseconds", ArgKind::Integer),
            EXPIRE_CONDITION,
        ]),
    Spec::new(Cmd::PSetEx, "psetex", 4)
        .flags(&["write", "denyoom"])
        .keys(ONE_KEY, &["OW", "update"])
        .acl(&["@write", "@string", "@slow"])
        .doc(
            "string",
            "2.6.0",
            "Set the value and expiration in milliseconds of a key (not supported: keys never expire)",
            O1,
        )
        .args(&[KEY, Arg::new("milliseconds", ArgKind::Integer), VALUE]),
    Spec::new(Cmd::PTtl, "pttl", 2)
        .flags(READ_FAST)
        .keys(ONE_KEY, &["RO", "access"])
        .acl(&["@keyspace", "@read", "@fast"])
        .tips(&["nondeterministic_output"])
        .doc(
            "generic",
            "2.6.0",
            "Get the time to live for a key in milliseconds (not supported: keys never expire)",
            O1,
        )
        .args(&[KEY]),
    Spec::new(Cmd::Ping, "ping", -1)
        .flags(&["fast"])
        .acl(FAST_CONNECTION)
        .tips(&["request_policy:all_shards", "response_policy:all_succeeded"])
        .doc("connection", "1.0.0", "Ping the server", O1)
        .args(&[Arg::new("message", ArgKind::String).optional()]),
    Spec::new(Cmd::Quit, "quit", -1)
        .flags(NO_AUTH_FLAGS)
        .acl(FAST_CONNECTION)
        .doc("connection", "1.0.0", "Close the connection", O1),
    Spec::new(Cmd::Reset, "reset", 1)
        .flags(NO_AUTH_FLAGS)
        .acl(FAST_CONNECTION)
        .doc("connection", "6.2.0", "Reset the connection", O1),
    Spec::new(Cmd::Scan, "scan", -2)
        .flags(&["readonly"])
        .acl(&["@keyspace", "@read", "@slow"])
        .tips(&["nondeterministic_output", "request_policy:special"])
        .doc(
            "generic",
            "2.8.0",
            "Incrementally iterate the keys space",
            "O(1) for every call. O(N) for a complete iteration, including enough command \
             calls for the cursor to return back to 0. N is the number of elements inside the \
             collection.",
        )
        .args(&[
            Arg::new("cursor", ArgKind::Integer),
            Arg::new("pattern", ArgKind::Pattern)
                .token("MATCH")
                .optional(),
            Arg::new("count", ArgKind::Integer).token("COUNT").optional(),
            Arg::new("type", ArgKind::String).token("TYPE").optional(),
        ]),
    Spec::new(Cmd::Select, "select", 2)
        .flags(&["loading", "stale", "fast"])
        .acl(FAST_CONNECTION)
        .doc(
            "connection",
            "1.0.0",
            "Change the selected database for the current connection (only 0 here)",
            O1,
        )
        .args(&[Arg::new("index", ArgKind::Integer)]),
    Spec::new(Cmd::Set, "set", -3)
        .flags(&["write", "denyoom"])
        .keys(ONE_KEY, &["RW", "access", "update", "variable_flags"])
        .acl(&["@write", "@string", "@slow"])
        .doc("string", "1.0.0", "Set the string value of a key", O1)
        .args(&[
            KEY,
            VALUE,
            Arg::new(
                "condition",
                ArgKind::OneOf(&[Arg::pure("nx", "NX"), Arg::pure("xx", "XX")]),
            )
            .optional(),
            Arg::pure("get", "GET").optional(),
        ]),
    Spec::new(Cmd::SetEx, "setex", 4)
        .flags(&["write", "denyoom"])
        .keys(ONE_KEY, &["OW", "update"])
        .acl(&["@write", "@string", "@slow"])
        .doc(
            "string",
            "2.0.0",
            "Set the value and expiration of a key (not supported: keys never expire)",
            O1,
        )
        .args(&[KEY, Arg::new("seconds", ArgKind::Integer), VALUE]),
    Spec::new(Cmd::SetNx, "setnx", 3)
        .flags(WRITE_FAST)
        .keys(ONE_KEY, &["OW", "insert"])
        .acl(WRITE_STRING_FAST)
        .doc(
            "string",
            "1.0.0",
            "Set the value of a key, only if the key does not exist",
            O1,
        )
        .args(&[KEY, VALUE]),
    Spec::new(Cmd::StrLen, "strlen", 2)
        .flags(READ_FAST)
        .keys(ONE_KEY, &["RO"])
        .acl(READ_STRING_FAST)
        .doc(
            "string",
            "2.2.0",
            "Get the length of the value stored in a key",
            O1,
        )
        .args(&[KEY]),
    Spec::new(Cmd::Ttl, "ttl", 2)
        .flags(READ_FAST)
        .keys(ONE_KEY, &["RO", "access"])
        .acl(&["@keyspace", "@read", "@fast"])
        .tips(&["nondeterministic_output"])
        .doc(
            "generic",
            "1.0.0",
            "Get the time to live for a key in seconds (not supported: keys never expire)",
            O1,
        )
        .args(&[KEY]),
    Spec::new(Cmd::Unwatch, "unwatch", 1)
        .flags(TRANSACTION_FLAGS)
        .acl(TRANSACTION)
        .doc("transactions", "2.2.0", "Forget about all watched keys", O1),
    Spec::new(Cmd::Watch, "watch", -2)
        .flags(TRANSACTION_FLAGS)
        .keys(ALL_KEYS, &["RO"])
        .acl(TRANSACTION)
        .doc(
            "transactions",
            "2.2.0",
            "Watch the given keys to determine execution of the MULTI/EXEC block \
             (not supported: refused)",
            "O(1) for every key.",
        )
        .args(&[KEYS]),
];
