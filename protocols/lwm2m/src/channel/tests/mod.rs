//! Sans-I/O LwM2M channel tests: a real broker, a fake clock, a small LwM2M device (objects 3
//! and 3303) on the CoAP codec, and an MQTT application session. This file holds the harness
//! and the protocol tests; `registrations` the kept registrations (store, rebuild, takeover,
//! limits, PSK binding, the command subscription's authorization).

mod admin;
mod registrations;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use portico_coap::message::Token;
use portico_core::channel::Output;
use portico_core::session::SubOptions;
use portico_core::topic::SubscriptionTopic;
use portico_core::{BrokerConfig, QoS};

use super::*;
use crate::registry::Registry;
use crate::tlv;
use crate::value::{Item, Value};

fn registry() -> Arc<Registry> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../lwm2m-xml");
    Arc::new(Registry::load_dir(dir).expect("the bundled definitions load"))
}

struct Harness {
    broker: Broker,
    frontend: Lwm2mFrontend,
    app: Arc<Session>,
    app_conn: Arc<ConnHandle>,
    app_ctx: Ctx,
    t0: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Lwm2mSettings {
            registry: registry(),
            ..Lwm2mSettings::default()
        })
    }

    fn with(settings: Lwm2mSettings) -> Harness {
        Harness::on(Broker::new(BrokerConfig::default()), settings)
    }

    /// A harness on `broker` (one with a store, say).
    fn on(broker: Broker, settings: Lwm2mSettings) -> Harness {
        let frontend = Lwm2mFrontend::new(&broker, settings);
        let app_ctx = broker.ctx(FrontendInfo {
            name: "mqtt",
            mountpoint: ByteString::new(),
            authn: portico_core::auth::ListenerAuthn::Enabled,
        });
        let app_conn = broker.register_connection();
        let app = app_ctx
            .open_session(&ByteString::from("app"), true, 0, &app_conn, None)
            .session;
        let filter = SubscriptionTopic::parse(ByteString::from("lwm2m/+/up/#")).expect("filter");
        let options = SubOptions {
            qos: QoS::AtMostOnce,
            no_local: false,
            retain_as_published: false,
            subscription_id: 0,
        };
        app_ctx.subscribe(&app, filter, options, portico_core::broker::RetainedOnSubscribe::Send);
        Harness {
            broker,
            frontend,
            app,
            app_conn,
            app_ctx,
            t0: Instant::now(),
        }
    }

    fn device(&self, port: u16) -> Device {
        self.device_with(port, None)
    }

    /// A device on a connection that proved `psk_identity` (DTLS PSK).
    fn device_with(&self, port: u16, psk_identity: Option<&str>) -> Device {
        let conn = self.broker.register_connection();
        let mut info = ConnInfo::new(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 5783)),
        );
        info.psk_identity = psk_identity.map(Arc::from);
        Device {
            channel: self.frontend.new_peer(conn.clone(), info, self.t0),
            conn,
            next_id: 100,
        }
    }

    /// What the application received: (topic, JSON).
    fn received(&self) -> Vec<(String, Json)> {
        portico_core::wake::flush();
        let _ = self.app_conn.take_deliver();
        let mut state = self.app.lock();
        let mut got = Vec::new();
        while let Some(d) = state.dequeue() {
            state.record_sent(&d, None);
            let json = serde_json::from_slice(&d.message.payload).expect("uplinks are JSON");
            got.push((d.message.topic.as_str().to_owned(), json));
        }
        got
    }

    fn command(&self, topic: &str, json: Json, expiry: Option<u32>) {
        let mut m = MqttMessage::new(
            0,
            TopicName::new(ByteString::from(topic.to_owned())).expect("topic"),
            Bytes::from(json.to_string()),
            QoS::AtMostOnce,
            false,
            Origin {
                client_id: ByteString::from("app"),
                protocol: "mqtt",
            },
        );
        m.properties.message_expiry_interval = expiry;
        self.app_ctx.publish(m, self.t0).expect("published");
    }

    /// A queue-mode device registered as `ep` on port 1, asleep 30 s later with a read of
    /// /3/0/0 (`reqID` 1, `expiry` seconds) held for it; that later time.
    fn asleep_with_a_held_read(&self, ep: &str, expiry: Option<u32>) -> (Device, Instant) {
        let mut d = self.registered(1, ep, &["b=UQ"]);
        let later = self.t0 + Duration::from_secs(30);
        self.command(
            &format!("lwm2m/{ep}/dn/a"),
            serde_json::json!({"reqID": 1, "msgType": "read", "data": {"path": "/3/0/0"}}),
            expiry,
        );
        assert!(d.deliver(later).is_empty(), "held: the device sleeps");
        (d, later)
    }

    /// A device registered as `ep` (objects 3 and 3303), its register event consumed.
    fn registered(&self, port: u16, ep: &str, extra: &[&str]) -> Device {
        let mut d = self.device(port);
        let mut query = vec![format!("ep={ep}"), "lt=60".to_owned(), "lwm2m=1.0".to_owned()];
        query.extend(extra.iter().map(|s| (*s).to_owned()));
        let q: Vec<&str> = query.iter().map(String::as_str).collect();
        let reg = d.request(Code::POST, &["rd"], &q, b"</>;rt=\"oma.lwm2m\",</3/0>,</3303/0>");
        let response = d.ask(&reg, self.t0);
        assert_eq!(response.code, Code::CREATED, "{response:?}");
        let got = self.received();
        assert_eq!(got.len(), 1, "{got:?}");
        d
    }
}

#[derive(Debug, PartialEq)]
enum Sent {
    M(Message),
    Close,
}

struct Device {
    channel: Lwm2mChannel,
    conn: Arc<ConnHandle>,
    next_id: u16,
}

impl Device {
    fn request(&mut self, code: Code, path: &[&str], query: &[&str], payload: &[u8]) -> Message {
        self.next_id += 1;
        let mut m = Message::new(Type::Con, code, self.next_id);
        m.token = Token::from_u64(u64::from(self.next_id));
        for segment in path {
            m.options.push_uri_path(segment);
        }
        for q in query {
            m.options.push_uri_query(q);
        }
        m.with_payload(Bytes::copy_from_slice(payload))
    }

    fn collect(&self, out: &mut Out) -> Vec<Sent> {
        portico_core::wake::flush();
        out.drain()
            .map(|o| match o {
                Output::Send(m) => {
                    let mut buf = BytesMut::new();
                    self.channel.encode(&m, &mut buf).expect("encodes");
                    Sent::M(codec::decode(buf.freeze()).expect("decodes"))
                }
                Output::Close(_) => Sent::Close,
            })
            .collect()
    }

    fn send(&mut self, message: &Message, now: Instant) -> Vec<Sent> {
        let mut buf = BytesMut::new();
        codec::encode(message, &mut buf).expect("encodes");
        let mut out = Outbox::new();
        self.channel.handle_datagram(buf.freeze(), now, &mut out);
        self.collect(&mut out)
    }

    fn ask(&mut self, message: &Message, now: Instant) -> Message {
        let sent = self.send(message, now);
        let [Sent::M(response), ..] = &sent[..] else {
            panic!("expected a response, got {sent:?}")
        };
        response.clone()
    }

    fn deliver(&mut self, now: Instant) -> Vec<Sent> {
        portico_core::wake::flush();
        let mut out = Outbox::new();
        if self.conn.take_deliver() {
            self.channel.handle_deliver(now, &mut out);
        }
        self.collect(&mut out)
    }

    /// The one request the gateway sent.
    fn one_request(&mut self, now: Instant) -> Message {
        let sent = self.deliver(now);
        let [Sent::M(request)] = &sent[..] else {
            panic!("expected one request, got {sent:?}")
        };
        assert_eq!(request.mtype, Type::Con);
        assert!(!request.token.is_empty(), "a non-empty token");
        request.clone()
    }

    fn timeout(&mut self, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        self.channel.handle_timeout(now, &mut out);
        self.collect(&mut out)
    }
}

fn path_of(m: &Message) -> String {
    m.options
        .uri_path()
        .map(|s| format!("/{}", s.expect("utf-8")))
        .collect()
}

fn piggybacked(request: &Message, code: Code, format: Option<u16>, payload: Vec<u8>) -> Message {
    let mut r = Message::response_to(request, code, 0);
    if let Some(f) = format {
        r.options.set_content_format(f);
    }
    r.with_payload(payload)
}

/// The device's TLV for /3/0/0 (Manufacturer) and /3303/0/5700 (Sensor Value).
fn tlv_of(items: &[(&str, Value)], target: &str) -> Vec<u8> {
    let items: Vec<Item> = items
        .iter()
        .map(|(p, v)| Item::new(Path::parse(p).expect("path"), v.clone()))
        .collect();
    tlv::encode_items(&Path::parse(target).expect("path"), &items).expect("encodes")
}

use crate::path::Path;

#[test]
fn register_publishes_the_event_and_answers_2_01_with_the_location() {
    let h = Harness::new();
    let mut d = h.device(1);
    let reg = d.request(
        Code::POST,
        &["rd"],
        &["ep=dev1", "lt=345", "lwm2m=1.0", "b=U", "password=secret"],
        b"</lwm2m>;rt=\"oma.lwm2m\",</lwm2m/3/0>,</lwm2m/3303/0>",
    );
    let response = d.ask(&reg, h.t0);
    assert_eq!((response.mtype, response.code), (Type::Ack, Code::CREATED));
    let location: Vec<_> = response.options.location_path().map(|s| s.expect("utf-8")).collect();
    assert_eq!(location, ["rd", "dev1"]);
    let got = h.received();
    assert_eq!(got[0].0, "lwm2m/dev1/up/resp");
    let data = &got[0].1["data"];
    assert_eq!(got[0].1["msgType"], "register");
    assert_eq!(data["lt"], 345);
    assert_eq!(data["ep"], "dev1");
    assert_eq!(data["alternatePath"], "/lwm2m");
    assert_eq!(data["objectList"], serde_json::json!(["/3/0", "/3303/0"]));
    assert!(data.get("password").is_none(), "sensitive keys removed");
}

#[test]
fn bad_registrations_get_4_00() {
    let h = Harness::new();
    let mut d = h.device(1);
    for (query, payload) in [
        (&["lt=60", "lwm2m=1.0"][..], &b"</3/0>"[..]),
        (&["ep=x", "lwm2m=1.0"][..], b"</3/0>"),
        (&["ep=x", "lt=60", "lwm2m=1.0.2"][..], b"</3/0>"),
        (&["ep=x", "lt=60", "lwm2m=1.1"][..], b"</3/0>,<bad"),
        // The Lifetime resource is 32 bits; a longer one once overflowed the deadline.
        (&["ep=x", "lt=4294967296", "lwm2m=1.1"][..], b"</3/0>"),
        (&["ep=x", "lt=9223372036854775807", "lwm2m=1.1"][..], b"</3/0>"),
    ] {
        let r = d.request(Code::POST, &["rd"], query, payload);
        assert_eq!(d.ask(&r, h.t0).code, Code::BAD_REQUEST, "{query:?}");
    }
    assert!(h.received().is_empty());
}

#[test]
fn read_goes_down_as_get_and_the_tlv_reply_comes_up_typed() {
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    h.command(
        "lwm2m/dev1/dn/cmd",
        serde_json::json!({"reqID": 7, "msgType": "read", "data": {"path": "/3/0/0"}}),
        None,
    );
    let get = d.one_request(h.t0);
    assert_eq!((get.code, path_of(&get)), (Code::GET, "/3/0/0".to_owned()));
    let payload = tlv_of(&[("/3/0/0", Value::String("EMQ".into()))], "/3/0/0");
    d.send(&piggybacked(&get, Code::CONTENT, Some(11542), payload), h.t0);
    let got = h.received();
    assert_eq!(got[0].0, "lwm2m/dev1/up/resp");
    assert_eq!(
        got[0].1,
        serde_json::json!({"reqID": 7, "msgType": "read", "data": {
            "reqPath": "/3/0/0", "code": "2.05", "codeMsg": "content",
            "content": [{"path": "/3/0/0", "value": "EMQ"}]}})
    );
    // An object instance read of 3303 with a float.
    h.command(
        "lwm2m/dev1/dn/cmd",
        serde_json::json!({"msgType": "read", "data": {"path": "/3303/0"}}),
        None,
    );
    let get = d.one_request(h.t0);
    let payload = tlv_of(&[("/3303/0/5700", Value::Float(21.5))], "/3303/0");
    d.send(&piggybacked(&get, Code::CONTENT, Some(11542), payload), h.t0);
    let got = h.received();
    assert_eq!(
        got[0].1["data"]["content"],
        serde_json::json!([{"path": "/3303/0/5700", "value": 21.5}])
    );
}

#[test]
fn write_execute_and_one_request_at_a_time() {
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    h.command(
        "lwm2m/dev1/dn/a",
        serde_json::json!({"reqID": 1, "msgType": "write", "data": {"path": "/3/0/13", "type": "Time", "value": 200}}),
        None,
    );
    h.command(
        "lwm2m/dev1/dn/a",
        serde_json::json!({"reqID": 2, "msgType": "execute", "data": {"path": "/3/0/4"}}),
        None,
    );
    let put = d.one_request(h.t0);
    assert_eq!((put.code, path_of(&put)), (Code::PUT, "/3/0/13".to_owned()));
    assert_eq!(put.options.content_format(), Some(11542));
    // 200 as a correct signed width: two bytes, not EMQX's one.
    assert_eq!(&put.payload[..], &[0xC2, 13, 0x00, 0xC8]);
    let sent = d.send(&piggybacked(&put, Code::CHANGED, None, vec![]), h.t0);
    let [Sent::M(post)] = &sent[..] else {
        panic!("the next command goes after the reply: {sent:?}")
    };
    assert_eq!((post.code, path_of(post)), (Code::POST, "/3/0/4".to_owned()));
    d.send(&piggybacked(post, Code::CHANGED, None, vec![]), h.t0);
    let got = h.received();
    assert_eq!(
        got[0].1["data"],
        serde_json::json!({"reqPath": "/3/0/13", "code": "2.04", "codeMsg": "changed"})
    );
    assert_eq!(got[1].1["reqID"], 2);
}

#[test]
fn observe_then_notifications_with_seqnum_repeats_ignored() {
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    h.command(
        "lwm2m/dev1/dn/a",
        serde_json::json!({"msgType": "observe", "data": {"path": "/3303/0/5700"}}),
        None,
    );
    let get = d.one_request(h.t0);
    assert_eq!(get.options.observe(), Some(0));
    let mut ack = piggybacked(&get, Code::CONTENT, Some(0), b"20.5".to_vec());
    ack.options.set_observe(5);
    d.send(&ack, h.t0);
    let got = h.received();
    assert_eq!(got[0].1["msgType"], "observe");
    assert_eq!(got[0].1["seqNum"], 5);
    assert_eq!(
        got[0].1["data"]["content"],
        serde_json::json!([{"path": "/3303/0/5700", "value": 20.5}])
    );
    for (seq, value, id) in [(6, "21", 900u16), (6, "21", 901), (7, "22", 902)] {
        let mut n = Message::new(Type::Con, Code::CONTENT, id);
        n.token = get.token;
        n.options.set_observe(seq);
        n.options.set_content_format(0);
        let sent = d.send(&n.with_payload(value.as_bytes().to_vec()), h.t0);
        assert_eq!(
            sent,
            [Sent::M(Message::new(Type::Ack, Code::EMPTY, id))],
            "CON notifications are ACKed"
        );
    }
    let got = h.received();
    assert_eq!(got.len(), 2, "the repeated Observe value is ignored: {got:?}");
    assert_eq!(got[0].0, "lwm2m/dev1/up/notify");
    assert_eq!(got[0].1["msgType"], "notify");
    assert_eq!(got[0].1["seqNum"], 6);
    assert_eq!(got[1].1["data"]["content"][0]["value"], 22.0);
}

#[test]
fn update_and_deregister() {
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    let wrong = d.request(Code::POST, &["rd", "other"], &[], b"");
    assert_eq!(d.ask(&wrong, h.t0).code, Code::NOT_FOUND);
    let update = d.request(Code::POST, &["rd", "dev1"], &["lt=120"], b"</3/0>");
    assert_eq!(d.ask(&update, h.t0).code, Code::CHANGED);
    let got = h.received();
    assert_eq!(got[0].0, "lwm2m/dev1/up/update");
    assert_eq!(got[0].1["data"]["lt"], 120);
    assert_eq!(got[0].1["data"]["objectList"], serde_json::json!(["/3/0"]));
    let delete = d.request(Code::DELETE, &["rd", "dev1"], &[], b"");
    let sent = d.send(&delete, h.t0);
    assert!(
        matches!(&sent[..], [Sent::M(m), Sent::Close] if m.code == Code::DELETED),
        "{sent:?}"
    );
}

#[test]
fn a_large_read_answered_in_block2_blocks_comes_up_whole() {
    use portico_coap::block::Block;
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    let read = |id: i64| serde_json::json!({"reqID": id, "msgType": "read", "data": {"path": "/3/0/0"}});
    h.command("lwm2m/dev1/dn/cmd", read(1), None);
    let get = d.one_request(h.t0);
    let name: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
    let block = |request: &Message, num: u32, more: bool| {
        let start = num as usize * 16;
        let chunk = name[start..(start + 16).min(name.len())].to_vec();
        let mut r = piggybacked(request, Code::CONTENT, Some(0), chunk);
        r.options.set_block2(Block::new(num, more, 0).expect("block"));
        r
    };
    let mut request = get.clone();
    for num in 0..2 {
        let sent = d.send(&block(&request, num, true), h.t0);
        let [Sent::M(next)] = &sent[..] else {
            panic!("the next block is asked for: {sent:?}")
        };
        assert_eq!(next.token, get.token, "one token for the whole transfer");
        assert_eq!(
            next.options.block2(),
            Some(Block::new(num + 1, false, 0).expect("block"))
        );
        assert_eq!(path_of(next), "/3/0/0");
        request = next.clone();
    }
    assert!(h.received().is_empty(), "nothing until the body is whole");
    d.send(&block(&request, 2, false), h.t0);
    let got = h.received();
    assert_eq!(
        got[0].1["data"]["content"],
        serde_json::json!([{"path": "/3/0/0", "value": String::from_utf8(name.clone()).expect("text")}])
    );
    // A block out of order: 4.08, and the next command goes.
    h.command("lwm2m/dev1/dn/cmd", read(2), None);
    h.command("lwm2m/dev1/dn/cmd", read(3), None);
    let get = d.one_request(h.t0);
    let sent = d.send(&block(&get, 1, true), h.t0);
    assert!(
        matches!(&sent[..], [Sent::M(next)] if next.token != get.token),
        "{sent:?}"
    );
    let got = h.received();
    assert_eq!(
        (got[0].1["reqID"].clone(), got[0].1["data"]["code"].clone()),
        (2.into(), "4.08".into())
    );
}

#[test]
fn a_fire_and_forget_command_goes_at_once_as_non_and_its_answer_is_published() {
    // A queue-mode device that sleeps, a command held for it: `mheaders.ttl = 0` is not held.
    let h = Harness::new();
    let (mut d, later) = h.asleep_with_a_held_read("dev1", None);
    h.command(
        "lwm2m/dev1/dn/a",
        serde_json::json!({"reqID": 2, "msgType": "execute", "data": {"path": "/3/0/4"}, "mheaders": {"ttl": 0}}),
        None,
    );
    let sent = d.deliver(later);
    let [Sent::M(post)] = &sent[..] else {
        panic!("the fire-and-forget command at once: {sent:?}")
    };
    assert_eq!(
        (post.mtype, post.code, path_of(post)),
        (Type::Non, Code::POST, "/3/0/4".to_owned())
    );
    assert!(!post.token.is_empty());
    // Its NON answer is published like any other; the held read stays held.
    let mut answer = Message::new(Type::Non, Code::CHANGED, 7);
    answer.token = post.token;
    // No ACK for a NON; the device is heard, so the held read goes now.
    let sent = d.send(&answer, later);
    let [Sent::M(get)] = &sent[..] else {
        panic!("the held read, now the device is awake: {sent:?}")
    };
    assert_eq!(
        (get.mtype, get.code, path_of(get)),
        (Type::Con, Code::GET, "/3/0/0".to_owned())
    );
    let got = h.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["reqID"], 2);
    assert_eq!(
        got[0].1["mheaders"],
        serde_json::json!({"ttl": 0}),
        "echoed like any key"
    );
    assert_eq!(got[0].1["data"]["code"], "2.04");
}

#[test]
fn a_device_that_registers_again_gets_2_01_with_its_location() {
    // A rebooted device registers again from the same address: Register's answer, not EMQX's
    // 2.04 without a location.
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    let again = d.request(Code::POST, &["rd"], &["ep=dev1", "lt=90", "lwm2m=1.0"], b"</3/0>");
    let created = d.ask(&again, h.t0);
    assert_eq!(created.code, Code::CREATED);
    let location: Vec<&str> = created.options.location_path().map(|s| s.expect("UTF-8")).collect();
    assert_eq!(location, ["rd", "dev1"]);
    let got = h.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["msgType"], "register");
    assert_eq!(got[0].1["data"]["lt"], 90);
}

#[test]
fn lifetime_expiry_closes_and_every_message_resets_it() {
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    assert_eq!(d.channel.poll_timeout(), Some(h.t0 + Duration::from_secs(60)));
    let ping = Message::new(Type::Con, Code::EMPTY, 5);
    d.send(&ping, h.t0 + Duration::from_secs(50));
    assert!(d.timeout(h.t0 + Duration::from_secs(60)).is_empty());
    assert_eq!(d.timeout(h.t0 + Duration::from_secs(110)), [Sent::Close]);
}

#[test]
fn queue_mode_holds_commands_until_the_device_is_heard_and_they_expire() {
    let h = Harness::new();
    let (mut d, later) = h.asleep_with_a_held_read("dev1", Some(100));
    h.command(
        "lwm2m/dev1/dn/a",
        serde_json::json!({"reqID": 2, "msgType": "read", "data": {"path": "/3/0/1"}}),
        Some(10),
    );
    assert!(d.deliver(later).is_empty(), "held too");
    // Heard 15 s later: the 10 s command has expired meanwhile, the 100 s one has not.
    let later = later + Duration::from_secs(15);
    let update = d.request(Code::POST, &["rd", "dev1"], &[], b"");
    let sent = d.send(&update, later);
    let [Sent::M(changed), Sent::M(get)] = &sent[..] else {
        panic!("the update's reply, then the held command: {sent:?}")
    };
    assert_eq!(changed.code, Code::CHANGED);
    assert_eq!(path_of(get), "/3/0/0");
    let sent = d.send(&piggybacked(get, Code::CONTENT, Some(0), b"EMQ".to_vec()), later);
    assert!(
        sent.is_empty(),
        "the second command expired (10 s) before it could go: {sent:?}"
    );
}

#[test]
fn bad_input_unknown_msgtype_unknown_object_oversized_and_timeouts() {
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    h.command(
        "lwm2m/dev1/dn/a",
        serde_json::json!({"reqID": 9, "msgType": "nope", "data": {"path": "/3/0"}}),
        None,
    );
    // Not JSON: dropped.
    h.command("lwm2m/dev1/dn/a", Json::String("x".into()), None);
    // For an endpoint nobody registered: never delivered anywhere.
    h.command(
        "lwm2m/ghost/dn/a",
        serde_json::json!({"msgType": "read", "data": {"path": "/3/0"}}),
        None,
    );
    assert!(d.deliver(h.t0).is_empty());
    let got: Vec<_> = h.received().into_iter().filter(|(t, _)| t.contains("/up/")).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].1["data"],
        serde_json::json!({"reqPath": "/3/0", "code": "4.00", "codeMsg": "bad_request"})
    );
    // A reply about an object without definition: 4.00.
    h.command(
        "lwm2m/dev1/dn/a",
        serde_json::json!({"msgType": "read", "data": {"path": "/9999/0"}}),
        None,
    );
    let get = d.one_request(h.t0);
    d.send(&piggybacked(&get, Code::CONTENT, Some(11542), vec![0xC1, 0, 1]), h.t0);
    let got = h.received();
    assert_eq!(got[0].1["data"]["code"], "4.00");
    // An oversized registration update.
    let big = d.request(Code::POST, &["rd", "dev1"], &[], &vec![b'a'; 70 * 1024]);
    assert_eq!(d.ask(&big, h.t0).code, Code::REQUEST_ENTITY_TOO_LARGE);
    // A command the device never answers: coap_timeout after the retransmissions (about
    // 62 s to 93 s: a longer lifetime first).
    let update = d.request(Code::POST, &["rd", "dev1"], &["lt=600"], b"");
    assert_eq!(d.ask(&update, h.t0).code, Code::CHANGED);
    h.command(
        "lwm2m/dev1/dn/a",
        serde_json::json!({"reqID": 3, "msgType": "read", "data": {"path": "/3/0/0"}}),
        None,
    );
    let _ = h.received();
    d.one_request(h.t0);
    for _ in 0..5 {
        let at = d.channel.layer.poll_timeout().expect("retransmitting");
        d.timeout(at);
    }
    if let Some(at) = d.channel.layer.poll_timeout() {
        d.timeout(at);
    }
    let got = h.received();
    assert_eq!(got[0].1["msgType"], "coap_timeout");
    assert_eq!(got[0].1["reqID"], 3);
}

#[test]
fn separate_responses_resets_and_the_other_commands() {
    let h = Harness::new();
    let mut d = h.device(1);
    let reg = d.request(
        Code::POST,
        &["rd"],
        &["ep=alt", "lt=60", "lwm2m=1.1"],
        b"</lwm2m>;rt=\"oma.lwm2m\",</lwm2m/3/0>",
    );
    assert_eq!(d.ask(&reg, h.t0).code, Code::CREATED);
    let _ = h.received();
    let cmd = |msg: Json| h.command("lwm2m/alt/dn/x", msg, None);
    // discover: GET Accept 40 under the alternate path; an empty ACK, then a CON response.
    cmd(serde_json::json!({"reqID": 1, "msgType": "discover", "data": {"path": "/3/0"}}));
    let get = d.one_request(h.t0);
    assert_eq!(path_of(&get), "/lwm2m/3/0");
    assert_eq!(get.options.accept(), Some(40));
    assert!(d.send(&Message::ack_for(&get), h.t0).is_empty());
    let mut late = Message::new(Type::Con, Code::CONTENT, 4242);
    late.token = get.token;
    let late = late.with_payload(&b"</3/0/0>,</3/0/1>"[..]);
    assert_eq!(
        d.send(&late, h.t0),
        [Sent::M(Message::ack_for(&late))],
        "the CON response is ACKed"
    );
    let got = h.received();
    assert_eq!(got[0].1["msgType"], "ack");
    assert_eq!(got[1].1["data"]["content"], serde_json::json!(["</3/0/0>", "</3/0/1>"]));
    // write-attr, create, delete, then a RST.
    cmd(serde_json::json!({"msgType": "write-attr", "data": {"path": "/3/0/9", "pmin": "1", "pmax": "5", "gt": null}}));
    cmd(
        serde_json::json!({"msgType": "create", "data": {"basePath": "/3303", "content": [{"path": "/0/5750", "type": "String", "value": "t"}]}}),
    );
    cmd(serde_json::json!({"msgType": "delete", "data": {"path": "/3303/0"}}));
    cmd(serde_json::json!({"reqID": 5, "msgType": "read", "data": {"path": "/3/0/0"}}));
    let put = d.one_request(h.t0);
    let queries: Vec<_> = put.options.uri_query().map(|q| q.expect("utf-8").to_owned()).collect();
    assert_eq!(
        (put.code, queries),
        (Code::PUT, vec!["pmin=1".to_owned(), "pmax=5".to_owned()])
    );
    let [Sent::M(post)] = &d.send(&piggybacked(&put, Code::CHANGED, None, vec![]), h.t0)[..] else {
        panic!("create next")
    };
    assert_eq!((post.code, path_of(post)), (Code::POST, "/lwm2m/3303".to_owned()));
    assert_eq!(post.options.content_format(), Some(11542));
    let [Sent::M(delete)] = &d.send(&piggybacked(post, Code::CREATED, None, vec![]), h.t0)[..] else {
        panic!("delete next")
    };
    assert_eq!(delete.code, Code::DELETE);
    let [Sent::M(read)] = &d.send(&piggybacked(delete, Code::DELETED, None, vec![]), h.t0)[..] else {
        panic!("read next")
    };
    d.send(&Message::reset_for(read.message_id), h.t0);
    let got = h.received();
    let codes: Vec<_> = got.iter().map(|(_, j)| j["data"]["codeMsg"].clone()).collect();
    assert_eq!(
        codes[..3],
        [Json::from("changed"), Json::from("created"), Json::from("deleted")]
    );
    assert_eq!(
        (got[3].1["msgType"].as_str(), got[3].1["reqID"].as_i64()),
        (Some("coap_reset"), Some(5))
    );
}

#[test]
fn a_denied_device_gets_4_00_and_no_session() {
    struct Deny;
    impl portico_core::auth::Authenticator for Deny {
        fn authenticate(&self, _: &ClientInfo, _: Option<&[u8]>) -> Verdict<AuthResult> {
            Verdict::Ready(AuthResult::Deny(portico_core::auth::Refusal::NotAuthorized))
        }
    }
    let h = Harness::new();
    h.broker.set_authenticator(Arc::new(Deny));
    let mut d = h.device(1);
    let reg = d.request(Code::POST, &["rd"], &["ep=x", "lt=60", "lwm2m=1"], b"</3/0>");
    let response = d.ask(&reg, h.t0);
    assert_eq!(response.code, Code::BAD_REQUEST);
    assert_eq!(&response.payload[..], b"Login Failed: not_authorized");
    assert!(d.channel.session.is_none());
}

#[test]
fn a_registration_waits_for_a_late_authentication_answer() {
    #[derive(Default)]
    struct Later(parking_lot::Mutex<Vec<portico_core::verdict::Resolver<AuthResult>>>);
    impl portico_core::auth::Authenticator for Later {
        fn authenticate(&self, _: &ClientInfo, _: Option<&[u8]>) -> Verdict<AuthResult> {
            let (pending, resolver) = portico_core::verdict::pending_pair();
            self.0.lock().push(resolver);
            Verdict::Pending(pending)
        }
    }
    let h = Harness::new();
    let later = Arc::new(Later::default());
    h.broker.set_authenticator(later.clone());
    let mut d = h.device(1);
    let reg = d.request(Code::POST, &["rd"], &["ep=slow", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(d.send(&reg, h.t0), [], "held");
    assert!(!d.channel.accepts_input());
    later.0.lock().pop().expect("asked").resolve(AuthResult::ALLOW);
    let sent = d.deliver(h.t0);
    let [Sent::M(created)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!((created.code, created.token), (Code::CREATED, reg.token));
    assert!(d.channel.accepts_input());
    assert_eq!(h.received()[0].1["msgType"], "register");
}
