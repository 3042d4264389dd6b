//! The command table: every command the server knows, in one static list that drives both
//! the arity check of every request ([`lookup`]) and what `COMMAND` reports, so the two
//! cannot disagree.
//!
//! An entry carries what Redis 7's own table carries for the same command (name, arity,
//! flags, key positions, ACL categories, tips, and the docs `COMMAND DOCS` returns: summary,
//! group, since, complexity, arguments), copied from `redis-server` 7.0's `COMMAND INFO`
//! and `COMMAND DOCS`, with two differences: `SET` documents only the options this server
//! takes (no expiry options), and `CAS` is this server's own. The [`Cmd`] of an entry is
//! what the dispatcher matches on, exhaustively: a command in the table always has an
//! implementation, and an implementation always has an entry.
//!
//! Lookup follows Redis (`lookupCommand`, `commandCheckExistence`, `commandCheckArity`):
//! names are case-insensitive; a container command (`CLIENT`, `COMMAND`, `CONFIG`) with
//! arguments is looked up by its subcommand; arity `n > 0` means exactly `n` words
//! (command name included), `n < 0` at least `-n`.

use paxos_kv::resp::Encoder;

/// What a command does: one variant per table entry the dispatcher implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    Append,
    Auth,
    Cas,
    /// A container: without a subcommand it fails the arity check.
    Client,
    ClientGetName,
    ClientHelp,
    ClientId,
    ClientInfo,
    ClientList,
    ClientSetInfo,
    ClientSetName,
    Command,
    CommandCount,
    CommandDocs,
    CommandHelp,
    CommandInfo,
    CommandList,
    /// A container, like `Client`.
    Config,
    ConfigGet,
    ConfigHelp,
    DbSize,
    Decr,
    DecrBy,
    Del,
    Echo,
    Exists,
    Expire,
    Get,
    GetSet,
    Hello,
    Incr,
    IncrBy,
    Info,
    MGet,
    MSet,
    PExpire,
    PSetEx,
    PTtl,
    Ping,
    Quit,
    Reset,
    Scan,
    Select,
    Set,
    SetEx,
    SetNx,
    StrLen,
    Ttl,
}

/// One command: what `COMMAND INFO` and `COMMAND DOCS` say about it.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) cmd: Cmd,
    /// Lower case; a subcommand's is `container|sub`, as Redis's "fullname".
    pub(crate) name: &'static str,
    pub(crate) arity: i64,
    flags: &'static [&'static str],
    keys: Option<KeySpec>,
    acl: &'static [&'static str],
    tips: &'static [&'static str],
    summary: &'static str,
    since: &'static str,
    group: &'static str,
    complexity: &'static str,
    args: &'static [Arg],
    pub(crate) subcommands: &'static [Self],
}

/// Where the keys are: words `first..=last` (counted from the command name, `last` -1 for
/// "to the end"), every `step`th; `flags` are the key spec's (`RO`, `RW`, `access`...).
#[derive(Debug)]
struct KeySpec {
    first: i64,
    last: i64,
    step: i64,
    flags: &'static [&'static str],
}

/// One argument in `COMMAND DOCS`: enough for `redis-cli` to show hints as you type.
#[derive(Debug)]
struct Arg {
    name: &'static str,
    kind: ArgKind,
    token: Option<&'static str>,
    optional: bool,
    multiple: bool,
}

#[derive(Debug)]
enum ArgKind {
    Key,
    String,
    Integer,
    Pattern,
    PureToken,
    OneOf(&'static [Arg]),
    Block(&'static [Arg]),
}

impl ArgKind {
    fn name(&self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Pattern => "pattern",
            Self::PureToken => "pure-token",
            Self::OneOf(_) => "oneof",
            Self::Block(_) => "block",
        }
    }
}

impl Arg {
    const fn new(name: &'static str, kind: ArgKind) -> Self {
        Self {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
        }
    }

    const fn token(mut self, token: &'static str) -> Self {
        self.token = Some(token);
        self
    }

    const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    const fn multiple(mut self) -> Self {
        self.multiple = true;
        self
    }

    /// A pure token: `NX`.
    const fn pure(name: &'static str, token: &'static str) -> Self {
        Self::new(name, ArgKind::PureToken).token(token)
    }
}

const KEY: Arg = Arg::new("key", ArgKind::Key);
const KEYS: Arg = Arg::new("key", ArgKind::Key).multiple();
const VALUE: Arg = Arg::new("value", ArgKind::String);
const NO_ARGS: &[Arg] = &[];

impl Spec {
    const fn new(cmd: Cmd, name: &'static str, arity: i64) -> Self {
        Self {
            cmd,
            name,
            arity,
            flags: &[],
            keys: None,
            acl: &[],
            tips: &[],
            summary: "",
            since: "",
            group: "",
            complexity: "",
            args: NO_ARGS,
            subcommands: &[],
        }
    }

    const fn flags(mut self, flags: &'static [&'static str]) -> Self {
        self.flags = flags;
        self
    }

    const fn keys(
        mut self,
        (first, last, step): (i64, i64, i64),
        flags: &'static [&'static str],
    ) -> Self {
        self.keys = Some(KeySpec {
            first,
            last,
            step,
            flags,
        });
        self
    }

    const fn acl(mut self, acl: &'static [&'static str]) -> Self {
        self.acl = acl;
        self
    }

    const fn tips(mut self, tips: &'static [&'static str]) -> Self {
        self.tips = tips;
        self
    }

    /// Group, version it appeared in, summary, complexity.
    const fn doc(
        mut self,
        group: &'static str,
        since: &'static str,
        summary: &'static str,
        complexity: &'static str,
    ) -> Self {
        self.group = group;
        self.since = since;
        self.summary = summary;
        self.complexity = complexity;
        self
    }

    const fn args(mut self, args: &'static [Arg]) -> Self {
        self.args = args;
        self
    }

    const fn subcommands(mut self, subcommands: &'static [Self]) -> Self {
        self.subcommands = subcommands;
        self
    }

    /// Whether `words` (command name first) has an acceptable number of words.
    pub(crate) fn arity_ok(&self, words: usize) -> bool {
        let words = i64::try_from(words).unwrap_or(i64::MAX);
        if self.arity >= 0 {
            words == self.arity
        } else {
            words >= -self.arity
        }
    }
}

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
    Spec::new(Cmd::Echo, "echo", 2)
        .flags(&["loading", "stale", "fast"])
        .acl(FAST_CONNECTION)
        .doc("connection", "1.0.0", "Echo the given string", O1)
        .args(&[Arg::new("message", ArgKind::String)]),
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
];

/// Why a request names no command it can run: the error reply, without the `-`.
pub(crate) fn lookup(words: &[bytes::Bytes]) -> Result<&'static Spec, String> {
    let Some(name) = words.first() else {
        return Err("ERR empty command".into());
    };
    let Some(base) = find(TABLE, name) else {
        return Err(unknown_command(words));
    };
    let spec = match words.get(1) {
        Some(sub) if !base.subcommands.is_empty() => {
            find(base.subcommands, sub).ok_or_else(|| {
                format!(
                    "ERR unknown subcommand '{}'. Try {} HELP.",
                    c_string(sub, 128),
                    base.name.to_ascii_uppercase()
                )
            })?
        }
        _ => base,
    };
    if !spec.arity_ok(words.len()) {
        return Err(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ));
    }
    Ok(spec)
}

/// The entry named `name` (case-insensitive) among `specs`; a subcommand's by its part
/// after the `|`.
fn find(specs: &'static [Spec], name: &[u8]) -> Option<&'static Spec> {
    specs.iter().find(|s| {
        let short = s.name.rsplit('|').next().unwrap_or(s.name);
        short.as_bytes().eq_ignore_ascii_case(name)
    })
}

/// The entry of a full name (`get`, `client|setname`), for `COMMAND INFO` and `DOCS`.
pub(crate) fn find_full(name: &[u8]) -> Option<&'static Spec> {
    let mut parts = name.splitn(2, |&b| b == b'|');
    let base = find(TABLE, parts.next()?)?;
    match parts.next() {
        None => Some(base),
        Some(sub) => find(base.subcommands, sub),
    }
}

/// Redis's reply to an unknown command: its name and the start of its arguments, each cut
/// to 128 bytes, the arguments quoted in `'` and followed by a space, while the list is
/// shorter than 128 bytes (`commandCheckExistence`).
fn unknown_command(words: &[bytes::Bytes]) -> String {
    let mut args = String::new();
    for arg in &words[1..] {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        args.push('\'');
        args.push_str(&c_string(arg, room));
        args.push_str("' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {args}",
        c_string(&words[0], 128)
    )
}

/// What C's `%.*s` prints of `bytes`: at most `max` bytes, up to the first NUL (as text,
/// invalid UTF-8 replaced).
fn c_string(bytes: &[u8], max: usize) -> String {
    let end = bytes
        .iter()
        .take(max)
        .position(|&b| b == 0)
        .unwrap_or(bytes.len().min(max));
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `COMMAND COUNT`: the top-level commands.
pub(crate) fn count() -> usize {
    TABLE.len()
}

/// `COMMAND LIST`: every full name, subcommands included (as Redis lists them).
pub(crate) fn list(out: &mut Encoder) {
    let names: Vec<&str> = TABLE
        .iter()
        .flat_map(|s| std::iter::once(s).chain(s.subcommands))
        .map(|s| s.name)
        .collect();
    out.array(names.len());
    for name in names {
        out.bulk(name.as_bytes());
    }
}

/// One `COMMAND INFO` entry (`addReplyCommandInfo`), or null for an unknown name.
pub(crate) fn info(out: &mut Encoder, spec: Option<&Spec>) {
    let Some(spec) = spec else {
        out.null();
        return;
    };
    out.array(10);
    out.bulk(spec.name.as_bytes());
    out.integer(spec.arity);
    statuses(out, spec.flags);
    let (first, last, step) = spec
        .keys
        .as_ref()
        .map_or((0, 0, 0), |k| (k.first, k.last, k.step));
    out.integer(first);
    out.integer(last);
    out.integer(step);
    statuses(out, spec.acl);
    out.set(spec.tips.len());
    for tip in spec.tips {
        out.bulk(tip.as_bytes());
    }
    match &spec.keys {
        None => out.set(0),
        Some(keys) => {
            out.set(1);
            key_spec(out, keys);
        }
    }
    if spec.subcommands.is_empty() {
        out.set(0);
    } else {
        out.array(spec.subcommands.len());
        for sub in spec.subcommands {
            info(out, Some(sub));
        }
    }
}

/// A set of simple strings (flags, ACL categories), as Redis writes them.
fn statuses(out: &mut Encoder, names: &[&str]) {
    out.set(names.len());
    for name in names {
        out.simple(name);
    }
}

fn key_spec(out: &mut Encoder, keys: &KeySpec) {
    out.map(3);
    out.bulk(b"flags");
    statuses(out, keys.flags);
    out.bulk(b"begin_search");
    out.map(2);
    out.bulk(b"type");
    out.bulk(b"index");
    out.bulk(b"spec");
    out.map(1);
    out.bulk(b"index");
    out.integer(keys.first);
    out.bulk(b"find_keys");
    out.map(2);
    out.bulk(b"type");
    out.bulk(b"range");
    out.bulk(b"spec");
    out.map(3);
    out.bulk(b"lastkey");
    out.integer(if keys.last < 0 {
        keys.last
    } else {
        keys.last - keys.first
    });
    out.bulk(b"keystep");
    out.integer(keys.step);
    out.bulk(b"limit");
    out.integer(0);
}

/// `COMMAND DOCS` for `specs`: a map from name to docs.
pub(crate) fn docs(out: &mut Encoder, specs: &[&Spec]) {
    out.map(specs.len());
    for spec in specs {
        out.bulk(spec.name.as_bytes());
        doc(out, spec);
    }
}

fn doc(out: &mut Encoder, spec: &Spec) {
    let fields = 3
        + usize::from(!spec.since.is_empty())
        + usize::from(!spec.args.is_empty())
        + usize::from(!spec.subcommands.is_empty());
    out.map(fields);
    out.bulk(b"summary");
    out.bulk(spec.summary.as_bytes());
    if !spec.since.is_empty() {
        out.bulk(b"since");
        out.bulk(spec.since.as_bytes());
    }
    out.bulk(b"group");
    out.bulk(spec.group.as_bytes());
    out.bulk(b"complexity");
    out.bulk(spec.complexity.as_bytes());
    if !spec.args.is_empty() {
        out.bulk(b"arguments");
        args(out, spec.args);
    }
    if !spec.subcommands.is_empty() {
        out.bulk(b"subcommands");
        let subs: Vec<&Spec> = spec.subcommands.iter().collect();
        docs(out, &subs);
    }
}

/// The arguments array: each a map of name, type, then key_spec_index (keys), token,
/// flags, and nested arguments, in Redis's order. Flags are simple strings in a set:
/// `redis-cli` asserts both.
fn args(out: &mut Encoder, list: &[Arg]) {
    out.array(list.len());
    for arg in list {
        let nested = match &arg.kind {
            ArgKind::OneOf(nested) | ArgKind::Block(nested) => Some(*nested),
            _ => None,
        };
        let flags: Vec<&str> = [("optional", arg.optional), ("multiple", arg.multiple)]
            .into_iter()
            .filter_map(|(flag, on)| on.then_some(flag))
            .collect();
        let fields = 2
            + usize::from(matches!(arg.kind, ArgKind::Key))
            + usize::from(arg.token.is_some())
            + usize::from(!flags.is_empty())
            + usize::from(nested.is_some());
        out.map(fields);
        out.bulk(b"name");
        out.bulk(arg.name.as_bytes());
        out.bulk(b"type");
        out.bulk(arg.kind.name().as_bytes());
        if matches!(arg.kind, ArgKind::Key) {
            out.bulk(b"key_spec_index");
            out.integer(0);
        }
        if let Some(token) = arg.token {
            out.bulk(b"token");
            out.bulk(token.as_bytes());
        }
        if !flags.is_empty() {
            out.bulk(b"flags");
            statuses(out, &flags);
        }
        if let Some(nested) = nested {
            out.bulk(b"arguments");
            args(out, nested);
        }
    }
}

/// `CLIENT HELP`, `COMMAND HELP`, `CONFIG HELP`: Redis's layout (a line per subcommand
/// with its arguments, then its summary indented), from the table.
pub(crate) fn help(out: &mut Encoder, container: &Spec) {
    let mut lines = vec![format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        container.name.to_ascii_uppercase()
    )];
    for sub in container.subcommands {
        let short = sub.name.rsplit('|').next().unwrap_or(sub.name);
        let mut line = short.to_ascii_uppercase();
        let hint = hint(sub.args);
        if !hint.is_empty() {
            line.push(' ');
            line.push_str(&hint);
        }
        lines.push(line);
        lines.push(format!("    {}", sub.summary));
    }
    out.array(lines.len());
    for line in lines {
        out.simple(&line);
    }
}

/// The argument synopsis `redis-cli` builds from `COMMAND DOCS` (`key value [NX|XX]`).
fn hint(list: &[Arg]) -> String {
    let parts: Vec<String> = list.iter().map(synopsis).collect();
    parts.join(" ")
}

fn synopsis(arg: &Arg) -> String {
    let mut body = match &arg.kind {
        ArgKind::PureToken => String::new(),
        ArgKind::OneOf(nested) => nested.iter().map(synopsis).collect::<Vec<_>>().join("|"),
        ArgKind::Block(nested) => hint(nested),
        _ => arg.name.to_string(),
    };
    if let Some(token) = arg.token {
        body = if body.is_empty() {
            token.to_string()
        } else {
            format!("{token} {body}")
        };
    }
    if arg.multiple {
        body = format!("{body} [{body} ...]");
    }
    if arg.optional {
        body = format!("[{body}]");
    }
    body
}
