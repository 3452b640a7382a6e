//! The webhook against a real web service in the test: a client's connect, subscribe, publish,
//! unsubscribe and disconnect arrive as EMQX-shaped JSON bodies in order; topic rules narrow
//! message events; a web service that is down costs retries and then drops (counted) without
//! touching delivery; a full queue drops (counted) while publishes still reach subscribers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
use portico_mqtt::{Packet, PacketId, ProtocolVersion, QoS, Unsubscribe};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

mod support;

use support::{Client, WAIT};

/// The bodies the web service received, in arrival order.
#[derive(Default)]
struct Received {
    bodies: Mutex<Vec<Value>>,
    arrived: Notify,
}

impl Received {
    /// Waits until at least `n` bodies arrived; all of them.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let arrived = self.arrived.notified();
            {
                let bodies = self.bodies.lock().expect("lock");
                if bodies.len() >= n {
                    return bodies.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let bodies = self.bodies.lock().expect("lock");
                panic!("expected {n} webhook bodies, got {}: {bodies:#?}", bodies.len());
            }
        }
    }
}

/// A web service on 127.0.0.1:0 that records every POSTed JSON body, answering 200 after
/// `delay`.
async fn web_service(delay: Duration) -> (SocketAddr, Arc<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let received = Arc::new(Received::default());
    let shared = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let received = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let received = received.clone();
                    async move {
                        assert_eq!(req.method(), hyper::Method::POST);
                        assert_eq!(
                            req.headers().get("content-type").and_then(|v| v.to_str().ok()),
                            Some("application/json")
                        );
                        let token = req.headers().get("x-token").map(|v| v.as_bytes().to_vec());
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        let mut body: Value = serde_json::from_slice(&body).expect("JSON body");
                        if let Some(token) = token {
                            body["x-token (header)"] = Value::from(String::from_utf8_lossy(&token).into_owned());
                        }
                        tokio::time::sleep(delay).await;
                        received.bodies.lock().expect("lock").push(body);
                        received.arrived.notify_waiters();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// A server whose webhook POSTs to `url`, with more `webhook.*` settings as env overrides.
async fn start(url: String, more: &[(&str, &str)]) -> Server {
    let env: Vec<(String, String)> = [
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "PORTICO_LISTENERS__WS__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("PORTICO_DURABLE_SESSIONS__MODE".to_owned(), "memory".to_owned()),
        ("PORTICO_WEBHOOK__ENABLE".to_owned(), "true".to_owned()),
        ("PORTICO_WEBHOOK__URL".to_owned(), url),
    ]
    .into_iter()
    .chain(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    .chain([support::data_dir_env(), support::no_dashboard()])
    .collect();
    let config = Config::load(None, env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

async fn client(server: &Server) -> Client {
    let stream = TcpStream::connect(support::addr(server, "tcp:default"))
        .await
        .expect("connect");
    Client::new(Box::new(stream), ProtocolVersion::V5)
}

fn metric(server: &Server, name: &str) -> u64 {
    server
        .broker()
        .metrics_snapshot()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| v)
}

/// Waits until `metric(name)` reaches at least `value`.
async fn wait_metric(server: &Server, name: &str, value: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(server, name) < value {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed at {} (wanted {value})",
            metric(server, name)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_session_arrives_as_emqx_bodies_in_order() {
    let (web, received) = web_service(Duration::ZERO).await;
    let server = start(
        format!("http://{web}/hook"),
        &[("PORTICO_WEBHOOK__HEADERS__X-TOKEN", "s3cret")],
    )
    .await;
    let before = portico_core::message::now_millis();

    let mut c = client(&server).await;
    assert_eq!(
        c.connect("c1", Some("u1")).await,
        Some(portico_mqtt::ReasonCode::Success)
    );
    c.subscribe_with("t/#", QoS::AtLeastOnce).await;
    c.publish("t/1", b"hello").await;
    let echoed = c.expect_publish().await;
    assert_eq!(echoed.payload, Bytes::from_static(b"hello"));
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: PacketId::new(2).expect("non-zero"),
        filters: vec![ByteString::from_static("t/#")],
        user_properties: Default::default(),
    }))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::UnsubAck(_))));
    c.send(&Packet::Disconnect(Default::default())).await;
    assert!(c.recv().await.is_none(), "the server closes after DISCONNECT");

    let bodies = received.wait_for(11).await;
    let actions: Vec<&str> = bodies.iter().map(|b| b["action"].as_str().unwrap_or("?")).collect();
    assert_eq!(
        actions,
        [
            "client_connect",
            "client_connack",
            "client_connected",
            "client_subscribe",
            "session_subscribed",
            "message_publish",
            "message_delivered",
            "client_unsubscribe",
            "session_unsubscribed",
            "client_disconnected",
            "session_terminated",
        ],
        "bodies: {bodies:#?}"
    );
    let without_header = |mut body: Value| {
        assert_eq!(body["x-token (header)"], "s3cret", "configured headers are sent");
        body.as_object_mut().map(|o| o.remove("x-token (header)"));
        body
    };
    let bodies: Vec<Value> = bodies.into_iter().map(without_header).collect();

    let connect = json!({"action": "client_connect", "clientid": "c1", "username": "u1",
                         "ipaddress": "127.0.0.1", "keepalive": 60, "proto_ver": 5});
    assert_eq!(bodies[0], connect);
    let mut connack = connect.clone();
    connack["action"] = "client_connack".into();
    connack["conn_ack"] = "success".into();
    assert_eq!(bodies[1], connack);
    let connected_at = bodies[2]["connected_at"].as_u64().expect("connected_at in seconds");
    assert!(connected_at >= before / 1000 && connected_at <= before / 1000 + 60);
    let mut connected = connect.clone();
    connected["action"] = "client_connected".into();
    connected["connected_at"] = connected_at.into();
    assert_eq!(bodies[2], connected);
    assert_eq!(
        bodies[3],
        json!({"action": "client_subscribe", "clientid": "c1", "username": "u1", "topic": "t/#", "opts": {"qos": 1}})
    );
    assert_eq!(
        bodies[4],
        json!({"action": "session_subscribed", "clientid": "c1", "username": "u1", "topic": "t/#", "opts": {"qos": 1}})
    );
    let ts = bodies[5]["ts"].as_u64().expect("ts in ms");
    assert!(ts >= before);
    assert_eq!(
        bodies[5],
        json!({"action": "message_publish", "from_client_id": "c1", "from_username": "u1", "topic": "t/1",
               "qos": 0, "retain": false, "payload": "hello", "ts": ts})
    );
    assert_eq!(
        bodies[6],
        json!({"action": "message_delivered", "clientid": "c1", "username": "u1", "from_client_id": "c1",
               "from_username": "u1", "topic": "t/1", "qos": 0, "retain": false, "payload": "hello", "ts": ts})
    );
    assert_eq!(
        bodies[7],
        json!({"action": "client_unsubscribe", "clientid": "c1", "username": "u1", "topic": "t/#"})
    );
    assert_eq!(
        bodies[8],
        json!({"action": "session_unsubscribed", "clientid": "c1", "username": "u1", "topic": "t/#"})
    );
    assert_eq!(
        bodies[9],
        json!({"action": "client_disconnected", "clientid": "c1", "username": "u1", "reason": "normal"})
    );
    assert_eq!(
        bodies[10],
        json!({"action": "session_terminated", "clientid": "c1", "username": "u1", "reason": "normal"})
    );
    wait_metric(&server, "webhook.requests.success", 11).await;
    assert_eq!(metric(&server, "webhook.requests.dropped"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn topic_rules_forward_only_matching_messages() {
    let (web, received) = web_service(Duration::ZERO).await;
    let server = start(
        format!("http://{web}/"),
        &[
            ("PORTICO_WEBHOOK__RULES__1__EVENT", "message.publish"),
            ("PORTICO_WEBHOOK__RULES__1__TOPIC", "a/#"),
            ("PORTICO_WEBHOOK__RULES__2__EVENT", "message.publish"),
            ("PORTICO_WEBHOOK__RULES__2__TOPIC", "x/+/z"),
            ("PORTICO_WEBHOOK__ENCODE_PAYLOAD", "base64"),
        ],
    )
    .await;
    let mut c = client(&server).await;
    c.connect("p1", None).await;
    for topic in ["b/1", "a/1", "x/y/z", "fo/bar", "x/y/w", "a"] {
        c.publish(topic, b"hi").await;
    }
    // One client's events arrive in order: anything forwarded wrongly would come first.
    let bodies = received.wait_for(3).await;
    let topics: Vec<&str> = bodies.iter().map(|b| b["topic"].as_str().unwrap_or("?")).collect();
    assert_eq!(topics, ["a/1", "x/y/z", "a"]);
    assert!(
        bodies
            .iter()
            .all(|b| b["action"] == "message_publish" && b["payload"] == "aGk=")
    );
    assert!(bodies.iter().all(|b| b["from_username"] == "undefined"));
}

#[tokio::test]
async fn a_receiver_that_is_down_costs_retries_then_a_counted_drop() {
    // A port with nothing listening.
    let down = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let down_addr = down.local_addr().expect("address");
    drop(down);
    let server = start(
        format!("http://{down_addr}/"),
        &[
            ("PORTICO_WEBHOOK__MAX_RETRIES", "2"),
            ("PORTICO_WEBHOOK__RULES__1__EVENT", "message.publish"),
        ],
    )
    .await;
    let mut sub = client(&server).await;
    sub.connect("sub", None).await;
    sub.subscribe("d/#").await;
    let mut publisher = client(&server).await;
    publisher.connect("pub", None).await;
    publisher.publish("d/1", b"still delivered").await;
    let delivered = tokio::time::timeout(WAIT, sub.expect_publish())
        .await
        .expect("delivered");
    assert_eq!(delivered.payload, Bytes::from_static(b"still delivered"));

    wait_metric(&server, "webhook.requests.dropped.retries_exhausted", 1).await;
    assert_eq!(
        metric(&server, "webhook.requests.failed"),
        3,
        "one attempt and two retries"
    );
    assert_eq!(metric(&server, "webhook.requests.retried"), 2);
    assert_eq!(metric(&server, "webhook.requests.dropped"), 1);
    assert_eq!(metric(&server, "webhook.requests.success"), 0);
    assert_eq!(metric(&server, "webhook.queue.depth"), 0);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_while_publishes_flow() {
    let (web, received) = web_service(Duration::from_secs(1)).await;
    let server = start(
        format!("http://{web}/"),
        &[
            ("PORTICO_WEBHOOK__POOL_SIZE", "1"),
            ("PORTICO_WEBHOOK__QUEUE_CAPACITY", "2"),
            ("PORTICO_WEBHOOK__RULES__1__EVENT", "message.publish"),
        ],
    )
    .await;
    let mut sub = client(&server).await;
    sub.connect("sub", None).await;
    sub.subscribe("q/#").await;
    let mut publisher = client(&server).await;
    publisher.connect("pub", None).await;
    let started = tokio::time::Instant::now();
    for _ in 0..20 {
        publisher.publish("q/1", b"m").await;
    }
    for _ in 0..20 {
        let delivered = tokio::time::timeout(WAIT, sub.expect_publish())
            .await
            .expect("delivered");
        assert_eq!(delivered.payload, Bytes::from_static(b"m"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "delivery did not wait for the slow web service ({:?})",
        started.elapsed()
    );
    // One in flight and two queued at most: the other 17 (or more) are dropped.
    wait_metric(&server, "webhook.requests.dropped.queue_full", 17).await;
    let dropped = metric(&server, "webhook.requests.dropped.queue_full");
    assert!(dropped <= 18, "dropped {dropped}");
    let forwarded = 20 - dropped as usize;
    received.wait_for(forwarded).await;
    wait_metric(&server, "webhook.requests.success", forwarded as u64).await;
}
