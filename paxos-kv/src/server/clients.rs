//! The open RESP connections, for `CLIENT ID`, `CLIENT INFO`, `CLIENT LIST` and `INFO`.
//!
//! Each connection registers when it opens and leaves when it closes (a [`Registration`]
//! dropped). What `CLIENT` reports of it lives in one [`ClientInfo`] behind a mutex that
//! only its own connection writes (once per command, uncontended) and `CLIENT LIST` reads.
//! The registry is bounded by the server's connection bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::resp::Protocol;

/// The open connections.
#[derive(Debug)]
pub(crate) struct Clients {
    /// When the server started (`INFO`'s uptime).
    pub(crate) started: Instant,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Mutex<ClientInfo>>>>,
}

/// What `CLIENT INFO` says about one connection.
#[derive(Clone, Debug)]
pub(crate) struct ClientInfo {
    pub(crate) id: u64,
    pub(crate) addr: SocketAddr,
    pub(crate) laddr: SocketAddr,
    pub(crate) opened: Instant,
    pub(crate) last_command: Instant,
    /// The full name of the last command (`client|info`), as Redis's `cmd=`.
    pub(crate) command: &'static str,
    /// `CLIENT SETNAME`; never empty (an empty name clears it).
    pub(crate) name: Option<Vec<u8>>,
    pub(crate) lib_name: Option<Vec<u8>>,
    pub(crate) lib_ver: Option<Vec<u8>>,
    pub(crate) protocol: Protocol,
}

/// A connection's place in [`Clients`]; leaves it when dropped.
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    clients: &'a Clients,
    info: Arc<Mutex<ClientInfo>>,
    id: u64,
}

impl Clients {
    pub(crate) fn new(started: Instant) -> Self {
        Self {
            started,
            next_id: AtomicU64::new(1),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// Registers a new connection from `addr` to `laddr`, with a fresh id (from 1, in
    /// order, as Redis's client ids).
    pub(crate) fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        now: Instant,
    ) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(Mutex::new(ClientInfo {
            id,
            addr,
            laddr,
            opened: now,
            last_command: now,
            command: "NULL",
            name: None,
            lib_name: None,
            lib_ver: None,
            protocol: Protocol::Resp2,
        }));
        lock(&self.open).insert(id, info.clone());
        Registration {
            clients: self,
            info,
            id,
        }
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// A copy of every open connection's info, by id.
    pub(crate) fn snapshot(&self) -> Vec<ClientInfo> {
        let open: Vec<Arc<Mutex<ClientInfo>>> = lock(&self.open).values().cloned().collect();
        open.iter().map(|info| lock(info).clone()).collect()
    }
}

impl Registration<'_> {
    /// This connection's id (`CLIENT ID`, `HELLO`'s `id`).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// This connection's info, to read or change.
    pub(crate) fn info(&self) -> MutexGuard<'_, ClientInfo> {
        lock(&self.info)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.clients.open).remove(&self.id);
    }
}

impl ClientInfo {
    /// One line of `CLIENT LIST` (no line end): Redis 7.2's fields that mean something
    /// here, in Redis's order and format. Buffer and memory fields are left out.
    pub(crate) fn line(&self, now: Instant) -> String {
        let text = |v: &Option<Vec<u8>>| {
            v.as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned()
        };
        format!(
            "id={} addr={} laddr={} name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 \
             multi=-1 cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            text(&self.name),
            now.saturating_duration_since(self.opened).as_secs(),
            now.saturating_duration_since(self.last_command).as_secs(),
            self.command,
            self.protocol.version(),
            text(&self.lib_name),
            text(&self.lib_ver),
        )
    }
}

/// A poisoned lock only means a panic elsewhere while it was held; the data (names and
/// counters) is still fine to read.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_register_and_leave() {
        let now = Instant::now();
        let clients = Clients::new(now);
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let laddr: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let a = clients.register(addr, laddr, now);
        {
            let b = clients.register(addr, laddr, now);
            assert_eq!((a.id(), b.id()), (1, 2));
            b.info().name = Some(b"worker".to_vec());
            assert_eq!(clients.len(), 2);
            let names: Vec<_> = clients.snapshot().into_iter().map(|i| i.name).collect();
            assert_eq!(names, vec![None, Some(b"worker".to_vec())]);
        }
        assert_eq!(clients.len(), 1);
        assert_eq!(
            a.info().line(now),
            "id=1 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 name= age=0 idle=0 flags=N db=0 \
             sub=0 psub=0 ssub=0 multi=-1 cmd=NULL user=default redir=-1 resp=2 lib-name= \
             lib-ver="
        );
    }
}
