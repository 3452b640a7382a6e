//! The broker with HTTP authentication and authorization against a web service in the test: a
//! client whose CONNECT waits for a slow answer blocks nobody else, wrong passwords are refused
//! and an HTTP denial reaches the client as MQTT 5 reason code 0x87.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use portico::Server;
use portico::config::Config;
use portico_mqtt::{Connect, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

mod support;

use support::Client;

/// How long the web service takes for the user `slow`.
const SLOW: Duration = Duration::from_millis(300);

/// What the web service has seen, for ordering checks.
#[derive(Default)]
struct Events {
    /// The slow CONNECT's request has arrived.
    slow_asked: Notify,
    /// The slow answer has been sent.
    slow_answered: AtomicBool,
}

/// Authentication: password `secret` allowed (user `slow` after [`SLOW`]), anything else 401.
/// Authorization: topics under `denied/` denied, others allowed.
async fn web_service(events: Arc<Events>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let events = events.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let events = events.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        let body: Value = serde_json::from_slice(&body).expect("JSON body");
                        let field = |k: &str| body[k].as_str().unwrap_or("").to_owned();
                        let (status, reply) = match path.as_str() {
                            "/auth" if field("password") != "secret" => (401, ""),
                            "/auth" if field("username") == "slow" => {
                                events.slow_asked.notify_one();
                                tokio::time::sleep(SLOW).await;
                                events.slow_answered.store(true, Ordering::SeqCst);
                                (200, r#"{"result": "allow"}"#)
                            }
                            "/auth" => (200, r#"{"result": "allow"}"#),
                            "/acl" if field("topic").starts_with("denied/") => (200, r#"{"result": "deny"}"#),
                            "/acl" => (204, ""),
                            _ => (404, ""),
                        };
                        let mut response = Response::new(Full::new(Bytes::from_static(reply.as_bytes())));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn start(web: SocketAddr) -> Server {
    let env: Vec<(String, String)> = [
        ("PORTICO_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0".to_owned()),
        ("PORTICO_LISTENERS__WS__DEFAULT__BIND", "127.0.0.1:0".to_owned()),
        ("PORTICO_MQTT__ALLOW_ANONYMOUS", "false".to_owned()),
        ("PORTICO_AUTHENTICATION__1__MECHANISM", "password_based".to_owned()),
        ("PORTICO_AUTHENTICATION__1__BACKEND", "http".to_owned()),
        ("PORTICO_AUTHENTICATION__1__URL", format!("http://{web}/auth")),
        ("PORTICO_AUTHORIZATION__NO_MATCH", "deny".to_owned()),
        ("PORTICO_AUTHORIZATION__SOURCES__1__TYPE", "http".to_owned()),
        ("PORTICO_AUTHORIZATION__SOURCES__1__URL", format!("http://{web}/acl")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain([support::data_dir_env(), support::no_dashboard()])
    .collect();
    let config = Config::load(None, env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

async fn client(server: &Server) -> Client {
    let stream = TcpStream::connect(server.listeners()[0].1).await.expect("connect");
    Client::new(Box::new(stream), ProtocolVersion::V5)
}

fn connect(id: &str, username: &str, password: &'static [u8]) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: ByteString::from(id.to_owned()),
        will: None,
        username: Some(ByteString::from(username.to_owned())),
        password: Some(Bytes::from_static(password)),
        properties: Default::default(),
    }))
}

async fn connack(client: &mut Client) -> ReasonCode {
    match client.recv().await {
        Some(Packet::ConnAck(ack)) => ack.reason_code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_authentication_blocks_nobody_else() {
    let events = Arc::new(Events::default());
    let server = start(web_service(events.clone()).await).await;

    let mut other = client(&server).await;
    other.send(&connect("other", "fast", b"secret")).await;
    assert_eq!(connack(&mut other).await, ReasonCode::Success);
    other.subscribe("t/1").await;

    let mut slow = client(&server).await;
    slow.send(&connect("slow", "slow", b"secret")).await;
    tokio::time::timeout(Duration::from_secs(5), events.slow_asked.notified())
        .await
        .expect("the slow CONNECT reached the web service");

    // While the slow answer is outstanding, the other client's publish goes round (its
    // authorization is an HTTP request too) and comes back.
    other.publish("t/1", b"ping").await;
    assert_eq!(&other.expect_publish().await.payload[..], b"ping");
    assert!(
        !events.slow_answered.load(Ordering::SeqCst),
        "the round trip finished while the slow CONNECT was still waiting"
    );

    assert_eq!(connack(&mut slow).await, ReasonCode::Success);
    assert!(events.slow_answered.load(Ordering::SeqCst));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_denied_topics() {
    let server = start(web_service(Arc::new(Events::default())).await).await;

    let mut wrong = client(&server).await;
    wrong.send(&connect("wrong", "alice", b"guess")).await;
    assert_eq!(connack(&mut wrong).await, ReasonCode::NotAuthorized, "4xx = deny");

    let mut alice = client(&server).await;
    alice.send(&connect("alice", "alice", b"secret")).await;
    assert_eq!(connack(&mut alice).await, ReasonCode::Success);
    for (id, topic, expected) in [
        (1, "denied/x", ReasonCode::NotAuthorized),
        (2, "open/x", ReasonCode::NoMatchingSubscribers),
    ] {
        alice
            .send(&Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: ByteString::from_static(topic),
                packet_id: PacketId::new(id),
                payload: Bytes::from_static(b"x"),
                properties: Default::default(),
            }))
            .await;
        match alice.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.reason_code, expected, "{topic}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    server.shutdown().await;
}
