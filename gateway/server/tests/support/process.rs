//! The `portico` binary as a child process, and a raw MQTT 3.1.1 connection to it: for tests
//! that kill, restart or starve the broker.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico_mqtt::codec::{decode, encode};
use portico_mqtt::{Connect, Packet, PacketId, ProtocolVersion, Publish, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The broker binary running on a fixed port and data directory.
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
}

impl Broker {
    pub fn start(data_dir: &Path, port: u16, mode: &str) -> Broker {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(env!("CARGO_BIN_EXE_portico"))
            .arg("start")
            .env_clear()
            .env("PORTICO_LISTENERS__TCP__DEFAULT__BIND", addr.to_string())
            .env("PORTICO_LISTENERS__WS__DEFAULT__ENABLE", "false")
            .env("PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE", "false")
            .env("PORTICO_NODE__DATA_DIR", data_dir)
            .env("PORTICO_DURABLE_SESSIONS__MODE", mode)
            .env("PORTICO_LOG__CONSOLE__LEVEL", "warning")
            // Every message of the run fits in an offline queue: nothing is dropped by design.
            .env("PORTICO_MQTT__MAX_MQUEUE_LEN", "10000")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the portico binary starts");
        let broker = Broker { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "broker did not open {addr} in time");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    pub fn stop(mut self) {
        // SIGTERM, then wait for a clean exit.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// A raw MQTT 3.1.1 connection with a decode buffer.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub async fn open(addr: SocketAddr, client_id: &str, clean: bool) -> (Conn, bool) {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut conn = Conn {
            stream,
            buf: BytesMut::new(),
        };
        conn.send(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: clean,
            keep_alive: 60,
            client_id: ByteString::from(client_id.to_owned()),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })))
        .await
        .expect("send CONNECT");
        match conn.recv(Duration::from_secs(10)).await {
            Some(Packet::ConnAck(ack)) => {
                assert!(!ack.reason_code.is_error(), "CONNACK {ack:?}");
                (conn, ack.session_present)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, ProtocolVersion::V3_1_1, &mut out).expect("encodable");
        self.stream.write_all(&out).await
    }

    /// The next packet, or `None` on silence for `wait`, a closed connection or an error.
    pub async fn recv(&mut self, wait: Duration) -> Option<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.buf, ProtocolVersion::V3_1_1, u32::MAX).expect("valid packets") {
                return Some(packet);
            }
            match timeout(wait, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }
}

pub fn pid(n: u32) -> PacketId {
    PacketId::new((n % 65_535 + 1) as u16).expect("non-zero")
}

pub fn publish(topic: &str, payload: Bytes, qos: QoS, retain: bool, packet_id: PacketId) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from(topic.to_owned()),
        packet_id: Some(packet_id),
        payload,
        properties: Default::default(),
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

impl Drop for Broker {
    /// A failed test must not leave its broker running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Opens a persistent session for `client_id` subscribed to `filter` at `qos`, then leaves
/// it offline (DISCONNECT): the broker queues for it from here on.
pub async fn subscribe_offline(addr: SocketAddr, client_id: &str, filter: &'static str, qos: QoS) {
    let (mut conn, _) = Conn::open(addr, client_id, false).await;
    conn.send(&Packet::Subscribe(portico_mqtt::Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        filters: vec![(
            ByteString::from_static(filter),
            portico_mqtt::SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
        properties: Default::default(),
    }))
    .await
    .expect("SUBSCRIBE");
    assert!(matches!(
        conn.recv(Duration::from_secs(10)).await,
        Some(Packet::SubAck(_))
    ));
    conn.send(&Packet::Disconnect(Default::default()))
        .await
        .expect("DISCONNECT");
}

/// Runs `portico ctl --socket <socket> <args>` (off the runtime's threads: the server is
/// served by the same runtime).
pub async fn ctl(socket: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["ctl".to_owned(), "--socket".to_owned(), socket.display().to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    portico(all, Vec::new()).await
}

/// Runs the `portico` binary with `args` and `env` only: the test runner's own `PORTICO_*`
/// variables (the test services' `PORTICO_TEST_*` addresses, say) are not configuration keys.
pub async fn portico(args: Vec<String>, env: Vec<(String, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portico"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PORTICO_") {
                command.env_remove(key);
            }
        }
        command.args(&args).envs(env).output().expect("the portico binary runs")
    })
    .await
    .expect("command task")
}
