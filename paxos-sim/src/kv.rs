//! The simulated workload's state machine: a map of u64 registers with read, write and
//! compare-and-set, all through the log.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A key-value command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Read a key.
    Read {
        /// The key.
        key: u64,
    },
    /// Write a value.
    Write {
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// Set `key` to `new` if it holds `expected`.
    Cas {
        /// The key.
        key: u64,
        /// The value required.
        expected: u64,
        /// The value to set.
        new: u64,
    },
}

/// What a [`KvOp`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    /// The value read.
    Read(Option<u64>),
    /// The write happened.
    Written,
    /// Whether the compare-and-set took effect.
    Cas(bool),
}

impl KvOp {
    /// Encodes the command for the log.
    pub fn encode(&self) -> Bytes {
        Bytes::from(postcard::to_allocvec(self).unwrap_or_default())
    }

    /// Decodes a command; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    /// The key the command touches.
    pub fn key(&self) -> u64 {
        match *self {
            Self::Read { key } | Self::Write { key, .. } | Self::Cas { key, .. } => key,
        }
    }
}

/// The registers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<u64, u64>,
}

impl Kv {
    /// Applies one command.
    pub fn apply(&mut self, op: KvOp) -> KvOutput {
        match op {
            KvOp::Read { key } => KvOutput::Read(self.map.get(&key).copied()),
            KvOp::Write { key, value } => {
                self.map.insert(key, value);
                KvOutput::Written
            }
            KvOp::Cas { key, expected, new } => {
                let hit = self.map.get(&key) == Some(&expected);
                if hit {
                    self.map.insert(key, new);
                }
                KvOutput::Cas(hit)
            }
        }
    }

    /// The current contents.
    pub fn contents(&self) -> &BTreeMap<u64, u64> {
        &self.map
    }

    /// The registers as given: for restoring a snapshot.
    pub fn from_contents(map: BTreeMap<u64, u64>) -> Self {
        Self { map }
    }
}
