//! The test device of `examples/lwm2m-device.rs`, driven message by message: its Device
//! object reads as the LwM2M Core TS TLV example, byte for byte, and each Device Management
//! operation answers as the spec says.
#![allow(clippy::unwrap_used)]

mod common;

// The device's pure parts (no socket): the same source files the example builds.
#[allow(dead_code)]
#[path = "../examples/lwm2m-device/handler.rs"]
mod handler;
#[allow(dead_code)]
#[path = "../examples/lwm2m-device/objects.rs"]
mod objects;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{DEVICE_RESOURCES, hex, p, registry};
use handler::{Effect, Handler};
use portico_coap::message::{Code, Message, Token, Type};
use portico_lwm2m::content::{LINK_FORMAT, LWM2M_JSON, LWM2M_TLV, SENML_JSON, TEXT_PLAIN};
use portico_lwm2m::{Item, Value, content, tlv};

fn request(code: Code, path: &str) -> Message {
    let mut m = Message::new(Type::Con, code, 7);
    m.token = Token::from_u64(0x51);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        m.options.push_uri_path(segment);
    }
    m
}

fn get(path: &str, accept: Option<u16>) -> Message {
    let mut m = request(Code::GET, path);
    if let Some(a) = accept {
        m.options.set_accept(a);
    }
    m
}

fn with_tlv(mut m: Message, target: &str, items: &[(&str, Value)]) -> Message {
    let items: Vec<Item> = items.iter().map(|(path, v)| Item::new(p(path), v.clone())).collect();
    m.options.set_content_format(LWM2M_TLV);
    m.payload = Bytes::from(tlv::encode_items(&p(target), &items).unwrap());
    m
}

struct Dev {
    handler: Handler,
    t0: Instant,
}

impl Dev {
    fn new() -> Dev {
        let t0 = Instant::now();
        Dev {
            handler: Handler::new(t0, true),
            t0,
        }
    }

    fn ask(&mut self, m: &Message) -> Message {
        self.ask_at(m, self.t0).0
    }

    fn ask_at(&mut self, m: &Message, now: Instant) -> (Message, Effect) {
        let (r, effect) = self.handler.handle(m, 1, now);
        assert_eq!((r.mtype, r.message_id, r.token), (Type::Ack, m.message_id, m.token));
        (r, effect)
    }

    fn read(&mut self, path: &str) -> Vec<Item> {
        let r = self.ask(&get(path, None));
        assert_eq!(r.code, Code::CONTENT, "{path}");
        tlv::decode_items(&r.payload, &p(path), &registry()).unwrap()
    }
}

#[test]
fn reading_the_device_instance_gives_the_spec_example_tlv_byte_for_byte() {
    let mut d = Dev::new();
    let r = d.ask(&get("/3/0", None));
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.options.content_format(), Some(LWM2M_TLV), "TLV by default");
    assert_eq!(r.payload.as_ref(), hex(DEVICE_RESOURCES).as_slice());
    // Asked for TLV explicitly, the same bytes.
    assert_eq!(
        d.ask(&get("/3/0", Some(LWM2M_TLV))).payload.as_ref(),
        hex(DEVICE_RESOURCES)
    );
    // The whole object is the instance wrapped: 08 00 79 then the resources.
    let mut wrapped = hex("08 00 79");
    wrapped.extend(hex(DEVICE_RESOURCES));
    assert_eq!(d.ask(&get("/3", None)).payload.as_ref(), wrapped.as_slice());
    // One resource: the first entry of the example.
    assert_eq!(
        d.ask(&get("/3/0/0", None)).payload.as_ref(),
        hex("C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65")
    );
    // A multiple resource: the example's resource 6.
    assert_eq!(
        d.ask(&get("/3/0/6", None)).payload.as_ref(),
        hex("86 06 41 00 01 41 01 05")
    );
}

#[test]
fn the_clock_runs_from_the_example_time_and_takes_writes() {
    let mut d = Dev::new();
    let later = d.t0 + Duration::from_secs(10);
    let (r, _) = d.ask_at(&get("/3/0/13", Some(TEXT_PLAIN)), later);
    assert_eq!(r.payload.as_ref(), b"1367491225");
    let put = with_tlv(
        request(Code::PUT, "/3/0/13"),
        "/3/0/13",
        &[("/3/0/13", Value::Time(2_000_000_000))],
    );
    assert_eq!(d.ask_at(&put, later).0.code, Code::CHANGED);
    let (r, _) = d.ask_at(&get("/3/0/13", Some(TEXT_PLAIN)), later + Duration::from_secs(1));
    assert_eq!(r.payload.as_ref(), b"2000000001");
    // A text write (Content-Format 0) works as well.
    let mut put = request(Code::PUT, "/3/0/14");
    put.options.set_content_format(TEXT_PLAIN);
    put.payload = Bytes::from_static(b"-05:00");
    assert_eq!(d.ask(&put).code, Code::CHANGED);
    assert_eq!(
        d.read("/3/0/14"),
        vec![Item::new(p("/3/0/14"), Value::String("-05:00".into()))]
    );
}

#[test]
fn reads_honour_accept() {
    let mut d = Dev::new();
    let r = d.ask(&get("/3303/0/5700", Some(TEXT_PLAIN)));
    assert_eq!((r.code, r.options.content_format()), (Code::CONTENT, Some(TEXT_PLAIN)));
    assert_eq!(r.payload.as_ref(), b"21.5");
    for format in [LWM2M_JSON, SENML_JSON] {
        let r = d.ask(&get("/3303/0", Some(format)));
        assert_eq!((r.code, r.options.content_format()), (Code::CONTENT, Some(format)));
        let records = content::decode(format, &r.payload, &p("/3303/0"), &registry()).unwrap();
        assert!(
            records
                .iter()
                .any(|r| r.path == p("/3303/0/5701") && r.value == Some(Value::String("Cel".into())))
        );
    }
    // Text cannot hold an instance; an unknown format is not acceptable.
    assert_eq!(d.ask(&get("/3303/0", Some(TEXT_PLAIN))).code, Code::NOT_ACCEPTABLE);
    assert_eq!(d.ask(&get("/3/0", Some(50))).code, Code::NOT_ACCEPTABLE);
    // LwM2M 1.0 has no SenML.
    let mut v1_0 = Handler::new(d.t0, false);
    assert_eq!(
        v1_0.handle(&get("/3/0", Some(SENML_JSON)), 1, d.t0).0.code,
        Code::NOT_ACCEPTABLE
    );
}

#[test]
fn unknown_paths_and_wrong_methods() {
    let mut d = Dev::new();
    assert_eq!(d.ask(&get("/4", None)).code, Code::NOT_FOUND);
    assert_eq!(d.ask(&get("/3/1", None)).code, Code::NOT_FOUND);
    assert_eq!(d.ask(&get("/3/0/99", None)).code, Code::NOT_FOUND);
    assert_eq!(d.ask(&get("/3/0/4", None)).code, Code::METHOD_NOT_ALLOWED, "executable");
    assert_eq!(d.ask(&get("/rd/x", None)).code, Code::NOT_FOUND);
    let put = with_tlv(
        request(Code::PUT, "/3/0/0"),
        "/3/0/0",
        &[("/3/0/0", Value::String("x".into()))],
    );
    assert_eq!(d.ask(&put).code, Code::METHOD_NOT_ALLOWED, "read-only");
    assert_eq!(
        d.ask(&request(Code::POST, "/3/0/0")).code,
        Code::METHOD_NOT_ALLOWED,
        "not executable"
    );
    assert_eq!(d.ask(&request(Code::DELETE, "/3/0")).code, Code::METHOD_NOT_ALLOWED);
    let mut bad = request(Code::PUT, "/3/0/14");
    bad.options.set_content_format(LWM2M_TLV);
    bad.payload = Bytes::from_static(&[0xC8, 0x0E, 0xFF]);
    assert_eq!(d.ask(&bad).code, Code::BAD_REQUEST, "truncated TLV");
}

#[test]
fn partial_update_create_delete_execute() {
    let mut d = Dev::new();
    let post = with_tlv(
        request(Code::POST, "/3303/0"),
        "/3303/0",
        &[("/3303/0/5750", Value::String("room".into()))],
    );
    assert_eq!(d.ask(&post).code, Code::CHANGED);
    assert!(
        d.read("/3303/0")
            .contains(&Item::new(p("/3303/0/5750"), Value::String("room".into())))
    );
    // Create /3303/7 with an application type; the location names it.
    let create = with_tlv(
        request(Code::POST, "/3303"),
        "/3303",
        &[("/3303/7/5750", Value::String("hall".into()))],
    );
    let (r, effect) = d.ask_at(&create, d.t0);
    assert_eq!((r.code, effect), (Code::CREATED, Effect::ObjectsChanged));
    let location: Vec<_> = r.options.location_path().map(Result::unwrap).collect();
    assert_eq!(location, ["3303", "7"]);
    assert_eq!(d.handler.objects.object_links(), "</3/0>,</3303/0>,</3303/7>");
    assert_eq!(d.ask(&create).code, Code::BAD_REQUEST, "the instance exists");
    // An empty create takes the first free id.
    let r = d.ask(&request(Code::POST, "/3303"));
    assert_eq!(r.location_path_text(), "3303/1");
    assert_eq!(d.ask(&request(Code::DELETE, "/3303/7")).code, Code::DELETED);
    assert_eq!(d.ask(&request(Code::DELETE, "/3303/7")).code, Code::NOT_FOUND);
    assert_eq!(d.ask(&request(Code::POST, "/3")).code, Code::METHOD_NOT_ALLOWED);
    // Reset min/max, and reboot.
    d.handler.objects.measure(|_| 25.0);
    assert_eq!(d.ask(&request(Code::POST, "/3303/0/5605")).code, Code::CHANGED);
    assert!(
        d.read("/3303/0")
            .contains(&Item::new(p("/3303/0/5601"), Value::Float(25.0)))
    );
    let (r, effect) = d.ask_at(&request(Code::POST, "/3/0/4"), d.t0);
    assert_eq!((r.code, effect), (Code::CHANGED, Effect::Reboot));
}

trait LocationText {
    fn location_path_text(&self) -> String;
}

impl LocationText for Message {
    fn location_path_text(&self) -> String {
        self.options
            .location_path()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .join("/")
    }
}

#[test]
fn write_attributes_show_in_discover() {
    let mut d = Dev::new();
    let mut attr = request(Code::PUT, "/3303/0/5700");
    attr.options.push_uri_query("pmin=1");
    attr.options.push_uri_query("pmax=5");
    assert_eq!(d.ask(&attr).code, Code::CHANGED);
    let r = d.ask(&get("/3303/0", Some(LINK_FORMAT)));
    assert_eq!(r.options.content_format(), Some(LINK_FORMAT));
    assert_eq!(
        std::str::from_utf8(&r.payload).unwrap(),
        "</3303/0>,</3303/0/5601>,</3303/0/5602>,</3303/0/5605>,</3303/0/5700>;pmin=1;pmax=5,</3303/0/5701>"
    );
    let r = d.ask(&get("/3/0/7", Some(LINK_FORMAT)));
    assert_eq!(r.payload.as_ref(), b"</3/0/7>;dim=2");
    let mut bad = request(Code::PUT, "/3303/0/5700");
    bad.options.push_uri_query("pmin=soon");
    assert_eq!(d.ask(&bad).code, Code::BAD_REQUEST);
}

#[test]
fn observe_notifies_on_change_with_increasing_sequence_and_cancels() {
    let mut d = Dev::new();
    let mut obs = get("/3303/0/5700", Some(TEXT_PLAIN));
    obs.options.set_observe(0);
    let r = d.ask(&obs);
    assert_eq!((r.code, r.options.observe()), (Code::CONTENT, Some(1)));
    assert!(d.handler.notifications(d.t0).is_empty(), "nothing changed");
    d.handler.objects.measure(|v| v + 0.5);
    let n = d.handler.notifications(d.t0);
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].token, n[0].seq, n[0].payload.as_slice()),
        (obs.token, 2, &b"22"[..])
    );
    d.handler.objects.measure(|v| v + 0.5);
    assert_eq!(d.handler.notifications(d.t0)[0].seq, 3);
    // Observe 1 cancels (and reads).
    let mut cancel = get("/3303/0/5700", Some(TEXT_PLAIN));
    cancel.options.set_observe(1);
    let r = d.ask(&cancel);
    assert_eq!((r.code, r.options.observe()), (Code::CONTENT, None));
    d.handler.objects.measure(|v| v + 0.5);
    assert!(d.handler.notifications(d.t0).is_empty());
    // A deleted instance ends its observation with a 4.04.
    let mut obs = get("/3303/0", None);
    obs.options.set_observe(0);
    d.ask(&obs);
    d.handler.objects.delete(&p("/3303/0")).unwrap();
    let n = d.handler.notifications(d.t0);
    assert_eq!(n[0].code, Code::NOT_FOUND);
    assert!(d.handler.observations.is_empty());
}
