//! The STOMP gateway in the real server over TCP: frames written by hand from a socket in the
//! test, MQTT clients on the same broker. Interop with third-party STOMP clients lives in
//! `interop-tests/`.

use bytes::BytesMut;
use portico::Server;
use portico::config::Config;
use portico_core::channel::Codec;
use portico_mqtt::{ProtocolVersion, QoS, ReasonCode};
use portico_stomp::{Command, Frame, Limits, StompCodec, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

mod support;

use support::{Client, WAIT};

async fn start() -> Server {
    start_on(support::data_dir_env()).await
}

/// A server keeping its durable store in `data_dir` (a `PORTICO_NODE__DATA_DIR` entry).
async fn start_on(data_dir: (String, String)) -> Server {
    let env = vec![
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".to_owned(), "false".to_owned()),
        ("PORTICO_GATEWAY__STOMP__ENABLE".to_owned(), "true".to_owned()),
        (
            "PORTICO_GATEWAY__STOMP__LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "PORTICO_GATEWAY__STOMP__LISTENERS__WS__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        data_dir,
        support::no_dashboard(),
    ];
    let config = Config::load(None, env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

/// A STOMP client: raw frames out, frames decoded by our codec in.
struct Stomp {
    stream: TcpStream,
    buf: BytesMut,
    codec: StompCodec,
}

impl Stomp {
    async fn connect(server: &Server) -> Stomp {
        Stomp::connect_with(server, "").await
    }

    /// Connects with `headers` (lines ending in `\n`) added to the CONNECT frame.
    async fn connect_with(server: &Server, headers: &str) -> Stomp {
        let stream = TcpStream::connect(support::addr(server, "stomp:tcp:default"))
            .await
            .expect("connect");
        let mut stomp = Stomp {
            stream,
            buf: BytesMut::new(),
            codec: StompCodec::with_version(Limits::default(), Version::V1_2),
        };
        stomp
            .send(&format!("CONNECT\naccept-version:1.2\nhost:portico\n{headers}\n\0"))
            .await;
        let connected = stomp.recv().await.expect("CONNECTED");
        assert_eq!(connected.command, Command::Connected, "{connected:?}");
        assert_eq!(connected.header("version"), Some("1.2"));
        stomp
    }

    async fn send(&mut self, wire: &str) {
        self.stream.write_all(wire.as_bytes()).await.expect("write");
    }

    /// The next frame other than a heart-beat; `None` once the server closed.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            match self.codec.decode(&mut self.buf).expect("valid frames") {
                Some(frame) if frame.command == Command::HeartBeat => continue,
                Some(frame) => return Some(frame),
                None => {}
            }
            let n = timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("server answers in time")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    async fn expect(&mut self, command: Command) -> Frame {
        let frame = self
            .recv()
            .await
            .unwrap_or_else(|| panic!("expected {command:?}, got a close"));
        assert_eq!(frame.command, command, "{frame:?}");
        frame
    }
}

async fn mqtt(server: &Server, id: &str, version: ProtocolVersion) -> Client {
    let stream = TcpStream::connect(support::addr(server, "tcp:default"))
        .await
        .expect("connect");
    let mut client = Client::new(Box::new(stream), version);
    assert_eq!(client.connect(id, None).await, Some(ReasonCode::Success));
    client
}

#[tokio::test]
async fn stomp_send_reaches_an_mqtt_subscriber_with_user_properties() {
    let server = start().await;
    let mut backend = mqtt(&server, "backend", ProtocolVersion::V5).await;
    backend.subscribe_with("orders/#", QoS::AtLeastOnce).await;
    let mut web = Stomp::connect(&server).await;
    web.send("SEND\ndestination:orders/42\ncontent-type:application/json\nx-tenant:acme\nreceipt:r1\n\n{\"qty\":1}\0")
        .await;
    let receipt = web.expect(Command::Receipt).await;
    assert_eq!(receipt.header("receipt-id"), Some("r1"));
    let publish = backend.expect_publish().await;
    assert_eq!(&*publish.topic, "orders/42");
    assert_eq!(&publish.payload[..], b"{\"qty\":1}");
    assert_eq!(publish.properties.content_type.as_deref(), Some("application/json"));
    let props: Vec<(&str, &str)> = publish
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (&**k, &**v))
        .collect();
    assert_eq!(props, [("x-tenant", "acme")]);
}

#[tokio::test]
async fn mqtt_publish_reaches_a_stomp_wildcard_subscription() {
    let server = start().await;
    let mut web = Stomp::connect(&server).await;
    web.send("SUBSCRIBE\nid:s1\ndestination:sensors/+/temp\nreceipt:sub\n\n\0")
        .await;
    web.expect(Command::Receipt).await;
    let mut device = mqtt(&server, "device", ProtocolVersion::V3_1_1).await;
    device.publish("sensors/7/temp", b"21.5").await;
    let message = web.expect(Command::Message).await;
    assert_eq!(message.header("subscription"), Some("s1"));
    assert_eq!(message.header("destination"), Some("sensors/7/temp"));
    assert_eq!(&message.body[..], b"21.5");
}

#[tokio::test]
async fn client_ack_nack_redelivers() {
    let server = start().await;
    let mut worker = Stomp::connect(&server).await;
    worker
        .send("SUBSCRIBE\nid:0\ndestination:jobs/#\nack:client-individual\nreceipt:s\n\n\0")
        .await;
    worker.expect(Command::Receipt).await;
    let mut producer = mqtt(&server, "producer", ProtocolVersion::V3_1_1).await;
    producer.publish("jobs/1", b"resize").await;
    let first = worker.expect(Command::Message).await;
    let ack = first
        .header("ack")
        .expect("client-individual MESSAGEs carry ack")
        .to_owned();
    worker.send(&format!("NACK\nid:{ack}\n\n\0")).await;
    let again = worker.expect(Command::Message).await;
    assert_eq!(&again.body[..], b"resize");
    assert_eq!(again.header("redelivered"), Some("true"));
    let ack = again.header("ack").expect("ack").to_owned();
    worker.send(&format!("ACK\nid:{ack}\nreceipt:done\n\n\0")).await;
    let receipt = worker.expect(Command::Receipt).await;
    assert_eq!(receipt.header("receipt-id"), Some("done"));
    worker.send("DISCONNECT\nreceipt:bye\n\n\0").await;
    assert_eq!(worker.expect(Command::Receipt).await.header("receipt-id"), Some("bye"));
    assert!(worker.recv().await.is_none(), "closed after DISCONNECT");
}

/// A durable subscriber (`client-id`) keeps its subscription and its un-ACKed message across
/// a server restart, and gets what was published while it was away.
#[tokio::test]
async fn a_durable_subscriber_loses_nothing_across_a_restart() {
    let data_dir = support::data_dir_env();
    let server = start_on(data_dir.clone()).await;
    let mut worker = Stomp::connect_with(&server, "client-id:durable-worker\n").await;
    worker
        .send("SUBSCRIBE\nid:w\ndestination:jobs/+\nack:client-individual\nreceipt:s\n\n\0")
        .await;
    worker.expect(Command::Receipt).await;
    let mut producer = mqtt(&server, "producer", ProtocolVersion::V3_1_1).await;
    producer.publish_acked("jobs/1", b"unacked", 1).await;
    let first = worker.expect(Command::Message).await;
    assert_eq!(&first.body[..], b"unacked");
    drop(worker);
    drop(producer);
    server.shutdown().await;

    let server = start_on(data_dir).await;
    let mut producer = mqtt(&server, "producer", ProtocolVersion::V3_1_1).await;
    producer.publish_acked("jobs/2", b"while away", 1).await;
    let mut worker = Stomp::connect_with(&server, "client-id:durable-worker\n").await;
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let message = worker.expect(Command::Message).await;
        assert_eq!(message.header("subscription"), Some("w"));
        let ack = message.header("ack").expect("client-individual").to_owned();
        worker.send(&format!("ACK\nid:{ack}\n\n\0")).await;
        bodies.push(String::from_utf8_lossy(&message.body).into_owned());
    }
    assert_eq!(bodies, ["unacked", "while away"]);
    // Declaring the subscription again, as clients do, is no error.
    worker
        .send("SUBSCRIBE\nid:w\ndestination:jobs/+\nack:client-individual\nreceipt:again\n\n\0")
        .await;
    assert_eq!(
        worker.expect(Command::Receipt).await.header("receipt-id"),
        Some("again")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_frames_get_an_error_then_a_close() {
    let server = start().await;
    // Before CONNECT.
    let stream = TcpStream::connect(support::addr(&server, "stomp:tcp:default"))
        .await
        .expect("connect");
    let mut early = Stomp {
        stream,
        buf: BytesMut::new(),
        codec: StompCodec::new(Limits::default()),
    };
    early.send("SEND\ndestination:a\n\nx\0").await;
    let error = early.expect(Command::Error).await;
    assert_eq!(error.header("message"), Some("Not connected"));
    assert!(early.recv().await.is_none());
    // A body over frame.max_body_length.
    let mut client = Stomp::connect(&server).await;
    client.send("SEND\ndestination:a\ncontent-length:70000\n\n").await;
    let error = client.expect(Command::Error).await;
    assert!(String::from_utf8_lossy(&error.body).contains("max_body_length"));
    assert!(client.recv().await.is_none());
}

/// STOMP over WebSocket as a browser speaks it: subprotocols offered, frames sent as text
/// messages; the gateway's answers come as binary messages holding whole frames or parts.
#[tokio::test]
async fn stomp_over_websocket_with_text_frames() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let server = start().await;
    let addr = support::addr(&server, "stomp:ws:default");
    let mut request = format!("ws://{addr}/stomp").into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("v10.stomp, v11.stomp, v12.stomp"),
    );
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream).await.expect("upgrade");
    // The first offered that the listener supports (EMQX's rule); the version itself is
    // negotiated by CONNECT's accept-version, as stomp.js expects.
    assert_eq!(response.headers()["sec-websocket-protocol"], "v10.stomp");
    let mut device = mqtt(&server, "device", ProtocolVersion::V3_1_1).await;

    let mut codec = StompCodec::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut next = async |ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>| loop {
        if let Some(frame) = codec.decode(&mut buf).expect("valid frames")
            && frame.command != Command::HeartBeat
        {
            return frame;
        }
        match timeout(WAIT, ws.next()).await.expect("in time") {
            Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
            other => panic!("expected a binary message, got {other:?}"),
        }
    };
    let text = |s: &str| Message::Text(s.into());
    ws.send(text("CONNECT\naccept-version:1.1,1.2\nhost:portico\n\n\0"))
        .await
        .expect("send");
    let connected = next(&mut ws).await;
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    assert_eq!(connected.header("version"), Some("1.2"));
    ws.send(text("SUBSCRIBE\nid:s\ndestination:room/+\nreceipt:r\n\n\0"))
        .await
        .expect("send");
    assert_eq!(next(&mut ws).await.command, Command::Receipt);
    device.publish("room/1", b"hello").await;
    let message = next(&mut ws).await;
    assert_eq!(message.command, Command::Message);
    assert_eq!(&message.body[..], b"hello");
    // Two frames in one text message, as some clients batch them.
    ws.send(text(
        "SEND\ndestination:room/2\n\nhi\0SEND\ndestination:room/3\nreceipt:x\n\nyo\0",
    ))
    .await
    .expect("send");
    let bodies: Vec<_> = [next(&mut ws).await, next(&mut ws).await, next(&mut ws).await]
        .into_iter()
        .map(|f| (f.command, f.body))
        .collect();
    assert!(
        bodies.contains(&(Command::Message, b"hi".to_vec().into())),
        "{bodies:?}"
    );
    assert!(bodies.contains(&(Command::Receipt, Default::default())), "{bodies:?}");
}
