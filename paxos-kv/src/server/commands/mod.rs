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

use crate::resp::Encoder;

pub(crate) use table::TABLE;

mod table;

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
    Discard,
    Echo,
    Exec,
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
    Multi,
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
    Unwatch,
    Watch,
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
///
/// Runs for every request, so it compares suffixes in place (a `|` in `name` matches
/// nothing, as no part after the `|` holds one).
fn find(specs: &'static [Spec], name: &[u8]) -> Option<&'static Spec> {
    if name.contains(&b'|') {
        return None;
    }
    specs.iter().find(|s| {
        let full = s.name.as_bytes();
        let Some(at) = full.len().checked_sub(name.len()) else {
            return false;
        };
        (at == 0 || full[at - 1] == b'|') && full[at..].eq_ignore_ascii_case(name)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;

    use super::*;

    fn words(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect()
    }

    fn every_spec() -> impl Iterator<Item = &'static Spec> {
        TABLE
            .iter()
            .flat_map(|s| std::iter::once(s).chain(s.subcommands))
    }

    #[test]
    fn the_table_is_consistent() {
        let mut names = BTreeSet::new();
        let mut cmds = Vec::new();
        for spec in every_spec() {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert!(names.insert(spec.name), "{} twice", spec.name);
            assert!(!cmds.contains(&spec.cmd), "{:?} twice", spec.cmd);
            cmds.push(spec.cmd);
            assert!(
                !spec.summary.is_empty() && !spec.group.is_empty() && !spec.complexity.is_empty(),
                "{} lacks docs",
                spec.name
            );
            assert_ne!(spec.arity, 0, "{}", spec.name);
            if let Some(keys) = &spec.keys {
                assert!(keys.first >= 1 && keys.step >= 1, "{}", spec.name);
                assert!(keys.last == -1 || keys.last >= keys.first, "{}", spec.name);
                assert!(
                    spec.arity.abs() > keys.first,
                    "{}: keys past its arity",
                    spec.name
                );
            }
        }
        for container in TABLE.iter().filter(|s| !s.subcommands.is_empty()) {
            // COMMAND alone is a command too (-1); CLIENT and CONFIG need a subcommand.
            assert!(container.arity < 0, "{} takes a subcommand", container.name);
            for sub in container.subcommands {
                assert!(sub.name.starts_with(&format!("{}|", container.name)));
                assert!(sub.subcommands.is_empty(), "one level, as in Redis");
            }
        }
        assert_eq!(count(), TABLE.len());
    }

    #[test]
    fn every_name_is_found_in_any_case_and_no_part_of_one_is() {
        for spec in TABLE {
            let upper = spec.name.to_ascii_uppercase();
            assert!(std::ptr::eq(find(TABLE, upper.as_bytes()).unwrap(), spec));
            assert!(
                find(TABLE, &spec.name.as_bytes()[1..])
                    .is_none_or(|s| s.name.len() < spec.name.len())
            );
            for sub in spec.subcommands {
                let short = sub.name.split_once('|').unwrap().1;
                assert!(std::ptr::eq(
                    find(spec.subcommands, short.as_bytes()).unwrap(),
                    sub
                ));
                // The full name, or the part after the `|` with a letter before it.
                assert!(
                    find(spec.subcommands, sub.name.as_bytes()).is_none(),
                    "{}",
                    sub.name
                );
                let with_letter = format!("x{short}");
                assert!(find(spec.subcommands, with_letter.as_bytes()).is_none());
                let with_bar = format!("x|{short}");
                assert!(find(spec.subcommands, with_bar.as_bytes()).is_none());
            }
        }
        assert!(find(TABLE, b"client|setname").is_none());
        assert!(find(TABLE, b"").is_none());
    }

    #[test]
    fn lookup_checks_arity_and_subcommands_as_redis_does() {
        assert_eq!(lookup(&words("gEt k")).unwrap().name, "get");
        assert_eq!(
            lookup(&words("GET a b")).unwrap_err(),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            lookup(&words("SET k")).unwrap_err(),
            "ERR wrong number of arguments for 'set' command"
        );
        assert_eq!(lookup(&words("SET k v NX GET")).unwrap().name, "set");
        assert_eq!(
            lookup(&words("client SetName x")).unwrap().name,
            "client|setname"
        );
        assert_eq!(
            lookup(&words("client setname")).unwrap_err(),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            lookup(&words("Client nope x")).unwrap_err(),
            "ERR unknown subcommand 'nope'. Try CLIENT HELP."
        );
        assert_eq!(
            lookup(&words("client")).unwrap_err(),
            "ERR wrong number of arguments for 'client' command"
        );
        assert_eq!(lookup(&words("COMMAND")).unwrap().name, "command");
        assert_eq!(
            lookup(&words("nope a b")).unwrap_err(),
            "ERR unknown command 'nope', with args beginning with: 'a' 'b' "
        );
        // Cut as C's %.128s would: at 128 bytes, and at a NUL.
        let long = format!("x {}", "y".repeat(300));
        assert_eq!(
            lookup(&words(&long)).unwrap_err(),
            format!(
                "ERR unknown command 'x', with args beginning with: '{}' ",
                "y".repeat(128)
            )
        );
        assert_eq!(
            lookup(&[Bytes::from("a\0b"), Bytes::from("c\0d")]).unwrap_err(),
            "ERR unknown command 'a', with args beginning with: 'c' "
        );
        assert_eq!(find_full(b"CLIENT|ID").unwrap().name, "client|id");
        assert!(find_full(b"client|nope").is_none());
    }

    #[test]
    fn hints_are_what_redis_cli_builds_from_the_docs() {
        let hint_of = |name: &[u8]| hint(find_full(name).unwrap().args);
        assert_eq!(hint_of(b"set"), "key value [NX|XX] [GET]");
        assert_eq!(hint_of(b"mset"), "key value [key value ...]");
        assert_eq!(hint_of(b"del"), "key [key ...]");
        assert_eq!(
            hint_of(b"scan"),
            "cursor [MATCH pattern] [COUNT count] [TYPE type]"
        );
        assert_eq!(
            hint_of(b"hello"),
            "[protover [AUTH username password] [SETNAME clientname]]"
        );
        let mut out = Encoder::default();
        help(&mut out, find_full(b"client").unwrap());
        let text = String::from_utf8(out.bytes().to_vec()).unwrap();
        assert!(text.starts_with("*15\r\n+CLIENT <subcommand> "), "{text}");
        assert!(
            text.contains("+SETNAME connection-name\r\n+    Set the current connection name\r\n")
        );
    }
}
