//! The two ends of a transport's bounded queues: frames into a peer's outbound queue, and
//! received messages out of the inbound queue, each bounded in messages (the channel) and
//! in bytes (a [`ByteBudget`]).

use async_channel::{Receiver, Sender, TrySendError};
use bytes::Bytes;
use paxos_core::{Inbound, TransportError};

use crate::ByteBudget;

/// Queues `frame` if both bounds admit it, without waiting. `false` (and nothing taken
/// from `budget`) if the queue is full in messages or bytes, or closed: the caller counts
/// the drop; the core retransmits.
pub fn try_enqueue(frames: &Sender<Bytes>, budget: &ByteBudget, frame: Bytes) -> bool {
    let len = frame.len();
    if !budget.try_acquire(len) {
        return false;
    }
    match frames.try_send(frame) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
            budget.release(len);
            false
        }
    }
}

/// [`Transport::recv`](paxos_core::Transport::recv) over an inbound queue of
/// `(message, framed bytes)`: waits for one message, then takes up to `max` in all without
/// waiting, giving each one's bytes back to `budget`. Cancel-safe: a message leaves the
/// queue only when the wait completes. [`TransportError::Closed`] once every sender is
/// gone.
pub async fn recv_batch(
    inbound: &Receiver<(Inbound, usize)>,
    budget: &ByteBudget,
    out: &mut Vec<Inbound>,
    max: usize,
) -> Result<(), TransportError> {
    if max == 0 {
        return Ok(());
    }
    let (first, bytes) = inbound.recv().await.map_err(|_| TransportError::Closed)?;
    budget.release(bytes);
    out.push(first);
    for _ in 1..max {
        let Ok((message, bytes)) = inbound.try_recv() else {
            break;
        };
        budget.release(bytes);
        out.push(message);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use paxos_core::message::{Decide, Message};
    use paxos_core::{Ballot, NodeId, Slot};

    use super::*;

    #[test]
    fn enqueue_respects_both_bounds_and_takes_nothing_when_refused() {
        let (tx, rx) = async_channel::bounded(2);
        let budget = ByteBudget::new(10);
        assert!(try_enqueue(&tx, &budget, Bytes::from_static(&[0; 6])));
        assert!(
            !try_enqueue(&tx, &budget, Bytes::from_static(&[0; 6])),
            "bytes"
        );
        assert!(try_enqueue(&tx, &budget, Bytes::from_static(&[0; 4])));
        assert!(!try_enqueue(&tx, &budget, Bytes::new()), "messages");
        drop(rx);
        budget.release(10);
        assert!(
            !try_enqueue(&tx, &budget, Bytes::from_static(&[0; 1])),
            "closed"
        );
        assert!(budget.try_acquire(10), "refusals took nothing");
    }

    #[test]
    fn recv_batch_takes_what_is_there_up_to_max_and_frees_its_bytes() {
        let (tx, rx) = async_channel::bounded(8);
        let budget = ByteBudget::new(100);
        let message = |commit| Inbound {
            from: NodeId(1),
            message: Message::Decide(Decide {
                ballot: Ballot::new(1, NodeId(1)),
                commit: Slot(commit),
            }),
        };
        for commit in 0..3 {
            assert!(budget.try_acquire(30));
            tx.try_send((message(commit), 30)).unwrap();
        }
        let mut out = Vec::new();
        recv_batch(&rx, &budget, &mut out, 2)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(budget.try_acquire(70), "two messages' bytes came back");
        recv_batch(&rx, &budget, &mut out, 0)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 2, "max 0 takes nothing");
        recv_batch(&rx, &budget, &mut out, 5)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 3);
        assert!(
            recv_batch(&rx, &budget, &mut out, 1)
                .now_or_never()
                .is_none(),
            "waits"
        );
        drop(tx);
        let closed = recv_batch(&rx, &budget, &mut out, 1)
            .now_or_never()
            .unwrap();
        assert!(matches!(closed, Err(TransportError::Closed)));
    }
}
