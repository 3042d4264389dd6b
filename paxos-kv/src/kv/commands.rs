//! What each write and read does to the keyspace: Redis 7's semantics for strings (see the
//! [module docs](super#commands)).

use super::glob::Glob;
use super::store::{Key, Store};
use super::{
    KvAnswer, KvCommand, KvOutput, KvQuery, MAX_SCAN_PATTERN_BYTES, MAX_VALUE_BYTES, SetCondition,
    parse_redis_integer,
};

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
const OVERFLOW: &str = "ERR increment or decrement would overflow";
const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
/// A `Batch` inside a `Batch`: decoding refuses it, so only a value built in memory gets here.
const NESTED_BATCH: &str = "ERR a batch cannot hold a batch";

/// Applies one decoded command.
pub(super) fn execute(store: &mut Store, command: KvCommand) -> KvOutput {
    match command {
        KvCommand::Batch(commands) => KvOutput::Many(
            commands
                .into_iter()
                .map(|command| execute_one(store, command))
                .collect(),
        ),
        command => execute_one(store, command),
    }
}

fn execute_one(store: &mut Store, command: KvCommand) -> KvOutput {
    match command {
        KvCommand::Set { key, value } => {
            store.insert(Key::new(key), value);
            KvOutput::Ok
        }
        KvCommand::SetWith {
            key,
            value,
            condition,
            get,
        } => set_with(store, Key::new(key), value, condition, get),
        KvCommand::MSet { pairs } => {
            for (key, value) in pairs {
                store.insert(Key::new(key), value);
            }
            KvOutput::Ok
        }
        KvCommand::Del { keys } => {
            let removed = keys
                .into_iter()
                .map(Key::new)
                .filter(|key| store.remove(key))
                .count();
            integer(removed)
        }
        KvCommand::Incr { key } => incr_by(store, Key::new(key), 1),
        KvCommand::IncrBy { key, delta } => incr_by(store, Key::new(key), delta),
        KvCommand::Append { key, value } => append(store, Key::new(key), value, MAX_VALUE_BYTES),
        KvCommand::Cas { key, expected, new } => {
            let key = Key::new(key);
            if store.get(&key) == Some(&expected) {
                store.insert(key, new);
                KvOutput::Integer(1)
            } else {
                KvOutput::Integer(0)
            }
        }
        KvCommand::Batch(_) => KvOutput::Error(NESTED_BATCH.into()),
        KvCommand::Read(query) => KvOutput::Answer(answer_one(store, query)),
    }
}

/// `SET key value [NX|XX] [GET]`: with `get`, the old value whether or not it set;
/// without, `Ok` if it set and nil if the condition did not hold.
fn set_with(
    store: &mut Store,
    key: Key,
    value: Vec<u8>,
    condition: SetCondition,
    get: bool,
) -> KvOutput {
    let (set_if_present, set_if_absent) = match condition {
        SetCondition::Always => (true, true),
        SetCondition::IfAbsent => (false, true),
        SetCondition::IfPresent => (true, false),
    };
    let present = store.get(&key).is_some();
    let (did_set, old) = match (present, set_if_present, set_if_absent) {
        (true, true, _) => (true, store.replace(key, value)),
        (true, false, _) => (false, if get { store.get(&key).cloned() } else { None }),
        (false, _, true) => {
            store.insert(key, value);
            (true, None)
        }
        (false, _, false) => (false, None),
    };
    match (get, did_set) {
        (true, _) => KvOutput::Bulk(old),
        (false, true) => KvOutput::Ok,
        (false, false) => KvOutput::Bulk(None),
    }
}

fn incr_by(store: &mut Store, key: Key, delta: i64) -> KvOutput {
    let current = match store.get(&key) {
        None => 0,
        Some(value) => match parse_redis_integer(value) {
            Some(n) => n,
            None => return KvOutput::Error(NOT_AN_INTEGER.into()),
        },
    };
    match current.checked_add(delta) {
        Some(n) => {
            store.insert(key, n.to_string().into_bytes());
            KvOutput::Integer(n)
        }
        None => KvOutput::Error(OVERFLOW.into()),
    }
}

/// `APPEND`: the new length; refused, like Redis's `proto-max-bulk-len`, past `max_bytes`
/// ([`MAX_VALUE_BYTES`]).
fn append(store: &mut Store, key: Key, value: Vec<u8>, max_bytes: usize) -> KvOutput {
    let too_long = |len: usize| len > max_bytes;
    let old_len = store.get(&key).map(Vec::len);
    if too_long(old_len.unwrap_or(0).saturating_add(value.len())) {
        return KvOutput::Error(TOO_LONG.into());
    }
    match store.get_mut(&key) {
        Some(old) => {
            old.extend_from_slice(&value);
            integer(old.len())
        }
        None => {
            let len = value.len();
            store.insert(key, value);
            integer(len)
        }
    }
}

fn integer(n: usize) -> KvOutput {
    KvOutput::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Answers one decoded query.
pub(super) fn answer(store: &Store, query: KvQuery) -> KvAnswer {
    match query {
        KvQuery::Batch(queries) => KvAnswer::Many(
            queries
                .into_iter()
                .map(|query| answer_one(store, query))
                .collect(),
        ),
        query => answer_one(store, query),
    }
}

fn answer_one(store: &Store, query: KvQuery) -> KvAnswer {
    let len = |n: usize| KvAnswer::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    match query {
        KvQuery::Get { key } => KvAnswer::Bulk(store.get(&Key::new(key)).cloned()),
        KvQuery::MGet { keys } => KvAnswer::Values(
            keys.into_iter()
                .map(|key| store.get(&Key::new(key)).cloned())
                .collect(),
        ),
        KvQuery::Exists { keys } => len(keys
            .into_iter()
            .map(Key::new)
            .filter(|key| store.get(key).is_some())
            .count()),
        KvQuery::StrLen { key } => len(store.get(&Key::new(key)).map_or(0, Vec::len)),
        KvQuery::DbSize => len(store.len()),
        KvQuery::Scan {
            cursor,
            pattern,
            count,
        } => {
            if pattern
                .as_ref()
                .is_some_and(|p| p.len() > MAX_SCAN_PATTERN_BYTES)
            {
                return KvAnswer::Bulk(None);
            }
            let glob = pattern.map(|p| Glob::new(&p));
            let page = store.scan(cursor, glob.as_ref(), count);
            KvAnswer::Scan {
                cursor: page.cursor,
                keys: page.keys,
            }
        }
        // Decoding refuses a batch in a batch; one built in memory is answered like a
        // malformed query.
        KvQuery::Batch(_) => KvAnswer::Bulk(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_stops_at_the_largest_value() {
        let mut store = Store::default();
        let key = || Key::new(b"k".to_vec());
        let too_long = KvOutput::Error(TOO_LONG.into());
        assert_eq!(append(&mut store, key(), vec![1; 11], 10), too_long);
        assert_eq!(store.get(&key()), None, "refused without effect");
        assert_eq!(
            append(&mut store, key(), vec![1; 6], 10),
            KvOutput::Integer(6)
        );
        assert_eq!(append(&mut store, key(), vec![2; 5], 10), too_long);
        assert_eq!(store.get(&key()).map(Vec::len), Some(6));
        assert_eq!(
            append(&mut store, key(), vec![2; 4], 10),
            KvOutput::Integer(10)
        );
    }
}
