//! The `OWNER` file: which node of which cluster a store directory belongs to.
//!
//! ```text
//! offset  size  field
//!      0     4  magic       "PXOW" as a little-endian u32
//!      4     4  version     1
//!      8     8  cluster_id
//!     16     8  node_id
//!     24     4  crc32c of bytes 0..24
//! ```
//!
//! Written once, by the first [`claim`](paxos_core::Storage::claim), like a snapshot:
//! `OWNER.tmp` is written and fsynced, renamed over `OWNER`, and the directory fsynced. A
//! crash leaves either no `OWNER` (the next claim writes it) or a whole one. A file that
//! fails its checks is [`StorageError::Corrupt`], never replaced: replacing it would hand
//! the store to whoever claims it next.

use std::fs::File;
use std::path::Path;

use paxos_core::{NodeId, StorageError, StoreOwner};

use super::recovery::corrupt;
use super::{IoFaults, io_error, replace_file};

/// Name of the owner file.
pub(crate) const OWNER_FILE: &str = "OWNER";
/// Bytes in an owner file.
const OWNER_BYTES: usize = 28;
/// Identifies an owner file.
const OWNER_MAGIC: u32 = u32::from_le_bytes(*b"PXOW");
/// The one format version written and read.
const OWNER_VERSION: u32 = 1;

/// The owner recorded in `dir`, or `None` if it has no `OWNER` file.
pub(crate) fn read(dir: &Path) -> Result<Option<StoreOwner>, StorageError> {
    let path = dir.join(OWNER_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("read {}", path.display()), e)),
    };
    let bad = |reason: String| corrupt(&path, 0, reason);
    let Ok(bytes) = <[u8; OWNER_BYTES]>::try_from(bytes.as_slice()) else {
        return Err(bad(format!(
            "the owner file is {} bytes long, not {OWNER_BYTES}",
            bytes.len()
        )));
    };
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if word(0) != OWNER_MAGIC {
        return Err(bad("the owner file has a bad magic number".into()));
    }
    if crc32c::crc32c(&bytes[..24]) != word(24) {
        return Err(bad("the owner file fails its checksum".into()));
    }
    if word(4) != OWNER_VERSION {
        return Err(bad(format!(
            "the owner file has format version {}, this build reads version {OWNER_VERSION} \
             (written by a newer release?)",
            word(4)
        )));
    }
    Ok(Some(StoreOwner::new(long(8), NodeId(long(16)))))
}

/// Durably records `owner` in `dir` (whose open handle, for the fsync, is `dir_file`).
pub(crate) fn write(
    dir: &Path,
    dir_file: &File,
    owner: StoreOwner,
    faults: Option<&IoFaults>,
) -> Result<(), StorageError> {
    let mut bytes = [0_u8; OWNER_BYTES];
    bytes[0..4].copy_from_slice(&OWNER_MAGIC.to_le_bytes());
    bytes[4..8].copy_from_slice(&OWNER_VERSION.to_le_bytes());
    bytes[8..16].copy_from_slice(&owner.cluster_id.to_le_bytes());
    bytes[16..24].copy_from_slice(&owner.node_id.0.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());

    replace_file(dir, dir_file, OWNER_FILE, &[&bytes], faults)
}
