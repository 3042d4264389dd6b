//! Loopback ports that no socket takes by accident, for tests that stop a node and start
//! it again on the same port.
//!
//! Why not `bind(127.0.0.1:0)`, read the port, release it: the kernel takes that port from
//! the ephemeral range (`net.ipv4.ip_local_port_range`), the same range it draws the
//! source port of every outbound connection from. Once a test releases a port (or stops
//! the node that held it), any `connect` on the machine may get it as its source port: a
//! peer redialling the stopped node, a client, another test. A peer that redials the
//! freed port itself can even connect to itself (TCP simultaneous open) and hold it. The
//! node's bind then fails with "address in use", and it can keep failing for as long as
//! that connection lives, so retrying the bind is no cure.
//!
//! The kernel never assigns a port outside that range implicitly; only an explicit `bind`
//! takes one. So ports come from outside the range (the larger of the stretches below and
//! above it), each checked free by binding it. Within one test binary a counter hands each
//! port out once, so parallel tests never share one; test binaries that run at the same
//! time start at offsets taken from their process ids, and a port held elsewhere fails the
//! check and is skipped. If the range leaves no room (a machine configured to use every
//! port as ephemeral), this falls back to `bind(0)`, with the old race.
//!
//! UDP (QUIC) has the same ephemeral range; [`free_udp_socket`] takes its ports from the
//! same stretch.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out (below it: well-known services).
pub const FIRST: u32 = 1024;
/// Fewer ports than this outside the ephemeral range: fall back to `bind(0)`.
const ROOM_MIN: u32 = 1000;

/// Ports `[start, start + len)`, outside the ephemeral range.
#[derive(Clone, Copy, Debug)]
pub struct Stretch {
    pub start: u32,
    pub len: u32,
}

/// The stretch used, and the next index into it.
fn allocator() -> &'static (Option<Stretch>, AtomicU32) {
    static ALLOCATOR: OnceLock<(Option<Stretch>, AtomicU32)> = OnceLock::new();
    ALLOCATOR.get_or_init(|| {
        let stretch = outside_ephemeral(ephemeral_range());
        let offset = stretch.map_or(0, |s| std::process::id().wrapping_mul(7919) % s.len);
        (stretch, AtomicU32::new(offset))
    })
}

/// `net.ipv4.ip_local_port_range`; Linux's default where it cannot be read.
pub fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut words = text.split_whitespace().map(|w| w.parse::<u32>().ok());
            Some((words.next()??, words.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// The larger stretch of `[FIRST, 65535]` outside `[low, high]`, if it is big enough.
pub fn outside_ephemeral((low, high): (u32, u32)) -> Option<Stretch> {
    let below = Stretch {
        start: FIRST,
        len: low.saturating_sub(FIRST),
    };
    let above = Stretch {
        start: high + 1,
        len: 65535u32.saturating_sub(high),
    };
    let larger = if below.len >= above.len { below } else { above };
    (larger.len >= ROOM_MIN).then_some(larger)
}

/// `n` distinct free ports on 127.0.0.1, outside the ephemeral range. They are all bound
/// together while chosen, then released.
pub fn free_ports(n: usize) -> Vec<u16> {
    let (stretch, next) = allocator();
    let Some(stretch) = *stretch else {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        return listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
    };
    let mut held = Vec::with_capacity(n);
    // Bounded: one pass over the stretch.
    for _ in 0..stretch.len {
        if held.len() == n {
            break;
        }
        let index = next.fetch_add(1, Ordering::Relaxed) % stretch.len;
        let port = (stretch.start + index) as u16;
        if let Ok(listener) = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))) {
            held.push(listener);
        }
    }
    assert_eq!(
        held.len(),
        n,
        "no {n} free ports outside the ephemeral range"
    );
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One free port on 127.0.0.1, outside the ephemeral range.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// 127.0.0.1 on a [`free_port`].
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A UDP socket bound to 127.0.0.1 on a port outside the ephemeral range, held: a QUIC
/// transport started on it can be stopped and started again on the same port, since no
/// socket takes that port implicitly meanwhile. Ports come from the same counter as
/// [`free_ports`], so the two never hand out the same port within one test binary.
pub fn free_udp_socket() -> UdpSocket {
    let (stretch, next) = allocator();
    let Some(stretch) = *stretch else {
        return UdpSocket::bind("127.0.0.1:0").expect("bind UDP 127.0.0.1:0");
    };
    // Bounded: one pass over the stretch.
    for _ in 0..stretch.len {
        let index = next.fetch_add(1, Ordering::Relaxed) % stretch.len;
        let port = (stretch.start + index) as u16;
        if let Ok(socket) = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], port))) {
            return socket;
        }
    }
    panic!("no free UDP port outside the ephemeral range");
}
