//! One level of nesting on the wire. A `Batch` (of commands, queries, outputs or answers)
//! holds elements that are not batches: its elements are decoded as the mirror types below,
//! which have every variant of the public type but `Batch`/`Many`. A nested batch's tag is
//! then unknown and the whole value fails to decode, where a recursive decoder would follow
//! hostile bytes as deep as they nest (two bytes a level) until the stack overflowed.
//!
//! The mirrors must list the variants in the public types' order with the same fields;
//! the round-trip tests in `tests.rs` cover every variant inside a batch.

use serde::{Deserialize, Deserializer};

use super::{KvAnswer, KvCommand, KvOutput, KvQuery, SetCondition};

#[derive(Deserialize)]
enum Command {
    Set {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Del {
        keys: Vec<Vec<u8>>,
    },
    Incr {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Cas {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Vec<u8>,
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    SetWith {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        condition: SetCondition,
        get: bool,
    },
    MSet {
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Append {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    IncrBy {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        delta: i64,
    },
    Batch(Nested),
    Read(Query),
}

/// Where a batch would nest in a batch: its tag keeps its place in the mirror, and it never
/// decodes.
enum Nested {}

impl<'de> Deserialize<'de> for Nested {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("a batch cannot hold a batch"))
    }
}

impl From<Command> for KvCommand {
    fn from(command: Command) -> Self {
        match command {
            Command::Set { key, value } => Self::Set { key, value },
            Command::Del { keys } => Self::Del { keys },
            Command::Incr { key } => Self::Incr { key },
            Command::Cas { key, expected, new } => Self::Cas { key, expected, new },
            Command::SetWith {
                key,
                value,
                condition,
                get,
            } => Self::SetWith {
                key,
                value,
                condition,
                get,
            },
            Command::MSet { pairs } => Self::MSet { pairs },
            Command::Append { key, value } => Self::Append { key, value },
            Command::IncrBy { key, delta } => Self::IncrBy { key, delta },
            Command::Batch(nested) => match nested {},
            Command::Read(query) => Self::Read(query.into()),
        }
    }
}

#[derive(Deserialize)]
enum Output {
    Ok,
    Integer(i64),
    Error(String),
    SessionExpired,
    Bulk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Many(Nested),
    Answer(Answer),
}

impl From<Output> for KvOutput {
    fn from(output: Output) -> Self {
        match output {
            Output::Ok => Self::Ok,
            Output::Integer(n) => Self::Integer(n),
            Output::Error(e) => Self::Error(e),
            Output::SessionExpired => Self::SessionExpired,
            Output::Bulk(value) => Self::Bulk(value),
            Output::Many(nested) => match nested {},
            Output::Answer(answer) => Self::Answer(answer.into()),
        }
    }
}

#[derive(Deserialize)]
enum Query {
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    MGet {
        keys: Vec<Vec<u8>>,
    },
    Exists {
        keys: Vec<Vec<u8>>,
    },
    StrLen {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    DbSize,
    Scan {
        cursor: u64,
        #[serde(with = "serde_bytes")]
        pattern: Option<Vec<u8>>,
        count: usize,
    },
}

impl From<Query> for KvQuery {
    fn from(query: Query) -> Self {
        match query {
            Query::Get { key } => Self::Get { key },
            Query::MGet { keys } => Self::MGet { keys },
            Query::Exists { keys } => Self::Exists { keys },
            Query::StrLen { key } => Self::StrLen { key },
            Query::DbSize => Self::DbSize,
            Query::Scan {
                cursor,
                pattern,
                count,
            } => Self::Scan {
                cursor,
                pattern,
                count,
            },
        }
    }
}

#[derive(Deserialize)]
enum Answer {
    Bulk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Integer(i64),
    Values(Vec<Option<Vec<u8>>>),
    Scan { cursor: u64, keys: Vec<Vec<u8>> },
}

impl From<Answer> for KvAnswer {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Bulk(value) => Self::Bulk(value),
            Answer::Integer(n) => Self::Integer(n),
            Answer::Values(values) => Self::Values(values),
            Answer::Scan { cursor, keys } => Self::Scan { cursor, keys },
        }
    }
}

fn flat<'de, D, M, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    M: Deserialize<'de>,
    T: From<M>,
{
    let elements = Vec::<M>::deserialize(deserializer)?;
    Ok(elements.into_iter().map(T::from).collect())
}

/// `KvCommand::Batch`'s elements.
pub(super) fn commands<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KvCommand>, D::Error> {
    flat::<D, Command, KvCommand>(d)
}

/// `KvOutput::Many`'s elements.
pub(super) fn outputs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KvOutput>, D::Error> {
    flat::<D, Output, KvOutput>(d)
}

/// `KvCommand::Read`'s query.
pub(super) fn query<'de, D: Deserializer<'de>>(d: D) -> Result<KvQuery, D::Error> {
    Query::deserialize(d).map(KvQuery::from)
}

/// `KvOutput::Answer`'s answer.
pub(super) fn answer<'de, D: Deserializer<'de>>(d: D) -> Result<KvAnswer, D::Error> {
    Answer::deserialize(d).map(KvAnswer::from)
}

/// `KvQuery::Batch`'s elements.
pub(super) fn queries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KvQuery>, D::Error> {
    flat::<D, Query, KvQuery>(d)
}

/// `KvAnswer::Many`'s elements.
pub(super) fn answers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KvAnswer>, D::Error> {
    flat::<D, Answer, KvAnswer>(d)
}
