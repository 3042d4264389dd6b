//! Each runtime keeps the trait's contract: timers fire no earlier than their deadline and
//! can be moved, spawned tasks run, loopback TCP connects both ways and half-closes.

#![cfg(all(feature = "tokio", feature = "async-io-impl"))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use paxos_runtime::{AsyncIoRuntime, Runtime, TokioRuntime, timeout_at};

async fn contract(rt: Arc<dyn Runtime>) {
    // A timer fires no earlier than its deadline, and a moved one at its new deadline.
    let start = rt.now();
    rt.sleep(Duration::from_millis(20)).await;
    assert!(rt.now() >= start + Duration::from_millis(20));
    let mut timer = rt.new_timer(rt.now() + Duration::from_secs(3600));
    let soon = rt.now() + Duration::from_millis(10);
    timer.as_mut().reset(soon);
    futures::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
    assert!(rt.now() >= soon);
    // It stays ready until moved again.
    assert!(futures::poll!(futures::future::poll_fn(|cx| timer.as_mut().poll(cx))).is_ready());

    // A spawned task runs.
    let (tx, rx) = futures::channel::oneshot::channel();
    rt.spawn(Box::pin(async move {
        let _ = tx.send(7);
    }));
    assert_eq!(rx.await, Ok(7));

    // A timeout fires when the future does not finish, and not when it does.
    let deadline = rt.now() + Duration::from_millis(10);
    assert_eq!(
        timeout_at(&*rt, deadline, futures::future::pending::<()>()).await,
        None
    );
    let deadline = rt.now() + Duration::from_secs(60);
    assert_eq!(timeout_at(&*rt, deadline, async { 5 }).await, Some(5));

    // Loopback TCP, both directions.
    let listener = rt.bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap();
    let connect = rt.connect_tcp(addr);
    let (accepted, client) = futures::join!(listener.accept(), connect);
    let (mut server, _) = accepted.unwrap();
    let mut client = client.unwrap();
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");

    // `close` shuts down the write side only: the peer reads the end of the stream, and
    // can still be heard.
    server.close().await.unwrap();
    let deadline = rt.now() + Duration::from_secs(10);
    let mut rest = Vec::new();
    let read = timeout_at(&*rt, deadline, client.read_to_end(&mut rest)).await;
    assert_eq!(read.expect("close sends the end of the stream").unwrap(), 0);
    client.write_all(b"bye!").await.unwrap();
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"bye!");
}

#[test]
fn tokio_keeps_the_contract() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(TokioRuntime::new(rt.handle().clone()));
    rt.block_on(contract(runtime));
}

#[test]
fn async_io_keeps_the_contract() {
    smol::block_on(contract(Arc::new(AsyncIoRuntime::new())));
}

#[test]
fn the_default_runtime_is_tokio_inside_tokio() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inside = rt.block_on(async { format!("{:?}", paxos_runtime::default_runtime()) });
    assert!(inside.contains("TokioRuntime"), "{inside}");
    let outside = format!("{:?}", paxos_runtime::default_runtime());
    assert!(outside.contains("AsyncIoRuntime"), "{outside}");
}
