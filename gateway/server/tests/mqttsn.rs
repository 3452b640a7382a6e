//! The MQTT-SN gateway in the real server: UDP datagrams from a socket in the test, MQTT
//! clients on the same broker. Interop with a third-party MQTT-SN client lives in
//! `interop-tests/`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico::Server;
use portico::config::Config;
use portico_mqtt::{ProtocolVersion, QoS, ReasonCode};
use portico_mqttsn::packet::{Flags, Packet, ReturnCode, SnQoS, SubTopic, TopicField, TopicIdType};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

mod support;

use support::{Client, WAIT};

async fn start(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".to_owned(), "false".to_owned()),
        ("PORTICO_GATEWAY__MQTTSN__ENABLE".to_owned(), "true".to_owned()),
        (
            "PORTICO_GATEWAY__MQTTSN__LISTENERS__UDP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        support::data_dir_env(),
        support::no_dashboard(),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(None, env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

struct Sn {
    socket: UdpSocket,
}

impl Sn {
    async fn new(server: &Server) -> Sn {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let gateway: SocketAddr = support::addr(server, "mqttsn:udp:default");
        socket.connect(gateway).await.expect("connect");
        Sn { socket }
    }

    async fn send(&self, packet: &Packet) {
        let mut buf = BytesMut::new();
        portico_mqttsn::encode(packet, &mut buf).expect("encodes");
        self.socket.send(&buf).await.expect("send");
    }

    async fn recv(&self) -> Packet {
        let mut buf = vec![0u8; 65_536];
        let n = timeout(WAIT, self.socket.recv(&mut buf))
            .await
            .expect("an answer in time")
            .expect("recv");
        buf.truncate(n);
        portico_mqttsn::decode(Bytes::from(buf)).expect("a valid MQTT-SN message")
    }

    async fn connect(&self, id: &str) {
        self.send(&Packet::Connect {
            flags: Flags {
                clean_session: true,
                ..Flags::default()
            },
            protocol_id: 1,
            duration: 30,
            client_id: ByteString::from(id.to_owned()),
        })
        .await;
        assert_eq!(
            self.recv().await,
            Packet::ConnAck {
                code: ReturnCode::Accepted
            }
        );
    }
}

async fn mqtt(server: &Server, id: &str) -> Client {
    let stream = TcpStream::connect(support::addr(server, "tcp:default"))
        .await
        .expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    assert_eq!(client.connect(id, None).await, Some(ReasonCode::Success));
    client
}

#[tokio::test]
async fn mqtt_sn_and_mqtt_clients_exchange_messages() {
    let server = start(&[]).await;
    let sn = Sn::new(&server).await;
    sn.connect("sensor-1").await;

    // MQTT → MQTT-SN: the gateway registers the topic with the client first.
    sn.send(&Packet::Subscribe {
        flags: Flags {
            qos: SnQoS::AtLeastOnce,
            ..Flags::default()
        },
        msg_id: 1,
        topic: SubTopic::Name(ByteString::from_static("cmd/#")),
    })
    .await;
    assert!(matches!(
        sn.recv().await,
        Packet::SubAck {
            topic_id: 0,
            code: ReturnCode::Accepted,
            ..
        }
    ));
    let mut backend = mqtt(&server, "backend").await;
    backend.subscribe_with("data/#", QoS::AtLeastOnce).await;
    backend.publish("cmd/led", b"on").await;
    let Packet::Register {
        topic_id,
        msg_id,
        topic_name,
    } = sn.recv().await
    else {
        panic!("expected REGISTER")
    };
    assert_eq!(topic_name, "cmd/led");
    sn.send(&Packet::RegAck {
        topic_id,
        msg_id,
        code: ReturnCode::Accepted,
    })
    .await;
    let Packet::Publish { topic, data, .. } = sn.recv().await else {
        panic!("expected PUBLISH")
    };
    assert_eq!((topic.as_id(), &data[..]), (topic_id, &b"on"[..]));

    // MQTT-SN → MQTT, through an id the client registered.
    sn.send(&Packet::Register {
        topic_id: 0,
        msg_id: 2,
        topic_name: ByteString::from_static("data/t"),
    })
    .await;
    let Packet::RegAck { topic_id, .. } = sn.recv().await else {
        panic!("expected REGACK")
    };
    sn.send(&Packet::Publish {
        flags: Flags {
            qos: SnQoS::AtLeastOnce,
            topic_id_type: TopicIdType::Normal,
            ..Flags::default()
        },
        topic: TopicField::id(topic_id),
        msg_id: 3,
        data: Bytes::from_static(b"21.5"),
    })
    .await;
    assert!(matches!(
        sn.recv().await,
        Packet::PubAck {
            msg_id: 3,
            code: ReturnCode::Accepted,
            ..
        }
    ));
    let got = backend.expect_publish().await;
    assert_eq!((got.topic.as_ref(), &got.payload[..]), ("data/t", &b"21.5"[..]));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_mqtt_sn_clients() {
    let server = start(&[]).await;
    let sn = Sn::new(&server).await;
    sn.connect("bye").await;
    server.shutdown().await;
    assert_eq!(
        timeout(Duration::from_secs(5), sn.recv()).await.expect("in time"),
        Packet::Disconnect(None)
    );
}

#[tokio::test]
async fn a_sleeping_client_wakes_from_a_new_address() {
    let server = start(&[]).await;
    let before = Sn::new(&server).await;
    before.connect("behind-nat").await;
    before
        .send(&Packet::Subscribe {
            flags: Flags::default(),
            msg_id: 1,
            topic: SubTopic::Short(*b"nt"),
        })
        .await;
    assert!(matches!(before.recv().await, Packet::SubAck { .. }));
    before.send(&Packet::Disconnect(Some(60))).await;
    assert_eq!(before.recv().await, Packet::Disconnect(None));

    let mut backend = mqtt(&server, "backend").await;
    backend.publish("nt", b"while asleep").await;

    // The NAT gave the sensor a new port: its PINGREQ with its client id still wakes it.
    let after = Sn::new(&server).await;
    after
        .send(&Packet::PingReq(Some(ByteString::from_static("behind-nat"))))
        .await;
    let Packet::Publish { data, .. } = after.recv().await else {
        panic!("expected the message held while asleep")
    };
    assert_eq!(&data[..], b"while asleep");
    assert_eq!(after.recv().await, Packet::PingResp);
    server.shutdown().await;
}
