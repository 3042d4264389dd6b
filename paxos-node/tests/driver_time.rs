//! The driver reads the clock as it hands each input to the core, never before the input
//! arrived.
//!
//! The node runs on a runtime whose clock the test moves by hand, over a transport that
//! delivers a message once the clock reaches its arrival time. A "pause" makes the clock
//! jump just after one of the driver's clock reads, as a SIGSTOP between reading the
//! clock and receiving would: the message that arrives during the pause must be timed
//! after it.

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use paxos_core::message::{Accept, Nack, Prepare};
use paxos_core::{
    Ballot, Config, Envelope, Inbound, Message, NodeId, Slot, Transport, TransportError,
};
use paxos_node::{AsyncTimer, NodeBuilder, Runtime};
use paxos_storage::MemoryStorage;

#[derive(Debug)]
struct ClockState {
    now: Instant,
    /// After the next read, the clock jumps by this much (a pause right after the read).
    jump_after_read: Option<Duration>,
    wakers: Vec<Waker>,
}

/// A clock that moves only when told, waking whatever waits on it.
#[derive(Clone, Debug)]
struct Clock(Arc<Mutex<ClockState>>);

impl Clock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(ClockState {
            now: Instant::now(),
            jump_after_read: None,
            wakers: Vec::new(),
        })))
    }

    fn peek(&self) -> Instant {
        self.0.lock().unwrap().now
    }

    /// What the runtime's `now()` returns: the time, then the armed jump, if any.
    fn read(&self) -> Instant {
        let mut s = self.0.lock().unwrap();
        let now = s.now;
        if let Some(jump) = s.jump_after_read.take() {
            s.now += jump;
            s.wakers.drain(..).for_each(Waker::wake);
        }
        now
    }

    fn set(&self, to: Instant) {
        let mut s = self.0.lock().unwrap();
        s.now = s.now.max(to);
        s.wakers.drain(..).for_each(Waker::wake);
    }

    fn arm_pause(&self, jump: Duration) {
        self.0.lock().unwrap().jump_after_read = Some(jump);
    }

    /// Tasks waiting for the clock to move (the parked driver's timer and receive).
    fn waiting(&self) -> usize {
        self.0.lock().unwrap().wakers.len()
    }

    fn wake_at_change(&self, waker: &Waker) {
        self.0.lock().unwrap().wakers.push(waker.clone());
    }
}

#[derive(Debug)]
struct ManualTimer {
    clock: Clock,
    deadline: Instant,
}

impl AsyncTimer for ManualTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.peek() >= self.deadline {
            return Poll::Ready(());
        }
        self.clock.wake_at_change(cx.waker());
        Poll::Pending
    }
}

/// Tasks on tokio, time from the manual clock.
#[derive(Debug)]
struct ManualRuntime {
    tokio: paxos_node::TokioRuntime,
    clock: Clock,
}

impl Runtime for ManualRuntime {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.tokio.spawn(task);
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(ManualTimer {
            clock: self.clock.clone(),
            deadline,
        })
    }

    fn now(&self) -> Instant {
        self.clock.read()
    }

    fn connect_tcp(
        &self,
        _addr: std::net::SocketAddr,
    ) -> BoxFuture<'static, std::io::Result<paxos_runtime::BoxConn>> {
        Box::pin(async { Err(paxos_runtime::no_sockets()) })
    }

    fn bind_tcp(
        &self,
        _addr: std::net::SocketAddr,
    ) -> std::io::Result<Box<dyn paxos_runtime::Listener>> {
        Err(paxos_runtime::no_sockets())
    }
}

#[derive(Debug, Default)]
struct Wire {
    /// (arrival time, sender, message), delivered once the clock reaches the arrival.
    inbound: Vec<(Instant, NodeId, Message)>,
    sent: Vec<Envelope>,
}

/// A transport the test scripts: arrivals are timed on the manual clock.
#[derive(Clone, Debug)]
struct ScriptedTransport {
    clock: Clock,
    wire: Arc<Mutex<Wire>>,
}

impl ScriptedTransport {
    fn arrive(&self, at: Instant, from: NodeId, message: Message) {
        self.wire.lock().unwrap().inbound.push((at, from, message));
        // Wake a receiver that waits on the clock.
        self.clock.set(self.clock.peek());
    }

    fn sent_to(&self, to: NodeId) -> Vec<Message> {
        let wire = self.wire.lock().unwrap();
        wire.sent
            .iter()
            .filter(|e| e.to == to)
            .map(|e| e.message.clone())
            .collect()
    }
}

#[async_trait]
impl Transport for ScriptedTransport {
    fn send(&self, batch: Vec<Envelope>) {
        self.wire.lock().unwrap().sent.extend(batch);
    }

    async fn recv(&mut self, out: &mut Vec<Inbound>, max: usize) -> Result<(), TransportError> {
        futures::future::poll_fn(|cx| {
            let now = self.clock.peek();
            let mut wire = self.wire.lock().unwrap();
            let mut taken = 0;
            let mut i = 0;
            while i < wire.inbound.len() && taken < max {
                if wire.inbound[i].0 <= now {
                    let (_, from, message) = wire.inbound.remove(i);
                    out.push(Inbound { from, message });
                    taken += 1;
                } else {
                    i += 1;
                }
            }
            if taken > 0 {
                return Poll::Ready(Ok(()));
            }
            drop(wire);
            self.clock.wake_at_change(cx.waker());
            Poll::Pending
        })
        .await
    }
}

/// Polls `check` (real time) until it holds, for at most ten seconds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn a_lease_is_granted_from_the_arrival_even_across_a_pause() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = Clock::new();
        let t0 = clock.peek();
        let runtime: Arc<dyn Runtime> = Arc::new(ManualRuntime {
            tokio: paxos_node::TokioRuntime::current().unwrap(),
            clock: clock.clone(),
        });
        let transport = ScriptedTransport {
            clock: clock.clone(),
            wire: Arc::default(),
        };
        // Long timers, so that only the steps below happen.
        let (n1, n2, n3) = (NodeId(1), NodeId(2), NodeId(3));
        let mut config = Config::new(n2, vec![n1, n2, n3]);
        config.heartbeat_interval = Duration::from_secs(5);
        config.election_timeout_min = Duration::from_secs(30);
        config.election_timeout_max = Duration::from_secs(60);
        config.resend_interval = Duration::from_secs(5);
        let lease = Duration::from_secs(15);
        config.lease_duration = Some(lease);
        let node = NodeBuilder::new(config)
            .transport(Box::new(transport.clone()))
            .storage(Box::new(MemoryStorage::new()))
            .state_machine(Box::new(common::Kv::default()))
            .runtime(runtime.clone())
            .start()
            .await
            .unwrap();

        // The driver reads the clock, pauses for 10 s, and a heartbeat from N1 arrives at
        // 5 s into the pause. The driver is woken by a message that is there at once (a
        // harmless CatchUp from N3); it reads the clock no earlier than in that cycle.
        eventually("the driver to park", || clock.waiting() > 0).await;
        let b1 = Ballot::new(1, n1);
        clock.arm_pause(Duration::from_secs(10));
        transport.arrive(
            t0 + Duration::from_secs(5),
            n1,
            Message::Accept(Accept {
                ballot: b1,
                first: Slot(0),
                values: vec![],
                commit: Slot(0),
                stamp: paxos_core::Instant::ZERO,
            }),
        );
        transport.arrive(
            t0,
            n3,
            Message::CatchUp(paxos_core::message::CatchUp { from: Slot(0) }),
        );
        eventually("the Accepted to N1", || {
            transport
                .sent_to(n1)
                .iter()
                .any(|m| matches!(m, Message::Accepted(_)))
        })
        .await;

        // The heartbeat arrived at 5 s or later, so the lease N2 granted N1 lasts until
        // at least 20 s. A Prepare from N3 at 19 s must be refused because of it.
        let prepare_at = t0 + Duration::from_secs(19);
        clock.set(prepare_at);
        transport.arrive(
            prepare_at,
            n3,
            Message::Prepare(Prepare {
                ballot: Ballot::new(2, n3),
                from: Slot(0),
            }),
        );
        let answer = || {
            transport
                .sent_to(n3)
                .into_iter()
                .find(|m| !matches!(m, Message::CatchUpReply(_)))
        };
        eventually("an answer to N3's Prepare", || answer().is_some()).await;
        let answer = answer().unwrap();
        assert_eq!(
            answer,
            Message::Nack(Nack {
                ballot: Ballot::new(2, n3),
                promised: b1,
                leased: true,
            }),
            "the lease granted to N1 was timed from before the heartbeat arrived"
        );
        node.shutdown().await;
    });
}
