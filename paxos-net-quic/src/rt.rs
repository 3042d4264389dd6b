//! Timers and spawning on quinn's own [`Runtime`]: the transport needs no other runtime.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, select};
use quinn::{AsyncTimer, Runtime};

/// A future that completes at a deadline, on a timer from quinn's runtime.
pub(crate) struct Sleep(Pin<Box<dyn AsyncTimer>>);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

/// Completes after `duration` (by the runtime's clock).
pub(crate) fn sleep(runtime: &dyn Runtime, duration: Duration) -> Sleep {
    let deadline = runtime.now() + duration;
    Sleep(runtime.new_timer(deadline))
}

/// Runs `fut` for at most `duration`; `None` if the time ran out first.
pub(crate) async fn timeout<T>(
    runtime: &dyn Runtime,
    duration: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    match select(pin!(fut), sleep(runtime, duration)).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}
