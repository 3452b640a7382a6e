//! The datagram driver with a scripted channel over real UDP sockets on loopback.

use std::time::Duration;

use portico_core::BrokerConfig;
use portico_core::channel::{CloseReason, EncodeError};

use super::*;

/// Echoes datagrams, with commands: `close` ends the channel, `wait` stops taking input until
/// the next delivery signal (as a pending authentication would), `timer` asks for a timeout in
/// 50 ms, `panic` panics. Every call is reported back to the peer.
struct Script {
    waiting: bool,
    deadline: Option<Instant>,
    closed: Arc<Mutex<Vec<SocketAddr>>>,
    peer: SocketAddr,
}

impl DatagramChannel for Script {
    type Frame = Bytes;

    fn encode(&self, frame: &Bytes, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.extend_from_slice(frame);
        Ok(())
    }

    fn handle_datagram(&mut self, datagram: Bytes, now: Instant, out: &mut Outbox<Bytes>) {
        match &datagram[..] {
            b"close" => out.close(CloseReason::ClientDisconnect),
            b"wait" => self.waiting = true,
            b"timer" => self.deadline = Some(now + Duration::from_millis(50)),
            b"panic" => panic!("a scripted channel bug"),
            _ => {}
        }
        out.send(datagram);
    }

    fn handle_deliver(&mut self, _now: Instant, out: &mut Outbox<Bytes>) {
        self.waiting = false;
        out.send(Bytes::from_static(b"delivered"));
    }

    fn handle_timeout(&mut self, _now: Instant, out: &mut Outbox<Bytes>) {
        self.deadline = None;
        out.send(Bytes::from_static(b"timeout"));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn handle_kick(&mut self, _reason: KickReason, _now: Instant, out: &mut Outbox<Bytes>) {
        out.send(Bytes::from_static(b"kicked"));
        out.close(CloseReason::Kicked(KickReason::ServerShutdown));
    }

    fn handle_closed(&mut self, _now: Instant) {
        self.closed.lock().push(self.peer);
    }

    fn accepts_input(&self) -> bool {
        !self.waiting
    }
}

#[derive(Default)]
struct Scripted {
    closed: Arc<Mutex<Vec<SocketAddr>>>,
    conns: Arc<Mutex<Vec<Arc<ConnHandle>>>>,
}

impl DatagramFrontend for Scripted {
    type Channel = Script;

    fn name(&self) -> &'static str {
        "script"
    }

    fn admits(&self, datagram: &[u8]) -> bool {
        datagram != b"junk"
    }

    fn new_peer(&self, conn: Arc<ConnHandle>, info: ConnInfo, _now: Instant) -> Script {
        self.conns.lock().push(conn.clone());
        Script {
            waiting: false,
            deadline: None,
            closed: self.closed.clone(),
            peer: info.peer,
        }
    }
}

struct Rig {
    broker: Broker,
    addr: SocketAddr,
    closed: Arc<Mutex<Vec<SocketAddr>>>,
    conns: Arc<Mutex<Vec<Arc<ConnHandle>>>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

async fn rig(settings: DatagramSettings) -> Rig {
    let broker = Broker::new(BrokerConfig::default());
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let frontend = Arc::new(Scripted::default());
    let closed = frontend.closed.clone();
    let conns = frontend.conns.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_datagrams(
        Arc::new(socket),
        settings,
        frontend,
        broker.clone(),
        shutdown.clone(),
    ));
    // The server's tick wakes peers whose deadline passed.
    let ticker = broker.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            ticker.tick(Instant::now());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    Rig {
        broker,
        addr,
        closed,
        conns,
        shutdown,
        task,
    }
}

async fn client(rig: &Rig) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.connect(rig.addr).await.expect("connect");
    socket
}

async fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("recv");
    buf.truncate(n);
    buf
}

async fn nothing(socket: &UdpSocket) {
    let mut buf = vec![0u8; 2048];
    assert!(
        tokio::time::timeout(Duration::from_millis(150), socket.recv(&mut buf))
            .await
            .is_err(),
        "expected no answer"
    );
}

#[tokio::test]
async fn each_peer_gets_its_own_channel_and_closing_frees_it() {
    let rig = rig(DatagramSettings::default()).await;
    let a = client(&rig).await;
    let b = client(&rig).await;
    a.send(b"one").await.expect("send");
    assert_eq!(recv(&a).await, b"one");
    b.send(b"two").await.expect("send");
    assert_eq!(recv(&b).await, b"two");
    assert_eq!(rig.broker.connection_count(), 2);
    a.send(b"close").await.expect("send");
    assert_eq!(recv(&a).await, b"close");
    b.send(b"ping").await.expect("send");
    assert_eq!(recv(&b).await, b"ping", "b is unaffected");
    assert_eq!(rig.closed.lock().as_slice(), &[a.local_addr().expect("addr")]);
    assert_eq!(rig.broker.connection_count(), 1);
    rig.shutdown.cancel();
    rig.task.await.expect("join").expect("served");
}

#[tokio::test]
async fn a_signalled_peer_is_served_and_input_waits_meanwhile() {
    let rig = rig(DatagramSettings::default()).await;
    let a = client(&rig).await;
    a.send(b"wait").await.expect("send");
    assert_eq!(recv(&a).await, b"wait");
    a.send(b"first").await.expect("send");
    a.send(b"second").await.expect("send");
    nothing(&a).await;
    // The answer arrives: the peer's connection is signalled, as a verdict would.
    signal_all(&rig);
    assert_eq!(recv(&a).await, b"delivered");
    assert_eq!(recv(&a).await, b"first", "held datagrams follow, in order");
    assert_eq!(recv(&a).await, b"second");
    // Every later signal wakes the peer again (a wake-up consumes the waker's registration).
    for _ in 0..3 {
        signal_all(&rig);
        assert_eq!(recv(&a).await, b"delivered");
    }
    rig.shutdown.cancel();
    rig.task.await.expect("join").expect("served");
}

/// Signals every registered connection, as deliveries would.
fn signal_all(rig: &Rig) {
    for conn in rig.conns.lock().iter() {
        conn.signal_deliver();
        conn.wake();
    }
}

#[tokio::test]
async fn deadlines_come_through_the_broker_tick() {
    let rig = rig(DatagramSettings::default()).await;
    let a = client(&rig).await;
    a.send(b"timer").await.expect("send");
    assert_eq!(recv(&a).await, b"timer");
    assert_eq!(recv(&a).await, b"timeout");
    rig.shutdown.cancel();
    rig.task.await.expect("join").expect("served");
}

#[tokio::test]
async fn floods_and_junk_are_dropped_and_counted() {
    let rate = Rate::new(5, Duration::from_secs(60)).expect("rate");
    let rig = rig(DatagramSettings {
        max_peers: 1,
        peer_rate: Some(rate),
        ..DatagramSettings::default()
    })
    .await;
    let dropped = || {
        rig.broker
            .metrics()
            .listener_dropped_datagrams
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let junk = client(&rig).await;
    junk.send(b"junk").await.expect("send");
    nothing(&junk).await;
    assert_eq!(rig.broker.connection_count(), 0, "not admitted: no channel");
    let a = client(&rig).await;
    for i in 0..10 {
        a.send(format!("m{i}").as_bytes()).await.expect("send");
    }
    for i in 0..5 {
        assert_eq!(recv(&a).await, format!("m{i}").as_bytes());
    }
    nothing(&a).await;
    let b = client(&rig).await;
    b.send(b"hello").await.expect("send");
    nothing(&b).await;
    assert_eq!(rig.broker.connection_count(), 1, "max_peers");
    assert_eq!(dropped(), 1 + 5 + 1);
    rig.shutdown.cancel();
    rig.task.await.expect("join").expect("served");
}

#[tokio::test]
async fn a_peer_whose_channel_ends_after_each_datagram_keeps_its_rate() {
    let rate = Rate::new(3, Duration::from_secs(60)).expect("rate");
    let rig = rig(DatagramSettings {
        peer_rate: Some(rate),
        ..DatagramSettings::default()
    })
    .await;
    let a = client(&rig).await;
    for _ in 0..3 {
        a.send(b"close").await.expect("send");
        assert_eq!(recv(&a).await, b"close");
    }
    // A new channel for the same address, but not a new bucket.
    a.send(b"close").await.expect("send");
    nothing(&a).await;
    // Another address has its own.
    let b = client(&rig).await;
    b.send(b"close").await.expect("send");
    assert_eq!(recv(&b).await, b"close");
    rig.shutdown.cancel();
    rig.task.await.expect("join").expect("served");
}

#[tokio::test]
async fn shutdown_kicks_every_peer() {
    let rig = rig(DatagramSettings::default()).await;
    let a = client(&rig).await;
    a.send(b"hi").await.expect("send");
    assert_eq!(recv(&a).await, b"hi");
    rig.shutdown.cancel();
    assert_eq!(recv(&a).await, b"kicked");
    rig.task.await.expect("join").expect("served");
    assert_eq!(rig.closed.lock().len(), 1);
    assert_eq!(rig.broker.connection_count(), 0);
}

#[tokio::test]
async fn a_panicking_channel_is_dropped_and_the_listener_serves_the_others() {
    let rig = rig(DatagramSettings::default()).await;
    let (buggy, other) = (client(&rig).await, client(&rig).await);
    other.send(b"hello").await.expect("send");
    assert_eq!(recv(&other).await, b"hello");
    buggy.send(b"panic").await.expect("send");
    nothing(&buggy).await;
    // The buggy peer was closed and unregistered; the other one and new ones are served.
    let buggy_addr = buggy.local_addr().expect("addr");
    assert!(rig.closed.lock().contains(&buggy_addr), "handle_closed ran");
    other.send(b"still here").await.expect("send");
    assert_eq!(recv(&other).await, b"still here");
    buggy.send(b"again").await.expect("send");
    assert_eq!(recv(&buggy).await, b"again", "a new channel for the address");
    assert!(!rig.task.is_finished());
    rig.shutdown.cancel();
}
